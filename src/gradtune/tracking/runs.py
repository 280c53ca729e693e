"""The runs under a folder, each summed up in one row: what it trains (task, model, strategy), its
best validation metric, how far it got (steps, training time), when it started, and its status,
for `gradtune runs`.

The status:
- running: a live process holds the run's lock (folders.FolderLock, taken by `train`);
- else what metrics.jsonl's last record says: training ends every run with an end record,
  finished, interrupted (Ctrl-C or SIGTERM, with a checkpoint to resume from) or failed (with the
  error);
- a run without one (written before gradtune recorded it, or killed outright: kill -9, power cut)
  is judged by its files: finished if its newest checkpoint says so, interrupted if it has a
  checkpoint to resume from, finished if only its model is left (a run folder kept without
  checkpoints), failed if it has neither.

Nothing here imports torch: listing many runs is quick.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from gradtune.errors import GradtuneError
from gradtune.folders import LOCK_FILE
from gradtune.rundir import METADATA, RunDir, model_dir

STATUSES = ("running", "finished", "interrupted", "failed")
SORTS = ("started", "name", "metric", "time", "steps")
# folders a run writes inside itself (or that exports make): never a run of their own
INSIDE_A_RUN = {"model", "checkpoints", "tensorboard", "mlruns", "onnx", "__pycache__"}


@dataclass
class RunSummary:
    path: Path
    name: str  # the path relative to the folder searched
    task: str | None
    model: str | None
    strategy: str | None
    metric: str | None  # train.metric: what chose the kept model
    metric_mode: str  # train.metric_mode: max, min, or auto (the task's direction)
    best_metric: float | None  # its value for the kept (best) model
    best_step: int | None
    steps: int  # the last step recorded
    train_seconds: float | None
    started: float | None  # Unix time
    status: str
    error: str | None = None  # a failed run's error

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["started"] = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
                          if self.started is not None else None)
        return out


def is_run(folder: Path) -> bool:
    """A run directory: training wrote its config or its log there (a bare model/ or an export is not)."""
    run = RunDir(folder)
    return run.holds_a_run() and (run.config.is_file() or run.metrics.is_file())


def find_runs(folder: str | Path) -> list[Path]:
    """Every run directory under `folder` (itself included), in path order. Runs may nest (a
    `gradtune compare` keeps its variants under RUN/compare/)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GradtuneError(f"{folder}: no such folder; pass the folder that holds your runs (the output_dir of "
                            "`gradtune train`, or a folder above it)")
    found = []
    for root, dirs, _ in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in INSIDE_A_RUN and not d.startswith(".")
                         and not d.endswith((".tmp", ".new", ".old")))
        if is_run(Path(root)):
            found.append(Path(root))
    return found


def is_locked(folder: Path) -> bool:
    """Whether a live process owns `folder` (FolderLock): a non-blocking probe of its lock, let go at once."""
    import fcntl

    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing lets go of a probe that succeeded
    return False


def read_records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records; a line being written right now (a live run) is left out."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def status_of(folder: Path, records: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(status, error) of a run: see the module's docstring."""
    if is_locked(folder):
        return "running", None
    if records and records[-1].get("kind") == "end" and records[-1].get("status") in STATUSES:
        return records[-1]["status"], records[-1].get("error")
    run = RunDir(folder)
    checkpoints = run.list_checkpoints()
    if checkpoints:
        try:
            finished = json.loads((checkpoints[-1] / "progress.json").read_text()).get("finished", False)
        except (OSError, ValueError):
            finished = False
        return ("finished" if finished else "interrupted"), None
    return ("finished" if (run.model / METADATA).is_file() else "failed"), None


def _started(run: RunDir, records: list[dict[str, Any]]) -> float | None:
    """When training started: the setup record's time, else (older runs) when config.yaml was written."""
    setup = next((r for r in records if r.get("kind") == "setup"), {})
    if isinstance(setup.get("started"), (int, float)):
        return float(setup["started"])
    for path in (run.config, run.metrics):
        if path.is_file():
            return path.stat().st_mtime
    return None


def summarize(folder: Path, root: Path | None = None) -> RunSummary:
    """One run's row."""
    run = RunDir(folder)
    try:
        config = (yaml.safe_load(run.config.read_text()) if run.config.is_file() else None) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    try:
        metadata = json.loads((model_dir(folder) / METADATA).read_text())
    except (GradtuneError, OSError, ValueError):
        metadata = {}
    records = read_records(run.metrics)
    status, error = status_of(folder, records)
    train = config.get("train") or {}
    metric = train.get("metric")
    best = (metadata.get("metrics") or {}).get(metric)  # the kept model is the best one
    best = best if isinstance(best, (int, float)) else None
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    elapsed = [r["elapsed"] for r in records if isinstance(r.get("elapsed"), (int, float))]
    name = str(folder.relative_to(root)) if root is not None and folder != root else folder.resolve().name
    return RunSummary(
        path=folder, name=name, task=config.get("task") or metadata.get("task"),
        model=(config.get("model") or {}).get("name") or metadata.get("base_model"),
        strategy=(config.get("strategy") or {}).get("method") or (metadata.get("strategy") or {}).get("method"),
        metric=metric if best is not None else None, metric_mode=train.get("metric_mode") or "auto",
        best_metric=best, best_step=metadata.get("step") if best is not None else None, steps=max(steps, default=0),
        train_seconds=max(elapsed) if elapsed else None, started=_started(run, records), status=status, error=error,
    )


def _metric_order(runs: list[RunSummary]) -> list[RunSummary]:
    """Grouped by metric name, best first within each (the task's direction: accuracy up, loss down);
    runs without a validation metric last."""
    from gradtune.tasks import TASKS, get_task

    def better_first(r: RunSummary) -> tuple:
        if r.best_metric is None:
            return (1, "", 0.0)
        mode = r.metric_mode
        if mode not in ("max", "min"):
            mode = get_task(r.task).metric_mode(r.metric) if r.task in TASKS else "max"
        lower = mode == "min"
        return (0, r.metric, r.best_metric if lower else -r.best_metric)

    return sorted(runs, key=better_first)


def list_runs(folder: str | Path, sort: str = "started") -> list[RunSummary]:
    """The runs under `folder`, sorted: started (newest first), name, metric (best first), time
    (longest first) or steps (most first)."""
    if sort not in SORTS:
        raise GradtuneError(f"--sort {sort}: choose one of {', '.join(SORTS)}")
    root = Path(folder)
    runs = [summarize(path, root) for path in find_runs(root)]
    by_name = sorted(runs, key=lambda r: r.name)  # ties keep name order
    if sort == "metric":
        return _metric_order(by_name)
    keys = {"started": lambda r: -(r.started or 0.0), "name": lambda r: r.name,
            "time": lambda r: -(r.train_seconds or 0.0), "steps": lambda r: -r.steps}
    return sorted(by_name, key=keys[sort])
