"""Tabular data: numeric columns (data.feature_columns) and categorical columns
(data.categorical_columns) -> a number (train.loss mse / huber / l1) or a class (train.loss
cross_entropy), learned by a model trained from scratch (model.name: mlp). No tokenizer: a batch
is {"features": [b, f], "labels": [b], "_row": [b]}.

The target side is regression's or classification's (losses, metrics, label handling, decode),
delegated to that module by the run's loss (`target_task`). What is new is the input side:

- each numeric cell must be a finite number; with data.standardize_features the model sees
  (x - mean) / std per column, mean and std from the training rows;
- each categorical cell is a category name (any value, read as text). The categories of a column
  are the sorted distinct values of the training rows. `onehot` appends one 0/1 column per
  category; `embedding` appends the category's id (1-based, as a float: `features` stays one
  float tensor) and the mlp looks it up in a learned table (scratch.MLPForSequenceClassification).

Statistics and categories come from the rows that train only (never from validation rows) and
are kept in gradtune.json, so eval and predict encode exactly as training did. A category that
training never saw is encoded as scikit-learn's OneHotEncoder(handle_unknown="ignore") does: all
zeros (onehot) or id 0, an embedding row fixed at zero; each is counted and reported.
"""

from __future__ import annotations

import statistics
from types import ModuleType
from typing import Any

import datasets
import torch
from torchmetrics import MetricCollection

from gradtune.data import encode_column
from gradtune.errors import GradtuneError
from gradtune.monitor import console
from gradtune.tasks import classification, regression
from gradtune.tasks.classification import _as_key, _missing

USES_TOKENIZER = False
LOSSES = regression.LOSSES + classification.LOSSES  # the first (mse) is the default
METRICS = tuple(dict.fromkeys(regression.METRICS + classification.METRICS))
DEFAULT_METRIC = regression.DEFAULT_METRIC
SHOWN_METRICS = tuple(dict.fromkeys(regression.SHOWN_METRICS + classification.SHOWN_METRICS))  # those present
metric_mode = regression.metric_mode  # min for loss, mse, mae, rmse; max for r2, accuracy, f1, ...
finish_metrics = classification.finish_metrics  # rounds, and keeps a confusion matrix as a list


def target_task(loss: str | None) -> ModuleType:
    """The module that owns the target side for this loss: classification for cross_entropy,
    regression otherwise. The config uses it for the default metric and the metric names."""
    return classification if loss in classification.LOSSES else regression


def _target(meta: dict[str, Any]) -> ModuleType:
    return target_task(meta.get("loss"))


def parse_feature(value: Any) -> float:
    """One feature cell as a float; ValueError (encode_column adds file, row, column) if it isn't one."""
    return regression.parse_number(value, "feature", "every feature column needs a number in every row",
                                   "; data.feature_columns must be numeric")


def parse_category(value: Any) -> str:
    """One categorical cell as its category name; ValueError (encode_column adds file, row,
    column) if it is empty."""
    if _missing(value) or (isinstance(value, str) and not value.strip()):
        raise ValueError("the category is missing; every categorical column needs a value in every row "
                         "(fill it in, e.g. with 'unknown', or remove the row)")
    return str(_as_key(value)).strip()


def _numeric(ds: datasets.Dataset, path: Any, columns: list[str]) -> list[list[float]]:
    """The numeric columns as floats, one list per column; an error names the file, line and
    column of the first cell that is not a number."""
    return [list(encode_column(ds, path, c, parse_feature, new_column="_value")["_value"]) for c in columns]


def _categorical(ds: datasets.Dataset, path: Any, columns: list[str]) -> list[list[str]]:
    """The categorical columns as category names, one list per column; an empty cell is an error
    naming the file, line and column."""
    return [list(encode_column(ds, path, c, parse_category, new_column="_value")["_value"]) for c in columns]


def label_metadata(train_ds: datasets.Dataset, cfg: Any, held_out: Any = None) -> dict[str, Any]:
    """The target side's metadata (regression: loss and target scale; classification: the label
    names), the loss, and the input side: the columns, each numeric column's mean and std (with
    data.standardize_features) and each categorical column's categories, from the training rows
    only (`train_ds` never holds validation rows, nor a data.validation_split part)."""
    d = cfg.data
    loss = cfg.train.loss
    meta = target_task(loss).label_metadata(train_ds, cfg, held_out)
    numeric, categorical = list(d.feature_columns or []), list(d.categorical_columns or [])
    meta.update({"loss": loss, "feature_columns": numeric, "feature_mean": None, "feature_std": None,
                 "categorical_columns": categorical, "categorical_encoding": d.categorical_encoding,
                 "categories": {}})
    if d.categorical_encoding == "embedding":
        meta["categorical_embedding_size"] = d.categorical_embedding_size
    if d.standardize_features and numeric:
        values = _numeric(train_ds, d.train, numeric)
        stds = [statistics.pstdev(v) for v in values]
        constant = [c for c, s in zip(numeric, stds) if s == 0]
        if constant:
            raise GradtuneError(f"{d.train}: feature column(s) {', '.join(map(repr, constant))} hold one value in "
                                "every training row; data.standardize_features needs values that differ")
        meta["feature_mean"], meta["feature_std"] = [statistics.fmean(v) for v in values], stds
    for column, names in zip(categorical, _categorical(train_ds, d.train, categorical)):
        meta["categories"][column] = sorted(set(names))
    return meta


def input_sizes(meta: dict[str, Any]) -> dict[str, Any]:
    """What the mlp reads: `num_features` float columns (numeric, then one-hot), then with
    embeddings one id per categorical column, `category_sizes` = categories + 1 (id 0: unseen)."""
    sizes = [len(meta["categories"][c]) for c in meta.get("categorical_columns", [])]
    width = len(meta["feature_columns"])
    if meta.get("categorical_encoding") == "embedding":
        return {"num_features": width, "category_sizes": [n + 1 for n in sizes],
                "category_embedding_size": meta["categorical_embedding_size"]}
    return {"num_features": width + sum(sizes)}


def scale_rows(rows: list[list[float]], meta: dict[str, Any]) -> list[list[float]]:
    """Standardize numeric rows if the run did (a no-op otherwise)."""
    mean, std = meta.get("feature_mean"), meta.get("feature_std")
    if not mean:
        return rows
    return [[(x - m) / s for x, m, s in zip(row, mean, std)] for row in rows]


def encode_rows(numbers: list[list[float]], categories: list[list[str]], meta: dict[str, Any],
                where: str) -> list[list[float]]:
    """Model input rows from parsed rows (numbers in feature_columns order, category names in
    categorical_columns order). Unseen categories become zeros / id 0 and are reported, counted
    per column, naming `where` (the file, or "predict")."""
    columns = meta.get("categorical_columns", [])
    index = [{name: i for i, name in enumerate(meta["categories"][c])} for c in columns]
    embedding = meta.get("categorical_encoding") == "embedding"
    unseen: dict[str, dict[str, int]] = {}
    out = []
    for row_numbers, row_categories in zip(scale_rows(numbers, meta), categories):
        row = list(row_numbers)
        for column, ids, name in zip(columns, index, row_categories):
            i = ids.get(name)
            if i is None:
                seen = unseen.setdefault(column, {})
                seen[name] = seen.get(name, 0) + 1
            if embedding:
                row.append(0.0 if i is None else float(i + 1))
            else:
                hot = [0.0] * len(ids)
                if i is not None:
                    hot[i] = 1.0
                row += hot
        out.append(row)
    for column, seen in unseen.items():
        shown = ", ".join(f"{name!r} x{count}" for name, count in list(seen.items())[:5])
        console.print(f"[yellow]{where}: {sum(seen.values())} row(s) hold categories of column {column!r} that the "
                      f"training data never had ({shown}{', ...' if len(seen) > 5 else ''}); they are encoded as "
                      "'unknown' (all zeros)")
    return out


def encode_inputs(ds: datasets.Dataset, path: Any, meta: dict[str, Any]) -> datasets.Dataset:
    """Add the model input: `features`, one row of floats per example."""
    numbers = [list(r) for r in zip(*_numeric(ds, path, meta["feature_columns"]))] or [[] for _ in range(len(ds))]
    columns = meta.get("categorical_columns", [])
    categories = [list(r) for r in zip(*_categorical(ds, path, columns))] or [[] for _ in range(len(ds))]
    return ds.add_column("features", encode_rows(numbers, categories, meta, str(path)))


def input_columns(meta: dict[str, Any]) -> list[str]:
    """Every input column, in the order a row of values gives them: numeric, then categorical."""
    return [*meta["feature_columns"], *meta.get("categorical_columns", [])]


def column_keys(meta: dict[str, Any]) -> dict[str, str]:
    """The config key that named each input column (for an error about a file that lacks one)."""
    keys = {f"data.feature_columns[{i}]": c for i, c in enumerate(meta["feature_columns"])}
    keys.update({f"data.categorical_columns[{i}]": c for i, c in enumerate(meta.get("categorical_columns", []))})
    return keys


def feature_rows(rows: Any, meta: dict[str, Any]) -> list[list[float]]:
    """What Predictor.predict accepts: one row (a list of values in input_columns order, or a
    dict by column name) or a list of rows -> checked, encoded float rows."""
    names, numeric = input_columns(meta), len(meta["feature_columns"])
    if isinstance(rows, dict) or (rows and not isinstance(rows[0], (list, tuple, dict))):
        rows = [rows]
    numbers, categories = [], []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            missing = [n for n in names if n not in row]
            if missing:
                raise GradtuneError(f"row {i}: no value for column(s) {', '.join(missing)}; the model reads "
                                    f"{', '.join(names)}")
            row = [row[n] for n in names]
        if len(row) != len(names):
            raise GradtuneError(f"row {i}: {len(row)} values, but the model reads {len(names)} columns "
                                f"({', '.join(names)})")
        parsed: list[Any] = []
        for j, (name, value) in enumerate(zip(names, row)):
            try:
                parsed.append(parse_feature(value) if j < numeric else parse_category(value))
            except ValueError as err:
                raise GradtuneError(f"row {i}, column {name!r}: {err}") from None
        numbers.append(parsed[:numeric])
        categories.append(parsed[numeric:])
    return encode_rows(numbers, categories, meta, "predict")


def file_inputs(ds: datasets.Dataset, path: Any, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The input columns of every row of a prediction file, checked (an error names the file,
    line and column), as dicts by column name: Predictor.predict's rows and the start of each
    output row."""
    numbers = _numeric(ds, path, meta["feature_columns"])
    categories = _categorical(ds, path, meta.get("categorical_columns", []))
    return [dict(zip(input_columns(meta), values)) for values in zip(*numbers, *categories)]


# the target side: the run's loss picks classification's or regression's function


def label_encoder(meta: dict[str, Any]) -> Any:
    return _target(meta).label_encoder(meta)


def model_kwargs(meta: dict[str, Any]) -> dict[str, Any]:
    return _target(meta).model_kwargs(meta)


def _labels(labels: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    # without a tokenizer the collator stacks labels as float32: class ids go back to int64
    return labels.long() if _target(meta) is classification else labels


def make_loss(train_cfg: Any, train_labels: list[Any], num_labels: int) -> Any:
    loss = target_task(train_cfg.loss).make_loss(train_cfg, train_labels, num_labels)
    meta = {"loss": train_cfg.loss}
    return lambda logits, labels: loss(logits, _labels(labels, meta))


def eval_loss_sum(logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> torch.Tensor:
    return _target(meta).eval_loss_sum(logits, _labels(labels, meta), meta)


def make_metrics(meta: dict[str, Any]) -> MetricCollection:
    return _target(meta).make_metrics(meta)


def update_metrics(metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    _target(meta).update_metrics(metrics, logits, _labels(labels, meta), meta)


def decode(logits: torch.Tensor, meta: dict[str, Any]) -> list[dict[str, Any]]:
    return _target(meta).decode(logits, meta)


def csv_row(result: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, str]:
    return _target(meta or {}).csv_row(result, meta)
