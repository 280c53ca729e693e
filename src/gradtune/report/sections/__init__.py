"""The report's per-task sections: what the trained model does on validation rows (a confusion
matrix, predicted against true values, the worst mistakes, sample answers, translations and
generations). Each task's sections are one function `(ctx: Context) -> list[Section]`, registered
by one line in TASK_SECTIONS; a task without a line gets `generic` (a note that its validation
metrics are in the curves). Add a task's sections: write the function, add the line, and add the
task to tests/report/test_report.py."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gradtune.report.collect import RunData
from gradtune.report.html import Section, Text
from gradtune.report.validation import Validation

# task name -> "module:function", imported when a report of that task is written
TASK_SECTIONS: dict[str, str] = {
    "classification": "gradtune.report.sections.labels:classification",
    "multilabel": "gradtune.report.sections.labels:multilabel",
    "regression": "gradtune.report.sections.numbers:regression",
    "tabular": "gradtune.report.sections.numbers:tabular",
    "qa": "gradtune.report.sections.answers:qa",
    "seq2seq": "gradtune.report.sections.translations:seq2seq",
    "causal_lm": "gradtune.report.sections.language:causal_lm",
    "instruct": "gradtune.report.sections.language:instruct",
}
WORST = 10  # rows in a "worst mistakes" table


@dataclass
class Context:
    """What a task's sections get: the run, its model, and the validation rows to predict on."""

    run: RunData
    predictor: Any  # gradtune.inference.predictor.Predictor
    validation: Validation
    samples: int = 5  # sample generations / translations shown

    @property
    def task(self) -> Any:
        return self.predictor.task

    @property
    def meta(self) -> dict[str, Any]:
        return self.predictor.metadata

    def inputs(self, rows: Any = None) -> dict[str, list]:
        """The input columns of the validation rows (or of `rows`), as predict reads a file."""
        return self.task.file_rows(self.validation.rows if rows is None else rows, self.validation.path, self.meta)

    def shown(self, inputs: dict[str, list]) -> list[str]:
        """Each row's input as one line of text (a tabular row: column=value pairs)."""
        return [row_text(r) for r in self.task.shown_inputs(inputs, self.meta)]

    def where(self, n: int) -> str:
        v = self.validation
        return f"{n} of the {v.total} validation rows ({v.source}: {v.path})"


def row_text(shown: dict[str, Any]) -> str:
    if len(shown) == 1:
        return str(next(iter(shown.values())))
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def clip(text: str, limit: int = 300) -> str:
    """A long text cut to `limit` characters (tables stay readable)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def encoded_targets(ctx: Context) -> tuple[list[int], list[Any], int]:
    """The validation rows whose target the run can read, their encoded targets, and how many rows
    were left out (a label the training rows never had)."""
    encode, column = ctx.task.label_encoder(ctx.meta), ctx.meta["label_column"]
    keep, targets = [], []
    for i, cell in enumerate(ctx.validation.rows[column]):
        try:
            targets.append(encode(cell))
            keep.append(i)
        except ValueError:
            continue
    return keep, targets, len(ctx.validation.rows) - len(keep)


def left_out(count: int) -> list[Text]:
    return [Text(f"{count} row(s) were left out: their target is not one the run learned (or not a number).",
                 note=True)] if count else []


def generic(ctx: Context) -> list[Section]:
    return [Section("predictions", "Predictions", [Text(
        f"The report has no prediction sections for task {ctx.task.name!r} yet (they plug in through "
        "gradtune/report/sections/__init__.py); its validation metrics are in the curves above.")])]


def sections_for(task: str) -> Callable[[Context], list[Section]]:
    """The section function of `task`, or `generic`."""
    if task not in TASK_SECTIONS:
        return generic
    module, name = TASK_SECTIONS[task].split(":")
    return getattr(importlib.import_module(module), name)
