"""Text classification: one label per text (or text pair), a linear head on the encoder,
cross-entropy loss, accuracy / precision / recall / F1 / confusion matrix."""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from gradtune.errors import GradtuneError
from gradtune.tasks.base import LossFn, Task
from gradtune.tasks.labels import (
    as_key,
    column_values,
    head_kwargs,
    label_ids,
    label_names,
    missing,
    probability_columns,
    renamed,
    unknown_label,
)


def encode_label(value: Any, label2id: dict[str, int]) -> int:
    """The class id of one raw label; ValueError (the caller adds file, row, column) if unknown."""
    if missing(value):
        raise ValueError("the label is missing")
    name = str(as_key(value))
    if name not in label2id:
        raise unknown_label(value, label2id)
    return label2id[name]


def loss_sum(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Summed (not averaged) cross-entropy: the loop divides by the examples of the whole
    optimizer step, so accumulated micro-batches give the gradient of one big batch. With class
    weights each example's term is multiplied by its class's weight."""
    if weight is not None:
        weight = weight.to(device=logits.device, dtype=logits.dtype)
    return F.cross_entropy(logits, labels, weight=weight, label_smoothing=label_smoothing, reduction="sum")


def class_weights(setting: list[float] | str | None, train_labels: list[int], num_labels: int) -> torch.Tensor | None:
    """`balanced` gives n / (k * count_c), as scikit-learn does: rare classes weigh more."""
    if setting is None:
        return None
    if setting == "balanced":
        counts = torch.bincount(torch.tensor(train_labels), minlength=num_labels).double()
        return len(train_labels) / (num_labels * counts.clamp(min=1))
    if len(setting) != num_labels:
        raise GradtuneError(
            f"train.class_weights has {len(setting)} values but there are {num_labels} labels; give one "
            "weight per label, in the order of the label map, or use 'balanced'"
        )
    return torch.tensor(setting, dtype=torch.float64)


class Classification(Task):
    name = "classification"
    losses = ("cross_entropy",)
    metrics = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "precision_weighted", "recall_macro",
               "recall_weighted", "loss")
    default_metric = "accuracy"
    shown_metrics = ("accuracy", "f1_macro", "loss")
    owns = ("train.class_weights", "train.label_smoothing", "data.label_names")

    def fit(self, train_ds: Any, cfg: Any, held_out: Any = None) -> dict[str, Any]:
        """The label names, in id order, from every row of the training file (a
        data.validation_split part included)."""
        d = cfg.data
        values = label_names(column_values(train_ds, d.label_column, held_out))
        if len(values) < 2:
            raise GradtuneError(f"{d.train}: column {d.label_column!r} has {len(values)} distinct label(s); "
                                "classification needs at least 2")
        if d.label_names is None:
            return {"labels": values}
        # the names show everywhere (metrics, predictions, id2label); the data's values still encode
        return {"labels": renamed(values, d.label_names, f"{d.train} (column {d.label_column!r})"),
                "label_values": values}

    def label_encoder(self, meta: dict[str, Any]) -> Any:
        label2id = label_ids(meta.get("label_values", meta["labels"]))
        return lambda value: encode_label(value, label2id)

    def model_kwargs(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The head for AutoModelForSequenceClassification: one output per label."""
        return head_kwargs(meta["labels"])

    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        # plain cross-entropy: class weights and label smoothing shape training, not the reported loss
        return loss_sum(logits, labels)

    def make_loss(self, train_cfg: Any, train_labels: list[int], meta: dict[str, Any]) -> LossFn:
        """Cross-entropy with train.class_weights and train.label_smoothing."""
        weight = class_weights(train_cfg.class_weights, train_labels, len(meta["labels"]))
        return functools.partial(loss_sum, weight=weight, label_smoothing=train_cfg.label_smoothing)

    def make_metrics(self, meta: dict[str, Any]) -> MetricCollection:
        """Streamed metrics: each keeps counts per class, never the logits themselves."""
        k = len(meta["labels"])
        return MetricCollection({
            "accuracy": MulticlassAccuracy(k, average="micro"),
            "precision_macro": MulticlassPrecision(k, average="macro"),
            "recall_macro": MulticlassRecall(k, average="macro"),
            "f1_macro": MulticlassF1Score(k, average="macro"),
            "precision_weighted": MulticlassPrecision(k, average="weighted"),
            "recall_weighted": MulticlassRecall(k, average="weighted"),
            "f1_weighted": MulticlassF1Score(k, average="weighted"),
            "confusion_matrix": MulticlassConfusionMatrix(k),
        })

    def update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
        metrics.update(logits.argmax(dim=-1), labels)

    def decode(self, logits: torch.Tensor, features: Any, meta: dict[str, Any]) -> list[dict[str, Any]]:
        names = meta["labels"]
        results = []
        for row in torch.softmax(logits.float(), dim=-1).tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append({"label": names[best], "probabilities": dict(zip(names, row))})
        return results

    def csv_columns(self, result: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
        """The label and a probability per label."""
        return {"label": result["label"], **probability_columns(result["probabilities"])}
