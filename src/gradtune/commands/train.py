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
) -> None:
    """Train a model from CONFIG."""
    from gradtune.api import train as train_run

    run = train_run(config, overrides or [], resume=resume, overwrite=overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary: the main process's
        show_run(run)
