"""`gradtune report RUN [RUN ...] [--output DIR]`."""

from __future__ import annotations

from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors, out


@app.command("report")
@friendly_errors
def report_command(
    runs: list[Path] = typer.Argument(..., help="run directories (output_dir of `gradtune train`)"),
    output: Path | None = typer.Option(None, "--output", help="folder for index.html and its PNGs; default "
                                       "RUN/report (one run); required for several runs"),
    max_rows: int = typer.Option(2000, "--max-rows", help="validation rows the model predicts on"),
    samples: int = typer.Option(5, "--samples", help="sample generations / translations / answers shown"),
) -> None:
    """Write a run's report (curves, validation metrics, gradient health, the model's mistakes,
    config, machine) as one HTML page; several runs: their curves overlaid."""
    from gradtune.errors import GradtuneError
    from gradtune.report import write_overlay, write_report

    if len(runs) == 1:
        page = write_report(runs[0], output, max_rows=max_rows, samples=samples)
    elif output is None:
        raise GradtuneError(f"{len(runs)} runs: give --output DIR for the page that overlays them")
    else:
        page = write_overlay(runs, output)
    out.print(f"Wrote {page} (open it in a browser; it works offline)")
