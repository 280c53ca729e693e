"""`gradtune runs [DIR] [--sort started|name|metric|time|steps] [--json]`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors, out

STATUS_STYLE = {"running": "cyan", "finished": "green", "interrupted": "yellow", "failed": "red"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {s:02d}s" if minutes else f"{s}s"


def _model(name: str | None) -> str:
    """A model's alias or hub id as written; a local folder by its last part."""
    if not name:
        return "-"
    return Path(name).name if Path(name).is_absolute() or name.startswith(".") else name


@app.command("runs")
@friendly_errors
def runs_command(
    folder: Path = typer.Argument(Path("runs"), help="the folder to search (with its subfolders) for runs"),
    sort: str = typer.Option("started", "--sort", help="started (newest first), name, metric (best first), "
                             "time (longest training first) or steps (most first)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON array instead of the table"),
) -> None:
    """List the training runs under a folder: task, model, strategy, best metric, steps, time, status."""
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    from gradtune.tracking.runs import list_runs

    runs = list_runs(folder, sort)
    if as_json:
        print(json.dumps([r.as_json() for r in runs], indent=1))
        return
    if not runs:
        out.print(f"No runs under {folder}")
        return
    # light borders, as compare's table
    table = Table(title=f"runs under {folder}", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    # status second: a terminal too narrow for every column cuts the last ones (started), not the status
    headers = ("run", "status", "task", "model", "strategy", "best metric", "steps", "time", "started")
    rows = [[r.name, r.status, r.task or "-", _model(r.model), r.strategy or "-",
             f"{r.metric} {r.best_metric:.4g}" if r.best_metric is not None else "-", str(r.steps),
             _duration(r.train_seconds),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started is not None else "-"]
            for r in runs]
    for header in headers:
        # a long value folds onto a second line rather than losing its end; the run's name keeps its width
        # (in terminal cells: a Chinese character takes two)
        whole = min(max(cell_len(row[0]) for row in rows), 24) if header == "run" else None
        table.add_column(header, justify="right" if header in ("steps", "time") else "left", overflow="fold",
                         min_width=whole)
    for row in rows:
        table.add_row(row[0], Text(row[1], style=STATUS_STYLE[row[1]]), *row[2:])
    out.print(table)
    for r in runs:
        if r.error:
            out.print(Text.assemble((f"{r.name} failed: ", "red"), r.error.splitlines()[0]), soft_wrap=True)
