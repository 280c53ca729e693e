"""Multi-label classification: any subset of the labels per text (or text pair), one sigmoid
output per label on the encoder, binary cross-entropy, micro / macro F1, subset accuracy and
Hamming loss.

Labels come as a list column (JSONL / JSON / Parquet lists) or as a string split on
`data.label_delimiter` ("food,service"); an empty list, an empty string or an empty cell means no
label. The vocabulary is the sorted union of the training rows' labels; each row becomes a
multi-hot float vector. A label is predicted when its probability is above `train.threshold`: one
number for every label, or a mapping label -> threshold (labels not listed keep 0.5), e.g. a lower
bar for a rare label whose probabilities stay low.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelHammingDistance,
    MultilabelPrecision,
    MultilabelRecall,
)

from gradtune.errors import GradtuneError
from gradtune.tasks.base import Task
from gradtune.tasks.labels import (
    as_key,
    column_values,
    head_kwargs,
    label_ids,
    missing,
    probability_columns,
    unknown_label,
)

DEFAULT_THRESHOLD = 0.5  # a label's threshold when train.threshold's mapping does not list it


def split_labels(value: Any, delimiter: str) -> list[str]:
    """The label names of one raw cell: a list as it is, a string split on `delimiter`; a missing
    value, an empty list or an empty string is no label. Duplicates are kept once."""
    if missing(value):
        return []
    if isinstance(value, (list, tuple)):
        parts = [str(as_key(v)).strip() for v in value if not missing(v)]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(delimiter)]
    elif isinstance(value, bool):
        raise ValueError(f"label {value!r} is not a label name or a list of them")
    elif isinstance(value, (int, float)):
        parts = [str(as_key(value))]
    else:
        raise ValueError(f"label {value!r} is not a list or a {delimiter!r}-separated string of labels")
    return list(dict.fromkeys(p for p in parts if p))


def thresholds(meta: dict[str, Any]) -> list[float]:
    """The threshold of each label, in label order: train.threshold's number for all, or its
    mapping's value (DEFAULT_THRESHOLD for a label it does not list)."""
    threshold = meta.get("threshold", DEFAULT_THRESHOLD)
    if isinstance(threshold, dict):
        return [float(threshold.get(name, DEFAULT_THRESHOLD)) for name in meta["labels"]]
    return [float(threshold)] * len(meta["labels"])


def encode_labels(value: Any, label2id: dict[str, int], delimiter: str) -> list[float]:
    """The multi-hot vector of one raw cell; ValueError (the caller adds file, row, column) for a
    label the training data never had."""
    vector = [0.0] * len(label2id)
    for name in split_labels(value, delimiter):
        if name not in label2id:
            raise unknown_label(name, label2id)
        vector[label2id[name]] = 1.0
    return vector


def _predicted(logits: torch.Tensor, meta: dict) -> torch.Tensor:
    """0/1 per (example, label): probability above the label's threshold."""
    bar = torch.tensor(thresholds(meta), device=logits.device)
    return (torch.sigmoid(logits.float()) > bar).int()


class Multilabel(Task):
    name = "multilabel"
    losses = ("bce",)
    metrics = ("f1_micro", "f1_macro", "precision_micro", "recall_micro", "precision_macro", "recall_macro",
               "subset_accuracy", "hamming_loss", "loss")
    # micro F1: counts every (example, label) decision, so rare labels neither dominate nor vanish,
    # and unlike subset accuracy it gives credit for a partly right label set
    default_metric = "f1_micro"
    shown_metrics = ("f1_micro", "f1_macro", "subset_accuracy", "loss")
    lower_is_better = frozenset({"loss", "hamming_loss"})
    owns = ("data.label_delimiter", "train.threshold")

    def fit(self, train_ds: Any, cfg: Any, held_out: Any = None) -> dict[str, Any]:
        """The label names (sorted union over every row of the training file, a
        data.validation_split part included, as for classification), the threshold and the delimiter."""
        d = cfg.data
        names: set[str] = set()
        for value in column_values(train_ds, d.label_column, held_out):
            try:
                names.update(split_labels(value, d.label_delimiter))
            except ValueError:
                pass  # encode_column reports it with its file, line and column
        if not names:
            raise GradtuneError(f"{d.train}: column {d.label_column!r} holds no label in any row; "
                                "multilabel needs at least 1 label")
        labels = sorted(names)
        threshold = cfg.train.threshold
        if isinstance(threshold, dict):
            unknown = [name for name in threshold if name not in names]
            if unknown:
                raise GradtuneError(
                    f"train.threshold names label(s) {', '.join(map(repr, unknown))} that {d.train} (column "
                    f"{d.label_column!r}) does not have; its labels: {', '.join(labels)}")
            threshold = dict(sorted(threshold.items()))
        return {"labels": labels, "threshold": threshold, "delimiter": d.label_delimiter}

    def label_encoder(self, meta: dict[str, Any]) -> Any:
        """raw labels -> multi-hot float vector."""
        label2id = label_ids(meta["labels"])
        return lambda value: encode_labels(value, label2id, meta.get("delimiter", ","))

    def model_kwargs(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The head for AutoModelForSequenceClassification: one independent (sigmoid) output per label."""
        return {**head_kwargs(meta["labels"]), "problem_type": "multi_label_classification"}

    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        """Binary cross-entropy with logits, summed over examples AND labels: the loss the loop reports
        and descends is per example, summed over the labels (k times PyTorch's default mean)."""
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="sum")

    def make_metrics(self, meta: dict[str, Any]) -> MetricCollection:
        """Counts per label, never the logits. They get 0/1 predictions already thresholded (so their
        own threshold, 0.5 on 0/1 values, changes nothing)."""
        k = len(meta["labels"])
        return MetricCollection({
            "f1_micro": MultilabelF1Score(k, average="micro"),
            "f1_macro": MultilabelF1Score(k, average="macro"),
            "precision_micro": MultilabelPrecision(k, average="micro"),
            "recall_micro": MultilabelRecall(k, average="micro"),
            "precision_macro": MultilabelPrecision(k, average="macro"),
            "recall_macro": MultilabelRecall(k, average="macro"),
            "subset_accuracy": MultilabelExactMatch(k),  # the whole label set right
            "hamming_loss": MultilabelHammingDistance(k, average="micro"),  # share of wrong decisions
        })

    def update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
        metrics.update(_predicted(logits, meta), labels.round().int())

    def decode(self, logits: torch.Tensor, features: Any, meta: dict[str, Any]) -> list[dict[str, Any]]:
        names, bars = meta["labels"], thresholds(meta)
        return [{"labels": [n for n, p, bar in zip(names, row, bars) if p > bar],
                 "probabilities": dict(zip(names, row))} for row in torch.sigmoid(logits.float()).tolist()]

    def csv_columns(self, result: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
        """The labels joined by the run's delimiter, and a probability per label."""
        labels = meta.get("delimiter", ",").join(result["labels"])
        return {"labels": labels, **probability_columns(result["probabilities"])}
