"""Tasks: what is learned. Each task is a `Task` subclass (the contract, with every hook and its
default, is in base.py) in a file of its own. Add a task by writing its file and one line here."""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradtune.tasks.base import Task

# name -> "module:class", imported on first use: the config reads the names, and `gradtune --help`
# shouldn't wait for torch
TASKS: dict[str, str] = {
    "classification": "gradtune.tasks.classification:Classification",
    "regression": "gradtune.tasks.regression:Regression",
    "multilabel": "gradtune.tasks.multilabel:Multilabel",
    "tabular": "gradtune.tasks.tabular:Tabular",
    "causal_lm": "gradtune.tasks.causal_lm:CausalLM",
    "instruct": "gradtune.tasks.instruct:Instruct",
    "qa": "gradtune.tasks.qa:QuestionAnswering",
    "seq2seq": "gradtune.tasks.seq2seq:Seq2Seq",
}


@functools.cache
def get_task(name: str) -> Task:
    """The task called `name` (one shared instance: tasks keep no state)."""
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
