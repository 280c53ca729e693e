"""Sections of the label tasks: classification (also a tabular model with a class target) and
multilabel: per-label precision / recall / F1, a confusion matrix, and the worst mistakes."""

from __future__ import annotations

from typing import Any

from gradtune.report import plots
from gradtune.report.html import Facts, Section, Table, Text
from gradtune.report.sections import WORST, Context, clip, encoded_targets, left_out


def scores(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (0 where undefined, as torchmetrics reports it)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def per_label_table(names: list[str], counts: list[tuple[int, int, int]], caption: str) -> Table:
    """One row per label (tp, fp, fn counts -> P/R/F1, support), then the macro average."""
    rows, sums = [], [0.0, 0.0, 0.0]
    for name, (tp, fp, fn) in zip(names, counts):
        p, r, f = scores(tp, fp, fn)
        sums = [s + x for s, x in zip(sums, (p, r, f))]
        rows.append([name, p, r, f, tp + fn, tp + fp])
    n = max(len(names), 1)
    rows.append(["macro average", sums[0] / n, sums[1] / n, sums[2] / n, None, None])
    return Table(["label", "precision", "recall", "F1", "true rows", "predicted rows"], rows, caption)


def classification(ctx: Context) -> list[Section]:
    names = list(ctx.meta["labels"])
    keep, gold, dropped = encoded_targets(ctx)
    inputs = ctx.inputs(ctx.validation.rows.select(keep))
    results = ctx.predictor.predict_rows(inputs)
    predicted = [names.index(r["label"]) for r in results]
    n, k = len(gold), len(names)
    matrix = [[0] * k for _ in range(k)]
    for t, p in zip(gold, predicted):
        matrix[t][p] += 1
    counts = [(matrix[i][i], sum(matrix[r][i] for r in range(k)) - matrix[i][i], sum(matrix[i]) - matrix[i][i])
              for i in range(k)]
    accuracy = sum(matrix[i][i] for i in range(k)) / max(n, 1)
    intro = [Text(f"The kept model on {ctx.where(n)}."), Facts([("accuracy", accuracy), ("rows", n),
                                                               ("mistakes", n - sum(matrix[i][i] for i in range(k)))]),
             *left_out(dropped)]
    overview = Section("confusion", "Confusion matrix", [*intro, plots.confusion(matrix, names)])
    if k > 20:
        overview.blocks.append(Text(f"{k} labels: the counts are in the table below.", note=True))
    per_class = Section("per-class", "Precision, recall and F1 per class",
                        [per_label_table(names, counts, f"{n} validation rows")])
    texts = ctx.shown(inputs)
    wrong = [(r["probabilities"][names[p]], i) for i, (t, p, r) in enumerate(zip(gold, predicted, results)) if t != p]
    wrong.sort(reverse=True)  # the most confident mistakes first
    table = Table(["input", "true", "predicted", "p(predicted)", "p(true)"],
                  [[clip(texts[i]), names[gold[i]], names[predicted[i]], confidence,
                    results[i]["probabilities"][names[gold[i]]]] for confidence, i in wrong[:WORST]],
                  "the most confident wrong predictions", wide=(0,))
    worst = Section("mistakes", "Worst mistakes",
                    [table] if wrong else [Text(f"No mistakes on these {n} rows.")])
    return [overview, per_class, worst]


def _labels_of(vector: list[float], names: list[str]) -> list[str]:
    return [name for name, v in zip(names, vector) if v > 0.5]


def multilabel(ctx: Context) -> list[Section]:
    names = list(ctx.meta["labels"])
    keep, gold, dropped = encoded_targets(ctx)
    inputs = ctx.inputs(ctx.validation.rows.select(keep))
    results = ctx.predictor.predict_rows(inputs)
    true_sets = [set(_labels_of(v, names)) for v in gold]
    predicted_sets = [set(r["labels"]) for r in results]
    counts = [(sum(name in t and name in p for t, p in zip(true_sets, predicted_sets)),
               sum(name not in t and name in p for t, p in zip(true_sets, predicted_sets)),
               sum(name in t and name not in p for t, p in zip(true_sets, predicted_sets))) for name in names]
    exact = sum(t == p for t, p in zip(true_sets, predicted_sets))
    n = len(gold)
    intro = [Text(f"The kept model on {ctx.where(n)}."),
             Facts([("exact label sets", exact / max(n, 1)), ("rows", n)]), *left_out(dropped)]
    per_label = Section("per-label", "Precision, recall and F1 per label",
                        [*intro, per_label_table(names, counts, f"{n} validation rows")])
    texts = ctx.shown(inputs)

    def badness(i: int) -> tuple[int, float]:
        """Wrong labels, then how far the probabilities are from the truth."""
        probabilities: dict[str, Any] = results[i]["probabilities"]
        distance = sum(abs(probabilities[name] - (name in true_sets[i])) for name in names)
        return len(true_sets[i] ^ predicted_sets[i]), distance

    order = sorted((i for i in range(n) if true_sets[i] != predicted_sets[i]), key=badness, reverse=True)
    rows = [[clip(texts[i]), ", ".join(sorted(true_sets[i])) or "(none)", ", ".join(sorted(predicted_sets[i])) or
             "(none)", ", ".join(sorted(true_sets[i] - predicted_sets[i])), ", ".join(sorted(predicted_sets[i] -
                                                                                        true_sets[i]))]
            for i in order[:WORST]]
    table = Table(["input", "true labels", "predicted labels", "missed", "extra"], rows,
                  "rows with the most wrong labels", wide=(0,))
    worst = Section("mistakes", "Worst mistakes", [table] if rows else [Text(f"No mistakes on these {n} rows.")])
    return [per_label, worst]
