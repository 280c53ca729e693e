"""Tasks: what is learned. Each task is one module with the same shape: LOSSES, METRICS,
DEFAULT_METRIC, SHOWN_METRICS, metric_mode; label handling (label_metadata, label_encoder); the model
head (model_kwargs); the loss (loss_sum, make_loss, eval_loss_sum); metrics (make_metrics,
update_metrics, finish_metrics); and output (decode, csv_row(result, meta)). Optional hooks for a
task unlike these (causal_lm): LABELS = False (no label column), tokenize, collator, loss_units (what
the summed loss is divided by; default: the number of examples), AUTO_MODEL (the Auto class of a
pretrained model.name). Add a task by adding a module and a line here."""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module, imported on first use: the config imports this registry for its task names,
# and `gradtune --help` shouldn't wait for torch
TASKS: dict[str, str] = {
    "classification": "gradtune.tasks.classification",
    "regression": "gradtune.tasks.regression",
    "multilabel": "gradtune.tasks.multilabel",
    "tabular": "gradtune.tasks.tabular",
    "causal_lm": "gradtune.tasks.causal_lm",
}


def _no_collator(tokenizer: object) -> None:
    return None  # the loader's default: pad the tokenizer's inputs, stack the labels


def get_task(name: str) -> ModuleType:
    """The task's module, with the optional hooks it leaves out set to their defaults, so that
    callers read `task.LABELS`, `task.tokenize`, ... and never need to know which task has which."""
    task = importlib.import_module(TASKS[name])
    from gradtune.data import tokenize

    defaults = {"LABELS": True, "USES_TOKENIZER": True, "AUTO_MODEL": "AutoModelForSequenceClassification",
                "tokenize": tokenize, "collator": _no_collator, "loss_units": len}
    for hook, value in defaults.items():
        if not hasattr(task, hook):
            setattr(task, hook, value)
    return task
