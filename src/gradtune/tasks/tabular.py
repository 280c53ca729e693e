"""Tabular data: numeric columns (data.feature_columns) and categorical columns
(data.categorical_columns) -> a number (train.loss mse / huber / l1) or a class (train.loss
cross_entropy), learned by a model trained from scratch (model.name: mlp). No tokenizer: a batch
is {"features": [b, f], "labels": [b], "_row": [b]}.

The target side is regression's or classification's (losses, metrics, label handling, decode),
delegated to that task by the run's loss (`target`). What is new is the input side:

- each numeric cell must be a finite number; with data.standardize_features the model sees
  (x - mean) / std per column, mean and std from the training rows;
- each categorical cell is a category name (any value, read as text). The categories of a column
  are the sorted distinct values of the training rows. `onehot` appends one 0/1 column per
  category; `embedding` appends the category's id (1-based, as a float: `features` stays one
  float tensor) and the mlp looks it up in a learned table (models/mlp.py).

Statistics and categories come from the rows that train only (never from validation rows) and
are kept in gradtune.json, so eval and predict encode exactly as training did. A category that
training never saw is encoded as scikit-learn's OneHotEncoder(handle_unknown="ignore") does: all
zeros (onehot) or id 0, an embedding row fixed at zero; each is counted and reported.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import datasets
import torch
from torchmetrics import MetricCollection

from gradtune.data.rows import encode_column
from gradtune.errors import GradtuneError
from gradtune.tasks.base import LossFn, Task
from gradtune.tasks.classification import Classification
from gradtune.tasks.labels import as_key, missing
from gradtune.tasks.regression import Regression, parse_number
from gradtune.tracking.console import log

CLASSES, NUMBER = Classification(), Regression()


def parse_feature(value: Any) -> float:
    """One feature cell as a float; ValueError (encode_column adds file, row, column) if it isn't one."""
    return parse_number(value, "feature", "every feature column needs a number in every row",
                        "; data.feature_columns must be numeric")


def parse_category(value: Any) -> str:
    """One categorical cell as its category name; ValueError if it is empty."""
    if missing(value) or (isinstance(value, str) and not value.strip()):
        raise ValueError("the category is missing; every categorical column needs a value in every row "
                         "(fill it in, e.g. with 'unknown', or remove the row)")
    return str(as_key(value)).strip()


def _parsed(ds: datasets.Dataset, path: Any, meta: dict[str, Any]) -> dict[str, list]:
    """Every input column of a file, parsed cell by cell; an error names the file, line and column
    of the first bad cell."""
    parsers = [(c, parse_feature) for c in meta["feature_columns"]]
    parsers += [(c, parse_category) for c in meta.get("categorical_columns", [])]
    return {c: list(encode_column(ds, path, c, parse, new_column="_value")["_value"]) for c, parse in parsers}


def input_columns(meta: dict[str, Any]) -> list[str]:
    """Every input column, in the order a row of values gives them: numeric, then categorical."""
    return [*meta["feature_columns"], *meta.get("categorical_columns", [])]


def encode_rows(columns: dict[str, list], meta: dict[str, Any], where: str) -> list[list[float]]:
    """Model input rows from parsed columns: numbers (standardized if the run did), then each
    category one-hot or as its id. Unseen categories become zeros / id 0 and are reported, counted
    per column, naming `where` (the file, or "predict")."""
    numeric, categorical = meta["feature_columns"], meta.get("categorical_columns", [])
    n = len(next(iter(columns.values()))) if columns else 0
    mean, std = meta.get("feature_mean"), meta.get("feature_std")
    index = {c: {name: i for i, name in enumerate(meta["categories"][c])} for c in categorical}
    embedding = meta.get("categorical_encoding") == "embedding"
    unseen: dict[str, dict[str, int]] = {}
    out = []
    for r in range(n):
        row = [columns[c][r] for c in numeric]
        if mean:
            row = [(x - m) / s for x, m, s in zip(row, mean, std)]
        for c in categorical:
            name = columns[c][r]
            i = index[c].get(name)
            if i is None:
                seen = unseen.setdefault(c, {})
                seen[name] = seen.get(name, 0) + 1
            if embedding:
                row.append(0.0 if i is None else float(i + 1))
            else:
                row += [1.0 if j == i else 0.0 for j in range(len(index[c]))]
        out.append(row)
    for column, seen in unseen.items():
        shown = ", ".join(f"{name!r} x{count}" for name, count in list(seen.items())[:5])
        log.warning(f"{where}: {sum(seen.values())} row(s) hold categories of column {column!r} that the training "
                    f"data never had ({shown}{', ...' if len(seen) > 5 else ''}); they are encoded as 'unknown' "
                    "(all zeros)")
    return out


class Tabular(Task):
    name = "tabular"
    request_fields = ("rows",)
    hf_task = "tabular"  # the payload of tabular-classification and tabular-regression
    losses = Regression.losses + Classification.losses  # the first (mse) is the default
    metrics = tuple(dict.fromkeys(Regression.metrics + Classification.metrics))
    default_metric = Regression.default_metric
    shown_metrics = tuple(dict.fromkeys(Regression.shown_metrics + Classification.shown_metrics))  # those present
    lower_is_better = Regression.lower_is_better | Classification.lower_is_better
    owns = ("data.feature_columns", "data.standardize_features", "data.categorical_columns",
            "data.categorical_encoding", "data.categorical_embedding_size")
    # the target side's keys: class weights and label smoothing for a class, target scaling for a number
    borrows = {**dict.fromkeys(Regression.losses, Regression.owns), **dict.fromkeys(Classification.losses,
                                                                                   Classification.owns)}
    uses_tokenizer = False
    cache_features = False  # no tokenizing to save, and encoding reports unseen categories
    default_model = "mlp"
    text_keys = ()

    @staticmethod
    def target(loss: str | None) -> Task:
        """The task that owns the target side for this loss: classification for cross_entropy,
        regression otherwise."""
        return CLASSES if loss in Classification.losses else NUMBER

    # --- config
    def check_config(self, cfg: Any) -> None:
        d = cfg.data
        if not (d.feature_columns or d.categorical_columns):
            raise ValueError("task 'tabular' needs data.feature_columns (numeric input columns, e.g. [area, rooms]) "
                             "and/or data.categorical_columns (e.g. [city])")
        both = set(d.feature_columns or []) & set(d.categorical_columns or [])
        if both:
            raise ValueError(f"column(s) {', '.join(sorted(both))} are in both data.feature_columns and "
                             "data.categorical_columns; a column is numeric or categorical")
        default_size = type(d).model_fields["categorical_embedding_size"].default
        if d.categorical_encoding != "embedding" and d.categorical_embedding_size != default_size:
            raise ValueError("data.categorical_embedding_size is for data.categorical_encoding 'embedding'")

    def metrics_for(self, loss: str) -> tuple[str, ...]:
        return self.target(loss).metrics

    def default_metric_for(self, loss: str) -> str:
        return self.target(loss).default_metric

    # --- data
    def input_settings(self, cfg: Any) -> dict[str, Any]:
        d = cfg.data
        return {"feature_columns": list(d.feature_columns or []),
                "categorical_columns": list(d.categorical_columns or []), "label_column": d.label_column}

    def columns(self, meta: dict[str, Any], labelled: bool) -> dict[str, str | None]:
        keys = {f"data.feature_columns[{i}]": c for i, c in enumerate(meta["feature_columns"])}
        keys.update({f"data.categorical_columns[{i}]": c for i, c in enumerate(meta.get("categorical_columns", []))})
        if labelled:
            keys["data.label_column"] = meta["label_column"]
        return keys

    def fit(self, train_ds: datasets.Dataset, cfg: Any, held_out: Any = None) -> dict[str, Any]:
        """The target side's (classification: label names; regression: target scale), the loss, and
        the input side, from the training rows only (`train_ds` never holds validation rows, nor a
        data.validation_split part): each numeric column's mean and std (data.standardize_features)
        and each categorical column's categories."""
        d, loss = cfg.data, cfg.train.loss
        meta = self.target(loss).fit(train_ds, cfg, held_out)
        numeric, categorical = list(d.feature_columns or []), list(d.categorical_columns or [])
        meta.update({"loss": loss, "feature_mean": None, "feature_std": None,
                     "categorical_encoding": d.categorical_encoding, "categories": {}})
        if d.categorical_encoding == "embedding":
            meta["categorical_embedding_size"] = d.categorical_embedding_size
        parsed = _parsed(train_ds, d.train, {"feature_columns": numeric, "categorical_columns": categorical})
        if d.standardize_features and numeric:
            stds = [statistics.pstdev(parsed[c]) for c in numeric]
            constant = [c for c, s in zip(numeric, stds) if s == 0]
            if constant:
                raise GradtuneError(f"{d.train}: feature column(s) {', '.join(map(repr, constant))} hold one value "
                                    "in every training row; data.standardize_features needs values that differ")
            meta["feature_mean"], meta["feature_std"] = [statistics.fmean(parsed[c]) for c in numeric], stds
        meta["categories"] = {c: sorted(set(parsed[c])) for c in categorical}
        return meta

    def label_encoder(self, meta: dict[str, Any]) -> Any:
        return self.target(meta.get("loss")).label_encoder(meta)

    def encode(self, ds: datasets.Dataset, path: str | Path, tokenizer: Any, meta: dict[str, Any],
               labelled: bool = True) -> datasets.Dataset:
        """Adds the model input `features`, one row of floats per example."""
        if labelled:
            ds = encode_column(ds, path, meta["label_column"], self.label_encoder(meta))
        features = encode_rows(_parsed(ds, path, meta), meta, str(path))
        kept = [c for c in ("labels", "_row") if c in ds.column_names]
        return ds.select_columns(kept).add_column("features", features)

    def encode_batch(self, batch: dict[str, list], tokenizer: Any, meta: dict[str, Any]) -> dict[str, list]:
        """Parsed input columns (prediction_rows) -> `features`."""
        return {"features": encode_rows(batch, meta, "predict")}

    # --- model
    def model_kwargs(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The target's head, and what the mlp reads: `num_features` float columns (numeric, then
        one-hot), and with embeddings one id per categorical column, `category_sizes` = categories
        + 1 (id 0: unseen)."""
        sizes = [len(meta["categories"][c]) for c in meta.get("categorical_columns", [])]
        width = len(meta["feature_columns"])
        head = self.target(meta.get("loss")).model_kwargs(meta)
        if meta.get("categorical_encoding") == "embedding":
            return {**head, "num_features": width, "category_sizes": [n + 1 for n in sizes],
                    "category_embedding_size": meta["categorical_embedding_size"]}
        return {**head, "num_features": width + sum(sizes)}

    # --- loss and metrics: the target's, with class ids back to int64 (stacked as float32)
    def _labels(self, labels: torch.Tensor, loss: str | None) -> torch.Tensor:
        return labels.long() if self.target(loss) is CLASSES else labels

    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        return self.target(meta.get("loss")).loss_sum(logits, self._labels(labels, meta.get("loss")), meta)

    def make_loss(self, train_cfg: Any, train_labels: list[Any], meta: dict[str, Any]) -> LossFn:
        loss = self.target(train_cfg.loss).make_loss(train_cfg, train_labels, meta)
        return lambda logits, labels: loss(logits, self._labels(labels, train_cfg.loss))

    def make_metrics(self, meta: dict[str, Any]) -> MetricCollection:
        return self.target(meta.get("loss")).make_metrics(meta)

    def update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
        self.target(meta.get("loss")).update_metrics(metrics, logits, self._labels(labels, meta.get("loss")), meta)

    # --- prediction
    def prediction_rows(self, inputs: Any, pairs: Any, meta: dict[str, Any]) -> dict[str, list]:
        """One row (a list of values in input_columns order, or a dict by column name) or a list of
        rows -> parsed columns; an error names the row and column."""
        names, numeric = input_columns(meta), len(meta["feature_columns"])
        rows = [inputs] if isinstance(inputs, dict) or (inputs and not isinstance(inputs[0], (list, tuple, dict))) \
            else inputs
        columns: dict[str, list] = {name: [] for name in names}
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                absent = [n for n in names if n not in row]
                if absent:
                    raise GradtuneError(f"row {i}: no value for column(s) {', '.join(absent)}; the model reads "
                                        f"{', '.join(names)}")
                row = [row[n] for n in names]
            if len(row) != len(names):
                raise GradtuneError(f"row {i}: {len(row)} values, but the model reads {len(names)} columns "
                                    f"({', '.join(names)})")
            for j, (name, value) in enumerate(zip(names, row)):
                try:
                    columns[name].append(parse_feature(value) if j < numeric else parse_category(value))
                except ValueError as err:
                    raise GradtuneError(f"row {i}, column {name!r}: {err}") from None
        return columns

    def file_rows(self, ds: datasets.Dataset, path: str | Path, meta: dict[str, Any]) -> dict[str, list]:
        return _parsed(ds, path, meta)

    def shown_inputs(self, rows: dict[str, list], meta: dict[str, Any]) -> list[dict[str, Any]]:
        """Each output row starts with the row's input columns."""
        names = input_columns(meta)
        return [dict(zip(names, values)) for values in zip(*(rows[n] for n in names))]

    def decode(self, logits: torch.Tensor, features: Any, meta: dict[str, Any]) -> list[dict[str, Any]]:
        return self.target(meta.get("loss")).decode(logits, features, meta)

    def csv_columns(self, result: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
        return self.target(meta.get("loss")).csv_columns(result, meta)
