"""Sections of extractive question answering (task qa): exact match and F1 per question (SQuAD
v1.1 scoring, against the closest gold answer), sample answers, and the answers furthest off."""

from __future__ import annotations

from gradtune.data.squad import best_over_answers, exact_match, f1, parse_answers
from gradtune.report.html import Facts, Section, Table, Text
from gradtune.report.sections import WORST, Context, clip


def qa(ctx: Context) -> list[Section]:
    meta, rows = ctx.meta, ctx.validation.rows
    golds, keep = [], []
    for i, (value, context) in enumerate(zip(rows[meta["answers_column"]], rows[meta["context_column"]])):
        try:
            golds.append([text for text, _ in parse_answers(value, str(context))])
            keep.append(i)
        except ValueError:
            continue
    rows = rows.select(keep)
    inputs = ctx.inputs(rows)
    answers = [r["answer"] for r in ctx.predictor.predict_rows(inputs)]
    em = [best_over_answers(exact_match, a, g) for a, g in zip(answers, golds)]
    f1s = [best_over_answers(f1, a, g) for a, g in zip(answers, golds)]
    n = len(answers)
    questions, contexts = inputs[meta["question_column"]], inputs[meta["context_column"]]

    def line(i: int) -> list:
        return [clip(questions[i], 200), clip(contexts[i]), answers[i] or "(empty)", " | ".join(golds[i]), em[i],
                f1s[i]]

    headers = ["question", "context", "model's answer", "gold answer(s)", "exact match", "F1"]
    blocks = [Text(f"The kept model on {ctx.where(n)}; each answer is scored against the closest gold answer."),
              Facts([("exact match", sum(em) / max(n, 1)), ("F1", sum(f1s) / max(n, 1)), ("questions", n)])]
    if len(keep) < len(ctx.validation.rows):
        blocks.append(Text(f"{len(ctx.validation.rows) - len(keep)} row(s) left out: their answers do not fit "
                           "their context.", note=True))
    blocks.append(Table(headers, [line(i) for i in range(min(ctx.samples, n))], "the first questions",
                        wide=(0, 1, 2, 3)))
    order = sorted((i for i in range(n) if f1s[i] < 1), key=lambda i: (f1s[i], -len(contexts[i])))[:WORST]
    worst = [Table(headers, [line(i) for i in order], "the lowest F1", wide=(0, 1, 2, 3))] if order else \
        [Text(f"Every one of the {n} answers is exact.")]
    return [Section("answers", "Answers: exact match and F1", blocks), Section("mistakes", "Worst mistakes", worst)]
