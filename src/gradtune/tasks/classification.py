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

LOSSES = ("cross_entropy",)
METRICS = (
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "precision_weighted",
    "recall_macro",
    "recall_weighted",
    "loss",
)
DEFAULT_METRIC = "accuracy"  # train.metric when the config leaves it null
SHOWN_METRICS = ("accuracy", "f1_macro", "loss")  # printed after each evaluation


def metric_mode(metric: str) -> str:
    """Whether a larger value of `metric` is better ("max") or a smaller one ("min")."""
    return "min" if metric == "loss" else "max"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _as_key(value: Any) -> Any:
    # a column of integers with a gap is read as floats (1.0); treat 1.0 as the integer 1
    return int(value) if isinstance(value, float) and value.is_integer() else value


def label_names(values: list[Any]) -> list[str]:
    """The label vocabulary of the training labels: integers sorted numerically, strings sorted.
    Names are always strings, as in a Hugging Face config's id2label."""
    distinct = {_as_key(v) for v in values if not _missing(v)}
    if all(isinstance(v, int) and not isinstance(v, bool) for v in distinct):
        return [str(v) for v in sorted(distinct)]
    return sorted(str(v) for v in distinct)


def encode_label(value: Any, label2id: dict[str, int]) -> int:
    """The class id of one raw label; ValueError (the caller adds file, row, column) if unknown."""
    if _missing(value):
        raise ValueError("the label is missing")
    name = str(_as_key(value))
    if name not in label2id:
        raise ValueError(
            f"label {value!r} never appears in the training data (known labels: "
            f"{', '.join(label2id)}); fix the label or add examples of it to the training file"
        )
    return label2id[name]


def label_metadata(train_ds: Any, cfg: Any, held_out: Any = None) -> dict[str, Any]:
    """What the run keeps of the training labels: their names, in id order. Built from every row
    of the training file, a data.validation_split part (`held_out`) included, as it always was."""
    d = cfg.data
    values = list(train_ds[d.label_column]) + (list(held_out[d.label_column]) if held_out is not None else [])
    labels = label_names(values)
    if len(labels) < 2:
        raise GradtuneError(f"{d.train}: column {d.label_column!r} has {len(labels)} distinct label(s); "
                            "classification needs at least 2")
    return {"labels": labels}


def label_encoder(meta: dict[str, Any]) -> Any:
    """raw label -> class id, for `data.encode_column`."""
    label2id = {name: i for i, name in enumerate(meta["labels"])}
    return lambda value: encode_label(value, label2id)


def model_kwargs(meta: dict[str, Any]) -> dict[str, Any]:
    """The head for AutoModelForSequenceClassification: one output per label."""
    labels = meta["labels"]
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}}


def make_metrics(meta: dict[str, Any]) -> MetricCollection:
    """Streamed metrics: each keeps counts per class, never the logits themselves."""
    k = len(meta["labels"])
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(k, average="micro"),
            "precision_macro": MulticlassPrecision(k, average="macro"),
            "recall_macro": MulticlassRecall(k, average="macro"),
            "f1_macro": MulticlassF1Score(k, average="macro"),
            "precision_weighted": MulticlassPrecision(k, average="weighted"),
            "recall_weighted": MulticlassRecall(k, average="weighted"),
            "f1_weighted": MulticlassF1Score(k, average="weighted"),
            "confusion_matrix": MulticlassConfusionMatrix(k),
        }
    )


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


def make_loss(train_cfg: Any, train_labels: list[int], num_labels: int) -> Any:
    """The training loss as configured (the evaluation loss stays plain cross-entropy)."""
    weight = class_weights(train_cfg.class_weights, train_labels, num_labels)
    return functools.partial(loss_sum, weight=weight, label_smoothing=train_cfg.label_smoothing)


def update_metrics(metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    metrics.update(logits.argmax(dim=-1), labels)


def eval_loss_sum(logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> torch.Tensor:
    # plain cross-entropy: class weights and label smoothing shape training, not the reported loss
    return loss_sum(logits, labels)


def finish_metrics(values: dict[str, torch.Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        out[name] = value.tolist() if name == "confusion_matrix" else round(float(value), 6)
    return out


def decode(logits: torch.Tensor, meta: dict[str, Any]) -> list[dict[str, Any]]:
    id2label = dict(enumerate(meta["labels"]))
    probs = torch.softmax(logits.float(), dim=-1)
    results = []
    for row in probs.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        results.append(
            {"label": id2label[best], "probabilities": {id2label[i]: p for i, p in enumerate(row)}}
        )
    return results


def csv_row(result: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, str]:
    """The columns of one prediction in a CSV file: the label and a probability per label."""
    probabilities = {f"prob_{name}": f"{p:.6f}" for name, p in result["probabilities"].items()}
    return {"label": result["label"], **probabilities}
