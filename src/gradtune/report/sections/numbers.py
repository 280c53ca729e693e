"""Sections of the tasks that predict a number (regression, and a tabular model with a numeric
target): predicted against true values, the errors, and the rows predicted worst. A tabular
model with a class target gets the classification sections."""

from __future__ import annotations

import math

from gradtune.report import plots
from gradtune.report.html import Facts, Section, Table, Text
from gradtune.report.sections import WORST, Context, clip, encoded_targets, left_out
from gradtune.report.sections.labels import classification
from gradtune.tasks.regression import scale


def regression(ctx: Context) -> list[Section]:
    keep, encoded, dropped = encoded_targets(ctx)
    mean, std = scale(ctx.meta)
    true = [v * std + mean for v in encoded]  # the file's values (training may have standardized them)
    inputs = ctx.inputs(ctx.validation.rows.select(keep))
    predicted = [r["value"] for r in ctx.predictor.predict_rows(inputs)]
    n = len(true)
    errors = [p - t for t, p in zip(true, predicted)]
    mae = sum(abs(e) for e in errors) / max(n, 1)
    rmse = math.sqrt(sum(e * e for e in errors) / max(n, 1))
    center = sum(true) / max(n, 1)
    spread = sum((t - center) ** 2 for t in true)
    r2 = 1 - sum(e * e for e in errors) / spread if spread else None
    blocks = [Text(f"The kept model on {ctx.where(n)}. Points on the dashed line are exact; above it the "
                   "model guessed too high."),
              Facts([("MAE", mae), ("RMSE", rmse), ("R²", r2), ("rows", n)]), *left_out(dropped)]
    if n:
        blocks.append(plots.predicted_vs_true(true, predicted))
    texts = ctx.shown(inputs)
    order = sorted(range(n), key=lambda i: abs(errors[i]), reverse=True)[:WORST]
    table = Table(["input", "true", "predicted", "error"],
                  [[clip(texts[i]), true[i], predicted[i], errors[i]] for i in order],
                  "the largest errors (predicted - true)", wide=(0,))
    return [Section("predicted-vs-true", "Predicted vs true", blocks),
            Section("mistakes", "Worst mistakes", [table] if order else [Text("No validation rows to show.")])]


def tabular(ctx: Context) -> list[Section]:
    """A class target (train.loss cross_entropy) is classified; any other target is a number."""
    target = ctx.task.target(ctx.meta.get("loss"))
    return classification(ctx) if target.name == "classification" else regression(ctx)
