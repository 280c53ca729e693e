"""`gradtune lr-find CONFIG [key=value ...]`: the learning-rate range test."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors, out


@app.command("lr-find")
@friendly_errors
def lr_find_command(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted key=value, e.g. train.batch_size=16"),
    start_lr: float = typer.Option(1e-7, "--start-lr", help="first (smallest) learning rate"),
    end_lr: float = typer.Option(10.0, "--end-lr", help="last (largest) learning rate"),
    steps: int = typer.Option(100, "--steps", help="training steps, one per learning rate"),
    output: Path | None = typer.Option(
        None, "--output", help="folder for lr_find.csv/.png; default <output_dir>/lr_find"),
) -> None:
    """Learning-rate range test on a throw-away copy of the model: suggests train.lr."""
    from gradtune.experiments.lr_find import find_lr

    result = find_lr(config, overrides or [], start_lr=start_lr, end_lr=end_lr, steps=steps, output=output)
    lr = f"{result.suggestion:.1e}"
    kept = [o for o in overrides or [] if not o.startswith("train.lr=")]
    command = shlex.join(["gradtune", "train", str(config), *kept, f"train.lr={lr}"])
    out.print(f"Tried {len(result.lrs)} learning rates; wrote {result.csv_path} and {result.png_path}")
    out.print(f"suggested learning rate: {lr}  ->  {command}", highlight=False, soft_wrap=True)
