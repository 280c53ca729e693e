"""Text regression: one number per text (or text pair), a one-output linear head on the encoder,
mse / huber / l1 loss, error and correlation metrics.

With `data.standardize_target` the model learns z = (y - mean) / std, mean and std taken from the
training targets; the datasets then hold z, and every number that leaves the task (metrics,
predictions) is turned back into y, so it is in the units of the data file.
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, PearsonCorrCoef, R2Score, SpearmanCorrCoef

from gradtune.data.rows import encode_column
from gradtune.errors import GradtuneError
from gradtune.tasks.base import Task

LOSS_FUNCTIONS = {"mse": F.mse_loss, "huber": functools.partial(F.huber_loss, delta=1.0), "l1": F.l1_loss}


def parse_number(value: Any, what: str, missing: str, bad_hint: str = "") -> float:
    """`value` as a finite float; ValueError naming `what` (the caller adds file, row, column)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"the {what} is missing; {missing}")
    if isinstance(value, bool):  # JSON true/false would otherwise pass as 1.0 / 0.0
        raise ValueError(f"{what} {value!r} is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {value!r} is not a number{bad_hint}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} {value!r} is not a finite number")
    return number


def parse_target(value: Any) -> float:
    """One target as a float; ValueError (the caller adds file, row, column) if it isn't one."""
    return parse_number(value, "target", "regression needs a number in every row")


def scale(meta: dict[str, Any]) -> tuple[float, float]:
    """(mean, std) of the standardization, or (0, 1) for a run that trains on the raw target."""
    return meta.get("target_mean") or 0.0, meta.get("target_std") or 1.0


def _pair(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, 1) logits and (batch,) targets as two same-dtype vectors, at least fp32."""
    preds = logits[:, 0]
    if preds.dtype in (torch.float16, torch.bfloat16):
        preds = preds.float()
    return preds, labels.to(preds.dtype)


def loss_sum(logits: torch.Tensor, labels: torch.Tensor, loss: str = "mse") -> torch.Tensor:
    """Summed (not averaged) loss in the model's units. huber uses delta 1 (one std when standardized)."""
    preds, target = _pair(logits, labels)
    return LOSS_FUNCTIONS[loss](preds, target, reduction="sum")


class Regression(Task):
    name = "regression"
    losses = ("mse", "huber", "l1")
    metrics = ("mse", "mae", "rmse", "r2", "pearson", "spearman", "loss")
    # r2 rather than pearson: it counts an offset or a wrong scale of the predictions as error
    # (pearson doesn't), and unlike mse it reads the same whatever the units of the target
    default_metric = "r2"
    shown_metrics = ("rmse", "r2", "loss")
    lower_is_better = frozenset({"mse", "mae", "rmse", "loss"})
    owns = ("data.standardize_target",)

    def fit(self, train_ds: Any, cfg: Any, held_out: Any = None) -> dict[str, Any]:
        """The loss (evaluation reports it too) and, with data.standardize_target, the mean and std
        of the training targets (`train_ds` only: a data.validation_split part is left out)."""
        d = cfg.data
        meta: dict[str, Any] = {"loss": cfg.train.loss, "target_mean": None, "target_std": None}
        if d.standardize_target:
            targets = list(encode_column(train_ds, d.train, d.label_column, parse_target)["labels"])
            std = statistics.pstdev(targets)
            if std == 0:
                raise GradtuneError(f"{d.train}: every training target in column {d.label_column!r} is "
                                    f"{targets[0]}; data.standardize_target needs targets that differ")
            meta["target_mean"], meta["target_std"] = statistics.fmean(targets), std
        return meta

    def label_encoder(self, meta: dict[str, Any]) -> Any:
        """raw target -> the number the model learns (standardized if the run says so)."""
        mean, std = scale(meta)
        return lambda value: (parse_target(value) - mean) / std

    def model_kwargs(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The head for AutoModelForSequenceClassification: one output, no softmax."""
        return {"num_labels": 1, "problem_type": "regression"}

    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        # the training loss, in the same (possibly standardized) units, so that it compares with the
        # training curve; the other metrics are in the data's units
        return loss_sum(logits, labels, meta.get("loss", "mse"))

    def make_metrics(self, meta: dict[str, Any]) -> MetricCollection:
        """Running sums, except SpearmanCorrCoef, which keeps every prediction to rank them (two
        floats per example: fine for evaluation sets, which is all it sees)."""
        with warnings.catch_warnings():  # its "will save all targets and predictions" warning: known, accepted
            warnings.simplefilter("ignore", UserWarning)
            spearman = SpearmanCorrCoef()
        return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(),
                                 "rmse": MeanSquaredError(squared=False), "r2": R2Score(),
                                 "pearson": PearsonCorrCoef(), "spearman": spearman})

    def update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
        mean, std = scale(meta)
        preds, target = _pair(logits, labels)
        metrics.update((preds * std + mean).float(), (target * std + mean).float())  # back to the data's units

    def decode(self, logits: torch.Tensor, features: Any, meta: dict[str, Any]) -> list[dict[str, Any]]:
        mean, std = scale(meta)
        return [{"value": v * std + mean} for v in logits[:, 0].float().tolist()]

    def csv_columns(self, result: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
        return {"value": f"{result['value']:.6f}"}
