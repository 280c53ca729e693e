"""Tabular regression: numeric feature columns (data.feature_columns) -> one number, learned by a
model trained from scratch (model.name: mlp). No tokenizer: a batch is {"features": [b, f],
"labels": [b], "_row": [b]}.

The target side is regression's (losses, metrics, target parsing, data.standardize_target,
decode), imported from there. What is new is the input side: each feature cell must be a finite
number, and with data.standardize_features the model sees (x - mean) / std per feature, mean and
std from the training rows, kept in gradtune.json and applied again at eval and predict.
"""

from __future__ import annotations

import statistics
from typing import Any

import datasets

from gradtune.data import encode_column
from gradtune.errors import GradtuneError
from gradtune.tasks import regression
from gradtune.tasks.regression import (  # noqa: F401  (the task's shape, shared with regression)
    DEFAULT_METRIC,
    LOSSES,
    METRICS,
    SHOWN_METRICS,
    csv_row,
    decode,
    eval_loss_sum,
    finish_metrics,
    label_encoder,
    make_loss,
    make_metrics,
    metric_mode,
    model_kwargs,
    update_metrics,
)

USES_TOKENIZER = False


def parse_feature(value: Any) -> float:
    """One feature cell as a float; ValueError (encode_column adds file, row, column) if it isn't one."""
    return regression.parse_number(value, "feature", "every feature column needs a number in every row",
                                   "; data.feature_columns must be numeric")


def _columns(ds: datasets.Dataset, path: Any, columns: list[str]) -> list[list[float]]:
    """The feature columns as floats, one list per column; an error names the file, line and
    column of the first cell that is not a number."""
    return [list(encode_column(ds, path, c, parse_feature, new_column="_value")["_value"]) for c in columns]


def label_metadata(train_ds: datasets.Dataset, cfg: Any, held_out: Any = None) -> dict[str, Any]:
    """Regression's (loss, target scale) plus the feature columns and, with
    data.standardize_features, each feature's mean and std over the training rows only."""
    d = cfg.data
    meta = regression.label_metadata(train_ds, cfg, held_out)
    meta.update({"feature_columns": list(d.feature_columns), "feature_mean": None, "feature_std": None})
    if d.standardize_features:
        values = _columns(train_ds, d.train, d.feature_columns)
        stds = [statistics.pstdev(v) for v in values]
        constant = [c for c, s in zip(d.feature_columns, stds) if s == 0]
        if constant:
            raise GradtuneError(f"{d.train}: feature column(s) {', '.join(map(repr, constant))} hold one value in "
                                "every training row; data.standardize_features needs values that differ")
        meta["feature_mean"], meta["feature_std"] = [statistics.fmean(v) for v in values], stds
    return meta


def scale_rows(rows: list[list[float]], meta: dict[str, Any]) -> list[list[float]]:
    """Standardize feature rows if the run did (a no-op otherwise)."""
    mean, std = meta.get("feature_mean"), meta.get("feature_std")
    if not mean:
        return rows
    return [[(x - m) / s for x, m, s in zip(row, mean, std)] for row in rows]


def encode_inputs(ds: datasets.Dataset, path: Any, meta: dict[str, Any]) -> datasets.Dataset:
    """Add the model input: `features`, one row of (standardized) floats per example."""
    columns = _columns(ds, path, meta["feature_columns"])
    rows = scale_rows([list(row) for row in zip(*columns)], meta)
    return ds.add_column("features", rows)


def feature_rows(rows: Any, meta: dict[str, Any]) -> list[list[float]]:
    """What Predictor.predict accepts: one row (a list of numbers in feature_columns order, or a
    dict by column name) or a list of rows -> checked, standardized float rows."""
    names = meta["feature_columns"]
    if isinstance(rows, dict) or (rows and not isinstance(rows[0], (list, tuple, dict))):
        rows = [rows]
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            missing = [n for n in names if n not in row]
            if missing:
                raise GradtuneError(f"row {i}: no value for feature(s) {', '.join(missing)}; the model reads "
                                    f"{', '.join(names)}")
            row = [row[n] for n in names]
        if len(row) != len(names):
            raise GradtuneError(f"row {i}: {len(row)} values, but the model reads {len(names)} features "
                                f"({', '.join(names)})")
        try:
            out.append([parse_feature(v) for v in row])
        except ValueError as err:
            raise GradtuneError(f"row {i}: {err}") from None
    return scale_rows(out, meta)
