"""Rich tables the commands print: metrics, a confusion matrix, the summary of a training run."""

from __future__ import annotations

import json
from typing import Any

import yaml
from rich.table import Table

from gradtune.commands.app import out
from gradtune.rundir import METADATA, RunDir


def metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if isinstance(value, (int, float)):
            table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def confusion_table(labels: list[str], matrix: list[list[int]]) -> Table:
    table = Table(title="confusion matrix (rows: true, columns: predicted)")
    table.add_column("")
    for name in labels:
        table.add_column(name, justify="right")
    for name, row in zip(labels, matrix):
        table.add_row(name, *(str(c) for c in row))
    return table


def show_run(run: Any) -> None:
    out.print(f"Trained {run.steps} steps in {run.train_seconds:.0f}s ({run.samples_per_second:.1f} samples/s)")
    if run.metrics:
        out.print(metrics_table("validation (last evaluation)", run.metrics))
        if "confusion_matrix" in run.metrics:
            labels = json.loads((RunDir(run.run_dir).model / METADATA).read_text())["labels"]
            out.print(confusion_table(labels, run.metrics["confusion_matrix"]))
    if run.test_metrics:
        out.print(metrics_table(f"test (best model, {run.test_metrics['examples']} examples)", run.test_metrics))
    if run.best_step is not None:
        metric = yaml.safe_load(RunDir(run.run_dir).config.read_text())["train"]["metric"]
        out.print(f"Best {metric} {run.best_metric:.4f} at step {run.best_step}: that model is in "
                  f"{RunDir(run.run_dir).model}")
    else:
        out.print(f"Saved to {RunDir(run.run_dir).model}")


