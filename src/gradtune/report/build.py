"""One run's report: the overview sections from its files, then the task's sections from its model's
predictions on (the first `max_rows` of) its validation rows, written to RUN/report/ (or another
folder). Predictions that can't be made (no model, the validation file moved) are a note in the
page; the rest still renders."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from gradtune import __version__
from gradtune.errors import GradtuneError
from gradtune.report import overview
from gradtune.report.collect import RunData, collect
from gradtune.report.html import Page, Section, Text, write
from gradtune.rundir import RunDir
from gradtune.tracking.console import log

MAX_ROWS = 2000  # validation rows predicted on
SAMPLES = 5  # sample generations / translations / answers shown


def checked_output(folder: Path) -> Path:
    """An --output folder the report may replace: new, empty, or an earlier report (index.html and
    PNGs); never a folder holding anything else."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GradtuneError(f"--output {folder} is a file; give a folder for index.html and its images")
    if folder.is_dir():
        others = [p.name for p in folder.iterdir() if p.name != "index.html" and p.suffix != ".png"]
        if others:
            raise GradtuneError(f"--output {folder} holds other files ({', '.join(sorted(others)[:3])}); the report "
                                "replaces its folder as a whole: choose a new or empty folder")
    return folder


def prediction_sections(run: RunData, max_rows: int, samples: int) -> tuple[list[Section], int | None]:
    """The task's sections, and the number of validation rows (None: unknown)."""
    from gradtune.inference.predictor import Predictor
    from gradtune.report.sections import Context, sections_for
    from gradtune.report.validation import Unavailable, read_validation

    def note(text: str) -> list[Section]:
        return [Section("predictions", "Predictions", [Text(text, note=True)])]

    if run.metadata is None:
        return note("There is no saved model to predict with."), None
    try:
        predictor = Predictor(run.path)
        validation = read_validation(run.config, predictor.task, predictor.metadata, max_rows)
    except (GradtuneError, Unavailable) as e:
        return note(f"No predictions: {e}"), None
    try:
        return sections_for(predictor.task.name)(Context(run, predictor, validation, samples)), validation.total
    except Exception as e:  # a report shows what it can: the curves do not depend on the predictions
        log.warning(f"report: the {predictor.task.name} prediction sections failed ({type(e).__name__}: {e})")
        return note(f"The predictions could not be made: {type(e).__name__}: {e}"), validation.total


def run_page(run: RunData, max_rows: int = MAX_ROWS, samples: int = SAMPLES) -> Page:
    predicted, validation_rows = prediction_sections(run, max_rows, samples)
    sections = [overview.summary(run), overview.training(run), overview.validation(run), *predicted,
                overview.gradient_health(run), overview.data(run, validation_rows), overview.machine(run),
                overview.config(run)]
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Page(f"{run.name}: {run.task} report", f"{run.path.resolve()} · written {written}", sections)


def write_report(run: str | Path, output: str | Path | None = None, max_rows: int = MAX_ROWS,
                 samples: int = SAMPLES) -> Path:
    """Write the report of one run to `output` (default RUN/report/); returns the path of index.html."""
    if max_rows < 1 or samples < 0:
        raise GradtuneError(f"max_rows must be at least 1 and samples at least 0 (got {max_rows}, {samples})")
    data = collect(run)
    folder = RunDir(Path(run)).report if output is None else checked_output(Path(output))
    return write(folder, run_page(data, max_rows, samples), f"gradtune {__version__} · gradtune report {run}")
