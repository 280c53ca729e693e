"""Experiment trackers (`train.trackers: [tensorboard, mlflow]`) through accelerate's tracker
integration: the run's config goes in as flat hyper-parameters, every scalar that metrics.jsonl
gets goes to the trackers too (from the main process), and the trackers end when training ends,
however it ends. Each tracker's package is imported only by a run that asks for it.

Where they write: TensorBoard to RUN/tensorboard/; MLflow to the store MLFLOW_TRACKING_URI names,
else a file store in RUN/mlruns/ (experiment MLFLOW_EXPERIMENT_NAME, else "gradtune"; the run is
named after the run directory).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradtune.config.checks import did_you_mean

EXPERIMENT = "gradtune"  # MLflow's experiment unless MLFLOW_EXPERIMENT_NAME says otherwise
# metrics.jsonl's per-layer dicts, as scalar families: grad_norm/bert.encoder.layer.0, ...
FAMILIES = {"layer_grad_norm": "grad_norm", "update_ratio": "update_ratio"}
LOGGED = ("train", "eval", "skip")  # the record kinds whose numbers are metrics (setup and end are not)
# MLflow's run status for each way training can end
MLFLOW_STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


def _tensorboard(run_dir: Path) -> Any:
    from accelerate.tracking import TensorBoardTracker

    return TensorBoardTracker("tensorboard", str(run_dir))  # writes RUN/tensorboard/


def _mlflow(run_dir: Path) -> Any:
    from accelerate.tracking import MLflowTracker

    return MLflowTracker(experiment_name=EXPERIMENT, run_name=run_dir.resolve().name)


@dataclass(frozen=True)
class Tracker:
    module: str  # the package it needs (checked, never imported, when the config is read)
    install: str  # what to run when it is missing
    make: Callable[[Path], Any]  # run_dir -> accelerate's tracker object


TRACKERS: dict[str, Tracker] = {
    "tensorboard": Tracker("tensorboard", "pip install tensorboard", _tensorboard),
    "mlflow": Tracker("mlflow", "pip install mlflow (or the lighter mlflow-skinny)", _mlflow),
}


def check_trackers(names: list[str]) -> list[str]:
    """For the config: each name is a known tracker whose package is installed, else a ValueError
    that says which and what to do."""
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r}{did_you_mean(name, list(TRACKERS))}; choose from "
                             f"{', '.join(TRACKERS)}")
        tracker = TRACKERS[name]
        if importlib.util.find_spec(tracker.module) is None:
            raise ValueError(f"tracker {name!r} needs the {tracker.module} package: {tracker.install}, or pip "
                             "install 'gradtune[trackers]'")
    if len(set(names)) != len(names):
        raise ValueError(f"a tracker is listed twice ({', '.join(names)})")
    return names


def tracker_objects(names: list[str], run_dir: Path) -> list[Any]:
    """accelerate's tracker objects, for `Accelerator(log_with=...)`. Made here rather than by name
    so that each writes where this module says (accelerate would put TensorBoard's events under the
    project name and MLflow's artifacts in the logging folder)."""
    return [TRACKERS[name].make(Path(run_dir)) for name in names]


def hyperparameters(config: dict[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """The config as flat scalars: {"train.lr": 3e-05, "model.name": "minilm", "data.test": "null",
    "train.betas": "[0.9, 0.999]"} (trackers take no None, list or dict values)."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(hyperparameters(value, f"{prefix}{key}."))
        elif isinstance(value, (str, int, float, bool)):
            flat[f"{prefix}{key}"] = value
        else:
            flat[f"{prefix}{key}"] = json.dumps(value)
    return flat


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record as tracker scalars: train/loss, eval/accuracy, skip/grad_norm, and the
    per-layer dicts as grad_norm/<layer> and update_ratio/<layer>."""
    kind, out = record["kind"], {}
    for key, value in record.items():
        if key in ("kind", "step"):
            continue
        if isinstance(value, dict) and key in FAMILIES:
            out.update({f"{FAMILIES[key]}/{name}": float(v) for name, v in value.items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{kind}/{key}"] = float(value)
    return out


class RunTrackers:
    """The trackers of one training run: started on the Accelerator that was made with their
    `tracker_objects`, fed the metrics.jsonl records, ended once. Without trackers, all no-ops."""

    def __init__(self, accelerator: Any, config: dict[str, Any], run_dir: Path, warn: Callable[[str], None]):
        self.accelerator, self.warn = accelerator, warn
        self.names = [t.name for t in accelerator.log_with]
        self.saved_env: dict[str, str | None] = {}
        self.failed = False
        if not self.names:
            return
        if "mlflow" in self.names and not os.environ.get("MLFLOW_TRACKING_URI"):
            # the run's own file store; MLflow 3 wants the opt-in for a file store. Set for this run
            # only: mlflow would otherwise hand the URI on to every later run of this process
            self._set_env("MLFLOW_TRACKING_URI", (Path(run_dir).absolute() / "mlruns").as_uri())
            if "MLFLOW_ALLOW_FILE_STORE" not in os.environ:
                self._set_env("MLFLOW_ALLOW_FILE_STORE", "true")
        accelerator.init_trackers(EXPERIMENT, config=hyperparameters(config))

    def _set_env(self, name: str, value: str) -> None:
        self.saved_env[name] = os.environ.get(name)
        os.environ[name] = value

    def log(self, record: dict[str, Any]) -> None:
        """Send a record's scalars (main process only: accelerator.log). A tracker that fails here (a
        tracking server gone) is reported once and left alone: metrics.jsonl still has every record."""
        if not self.names or self.failed or record.get("kind") not in LOGGED:
            return
        try:
            self.accelerator.log(scalars(record), step=record["step"])
        except Exception as err:  # training goes on; the warning says what was lost
            self.failed = True
            self.warn(f"Warning: tracker logging failed ({type(err).__name__}: {err}); training goes on without "
                      "the trackers, metrics.jsonl keeps every record")

    def end(self, status: str) -> None:
        """End every tracker (MLflow's run gets the status: FINISHED, KILLED or FAILED) and restore the
        environment. Not accelerator.end_training(): that also tears down the process group, which a
        multi-process run still needs after the loop (the test set's evaluation)."""
        try:
            if "mlflow" in self.names and self.accelerator.is_main_process and status != "finished":
                import mlflow

                mlflow.end_run(status=MLFLOW_STATUS[status])
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.accelerator.trackers = []
        finally:
            for name, value in self.saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self.saved_env = {}
