"""The terminal: one stderr console for every message of a run, the training progress bar, and
the "gradtune" logger that library code (tasks, data checks) reports through instead of printing."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

# markup off: messages hold user text (paths, values like [8, 16]) that must print as typed
console = Console(stderr=True, markup=False)
log = logging.getLogger("gradtune")


class _ConsoleHandler(logging.Handler):
    """Warnings of the "gradtune" logger in yellow on the console, printed as written (a message
    holding [brackets] is not read as markup)."""

    def emit(self, record: logging.LogRecord) -> None:
        style = "yellow" if record.levelno >= logging.WARNING else ""
        console.print(Text(self.format(record), style=style))


if not log.handlers:
    log.addHandler(_ConsoleHandler())
    log.setLevel(logging.INFO)
    log.propagate = False


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
