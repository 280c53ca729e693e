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

import functools
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
from gradtune.tasks.classification import _as_key, _missing

LOSSES = ("bce",)
METRICS = (
    "f1_micro",
    "f1_macro",
    "precision_micro",
    "recall_micro",
    "precision_macro",
    "recall_macro",
    "subset_accuracy",
    "hamming_loss",
    "loss",
)
# micro F1: counts every (example, label) decision, so rare labels neither dominate nor vanish,
# and unlike subset accuracy it gives credit for a partly right label set
DEFAULT_METRIC = "f1_micro"
SHOWN_METRICS = ("f1_micro", "f1_macro", "subset_accuracy", "loss")  # printed after each evaluation
DEFAULT_THRESHOLD = 0.5  # a label's threshold when train.threshold's mapping does not list it


def metric_mode(metric: str) -> str:
    """Whether a larger value of `metric` is better ("max") or a smaller one ("min")."""
    return "min" if metric in ("loss", "hamming_loss") else "max"


def split_labels(value: Any, delimiter: str) -> list[str]:
    """The label names of one raw cell: a list as it is, a string split on `delimiter`; a missing
    value, an empty list or an empty string is no label. Duplicates are kept once."""
    if _missing(value):
        return []
    if isinstance(value, (list, tuple)):
        parts = [str(_as_key(v)).strip() for v in value if not _missing(v)]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(delimiter)]
    elif isinstance(value, bool):
        raise ValueError(f"label {value!r} is not a label name or a list of them")
    elif isinstance(value, (int, float)):
        parts = [str(_as_key(value))]
    else:
        raise ValueError(f"label {value!r} is not a list or a {delimiter!r}-separated string of labels")
    return list(dict.fromkeys(p for p in parts if p))


def label_metadata(train_ds: Any, cfg: Any, held_out: Any = None) -> dict[str, Any]:
    """What the run keeps: the label names (sorted union over every row of the training file, a
    data.validation_split part included, as for classification), the threshold and the delimiter."""
    d = cfg.data
    values = list(train_ds[d.label_column]) + (list(held_out[d.label_column]) if held_out is not None else [])
    names: set[str] = set()
    for value in values:
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
            raise ValueError(
                f"label {name!r} never appears in the training data (known labels: "
                f"{', '.join(label2id)}); fix the label or add examples of it to the training file"
            )
        vector[label2id[name]] = 1.0
    return vector


def label_encoder(meta: dict[str, Any]) -> Any:
    """raw labels -> multi-hot float vector, for `data.encode_column`."""
    label2id = {name: i for i, name in enumerate(meta["labels"])}
    return lambda value: encode_labels(value, label2id, meta.get("delimiter", ","))


def model_kwargs(meta: dict[str, Any]) -> dict[str, Any]:
    """The head for AutoModelForSequenceClassification: one independent (sigmoid) output per label."""
    labels = meta["labels"]
    return {"num_labels": len(labels), "problem_type": "multi_label_classification",
            "id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, summed over examples AND labels. The loop divides by the
    examples of the optimizer step, so the loss it reports and descends is per example, summed over
    the labels (not averaged over them: k times PyTorch's default mean)."""
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="sum")


def make_loss(train_cfg: Any, train_labels: list[list[float]], num_labels: int) -> Any:
    """The training loss (train.loss=bce, the only one)."""
    return functools.partial(loss_sum)


def eval_loss_sum(logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> torch.Tensor:
    return loss_sum(logits, labels)


def _predicted(logits: torch.Tensor, meta: dict) -> torch.Tensor:
    """0/1 per (example, label): probability above the label's threshold."""
    bar = torch.tensor(thresholds(meta), device=logits.device)
    return (torch.sigmoid(logits.float()) > bar).int()


def make_metrics(meta: dict[str, Any]) -> MetricCollection:
    """Streamed metrics: each keeps counts per label, never the logits. They get 0/1 predictions
    already thresholded (so their own threshold, 0.5 on 0/1 values, changes nothing)."""
    k = len(meta["labels"])
    return MetricCollection(
        {
            "f1_micro": MultilabelF1Score(k, average="micro"),
            "f1_macro": MultilabelF1Score(k, average="macro"),
            "precision_micro": MultilabelPrecision(k, average="micro"),
            "recall_micro": MultilabelRecall(k, average="micro"),
            "precision_macro": MultilabelPrecision(k, average="macro"),
            "recall_macro": MultilabelRecall(k, average="macro"),
            "subset_accuracy": MultilabelExactMatch(k),  # the whole label set right
            "hamming_loss": MultilabelHammingDistance(k, average="micro"),  # share of wrong decisions
        }
    )


def update_metrics(metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    metrics.update(_predicted(logits, meta), labels.round().int())


def finish_metrics(values: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {name: round(float(value), 6) for name, value in values.items()}


def decode(logits: torch.Tensor, meta: dict[str, Any]) -> list[dict[str, Any]]:
    names, bars = meta["labels"], thresholds(meta)
    results = []
    for row in torch.sigmoid(logits.float()).tolist():
        results.append({"labels": [n for n, p, bar in zip(names, row, bars) if p > bar],
                        "probabilities": dict(zip(names, row))})
    return results


def csv_row(result: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, str]:
    """The columns of one prediction in a CSV file: the labels joined by the run's delimiter, and
    a probability per label."""
    delimiter = (meta or {}).get("delimiter", ",")
    probabilities = {f"prob_{name}": f"{p:.6f}" for name, p in result["probabilities"].items()}
    return {"labels": delimiter.join(result["labels"]), **probabilities}
