"""`gradtune report`: a run (or several) as one self-contained HTML page with its PNGs.

    collect.py      a run's files -> plain data (config, metrics.jsonl records, gradtune.json)
    overview.py     the sections of every run: summary, curves, validation, gradient health, data, machine, config
    validation.py   the validation rows to predict on (bounded), or why there are none
    sections/       the per-task sections (a registry keyed by task name, with a generic fallback)
    plots.py        the figures (matplotlib, Agg canvas) as PNG images
    html.py         the page: blocks -> one HTML file, images inlined as data URIs
    build.py        one run's report -> RUN/report/index.html
    overlay.py      several runs overlaid -> DIR/index.html
    machine.py      what a run trained on (read by training, for the setup record)

Imported by training (machine.py), so this file imports nothing heavy."""

from __future__ import annotations

from pathlib import Path


def write_report(run: str | Path, output: str | Path | None = None, max_rows: int = 2000, samples: int = 5) -> Path:
    """RUN/report/index.html (or OUTPUT/index.html) and its PNGs; returns the path of the page."""
    from gradtune.report.build import write_report as write

    return write(run, output, max_rows, samples)


def write_overlay(runs: list[str | Path], output: str | Path) -> Path:
    """One page overlaying several runs' curves and their best metrics, in OUTPUT/."""
    from gradtune.report.overlay import write_overlay as write

    return write(runs, output)


__all__ = ["write_report", "write_overlay"]
