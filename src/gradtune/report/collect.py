"""A run's files read into plain data for the report: the saved config, the records of metrics.jsonl
(setup, train, eval, skip), the model's gradtune.json and the test metrics. Nothing here loads
the model; a run whose model was never saved still has curves to show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gradtune.errors import GradtuneError
from gradtune.rundir import RunDir, model_dir, read_metadata
from gradtune.tracking.metrics_log import read_metrics


@dataclass
class RunData:
    path: Path
    config: dict[str, Any]  # config.yaml as saved by train ({} if missing)
    records: list[dict[str, Any]]  # metrics.jsonl
    metadata: dict[str, Any] | None  # model/gradtune.json (None: no model was saved)
    test_metrics: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def task(self) -> str:
        return (self.metadata or {}).get("task") or self.config.get("task", "?")

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == kind]

    @property
    def setup(self) -> dict[str, Any]:
        return next(iter(self.kind("setup")), {})

    @property
    def metric(self) -> str:
        """train.metric: what chose the kept model."""
        return self.config.get("train", {}).get("metric") or "loss"

    @property
    def mode(self) -> str:
        """Whether a larger train.metric is better ("max") or a smaller one ("min")."""
        from gradtune.tasks import TASKS, get_task

        mode = self.config.get("train", {}).get("metric_mode", "auto")
        if mode in ("max", "min"):
            return mode
        return get_task(self.task).metric_mode(self.metric) if self.task in TASKS else "min"

    def best(self) -> tuple[float | None, int | None]:
        """The best validation value of train.metric and its step."""
        scored = [r for r in self.kind("eval") if isinstance(r.get(self.metric), (int, float))]
        if not scored:
            return None, None
        pick = max if self.mode == "max" else min
        best = pick(scored, key=lambda r: r[self.metric])  # the first of equal values, as training keeps it
        return best[self.metric], best["step"]

    def metric_names(self) -> list[str]:
        """The validation metrics worth a curve: train.metric, then the task's shown metrics."""
        from gradtune.tasks import TASKS, get_task

        shown = get_task(self.task).shown_metrics if self.task in TASKS else ()
        evals = self.kind("eval")
        present = [m for m in dict.fromkeys([self.metric, *shown]) if any(m in r for r in evals)]
        return present or [k for k in (evals[0] if evals else {}) if k not in ("kind", "step", "epoch", "elapsed")]

    @property
    def train_seconds(self) -> float | None:
        times = [r["elapsed"] for r in self.records if isinstance(r.get("elapsed"), (int, float))]
        return max(times) if times else None

    @property
    def samples_per_s(self) -> float | None:
        """Mean training throughput over the logged windows."""
        speeds = [r["samples_per_s"] for r in self.kind("train") if r.get("samples_per_s")]
        return sum(speeds) / len(speeds) if speeds else None


def collect(run: str | Path) -> RunData:
    """Read a run directory; an error if it holds no run."""
    path, rundir = Path(run), RunDir(Path(run))
    if not path.is_dir():
        raise GradtuneError(f"{path}: no such folder; pass the output_dir of a `gradtune train` run")
    if not rundir.metrics.is_file() and not rundir.config.is_file():
        raise GradtuneError(f"{path}: not a gradtune run (no metrics.jsonl or config.yaml); pass the output_dir of "
                            "a `gradtune train` run")
    config = yaml.safe_load(rundir.config.read_text()) if rundir.config.is_file() else {}
    records = read_metrics(rundir.metrics) if rundir.metrics.is_file() else []
    try:
        metadata = read_metadata(model_dir(path))
    except GradtuneError:
        metadata = None
    tests = json.loads(rundir.test_metrics.read_text()) if rundir.test_metrics.is_file() else {}
    return RunData(path, config or {}, records, metadata, tests)
