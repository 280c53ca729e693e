"""`gradtune train CONFIG [key=value ...] [--resume | --overwrite]`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors
from gradtune.commands.tables import show_run


@app.command()
@friendly_errors
def train(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, e.g. train.lr=3e-5"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run in output_dir"),
    nproc: int = typer.Option(1, "--nproc", help="processes to train with (torchrun; gloo on CPU, one per GPU)"),
) -> None:
    """Train a model from CONFIG."""
    from gradtune.api import train as train_run

    if nproc > 1 and "RANK" not in os.environ:  # start the processes; each runs this command again
        raise typer.Exit(launch(nproc, config, overrides or [], resume, overwrite))

    run = train_run(config, overrides or [], resume=resume, overwrite=overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary: the main process's
        show_run(run)


def launch(nproc: int, config: Path, overrides: list[str], resume: bool, overwrite: bool) -> int:
    """`torchrun --nproc_per_node N -m gradtune train ...` on this machine, on a free port; its exit code."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port free now, for the processes to meet on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = [*(["--resume"] if resume else []), *(["--overwrite"] if overwrite else [])]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(port),
               "-m", "gradtune", "train", str(config), *overrides, *flags]
    # each process gets an equal share of the cores (torchrun would give each one thread)
    threads = max(1, (os.cpu_count() or 1) // nproc)
    env = {"OMP_NUM_THREADS": str(threads), **os.environ}
    proc = subprocess.Popen(command, env=env)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the processes got Ctrl-C too: they checkpoint and stop; wait for them
            continue
