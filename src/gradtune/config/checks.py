"""The checks across keys: does each setting fit the task, the model and each other? Each check
raises ValueError with a message that names the key; the schema turns it into the config error.

The knowledge comes from the registries, not from here: a task says which losses and metrics it
takes, which task-owned keys it reads (`owns`, `borrows`) and its own rules (`check_config`); the
model registry says which model.* keys each family reads and which tasks it can learn."""

from __future__ import annotations

import difflib
from typing import Any

from gradtune import models
from gradtune.tasks import TASKS, get_task


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _value(cfg: Any, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _is_set(cfg: Any, key: str) -> bool:
    """Whether a key differs from its default (not whether it was typed: a saved config.yaml lists every key)."""
    section, name = key.split(".")
    return _value(cfg, key) != type(getattr(cfg, section)).model_fields[name].default


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def check_loss(cfg: Any, task: Any) -> None:
    loss = cfg.train.loss
    if loss not in task.losses:
        owners = [name for name in TASKS if loss in get_task(name).losses]
        hint = f" ({loss} is a {' / '.join(owners)} loss)" if owners else ""
        raise ValueError(f"train.loss={loss!r} does not fit task {cfg.task!r}; its losses: "
                         f"{', '.join(task.losses)}{hint}")


def check_task_keys(cfg: Any, task: Any) -> None:
    """Keys that only some tasks read (train.threshold, data.feature_columns, ...) must not be set
    for another task."""
    reads = task.reads(cfg)
    for name in TASKS:
        owner = get_task(name)
        foreign = [key for key in owner.owns if key not in reads and _is_set(cfg, key)]
        if not foreign:
            continue
        also = []  # other tasks that read the key (tabular reads class_weights with train.loss cross_entropy)
        for other in map(get_task, TASKS):
            losses = [loss for loss, keys in other.borrows.items() if foreign[0] in keys]
            if other is not owner and foreign[0] in other.owns:
                also.append(f"'{other.name}'")
            elif losses:
                also.append(f"'{other.name}' with train.loss {' / '.join(losses)}")
        raise ValueError(f"{_joined(foreign)} {'is' if len(foreign) == 1 else 'are'} for task {name!r}"
                         + (f" (and {', '.join(also)})" if also else "") + f"; got task {cfg.task!r}")


def check_model(cfg: Any, task: Any) -> None:
    models.check(cfg)  # the model.* keys against the family of model.name
    if not models.fits(cfg.model.name, task):
        family = models.family(cfg.model.name)
        what = family.what if family else "a pretrained model"
        raise ValueError(f"model.name {cfg.model.name!r} ({what}) does not learn task {cfg.task!r}; task "
                         f"{cfg.task!r} trains {models.trains(task)}")


def check_metric(cfg: Any, task: Any) -> None:
    known = task.metrics_for(cfg.train.loss)
    if cfg.train.metric not in known:
        raise ValueError(f"train.metric={cfg.train.metric!r} is not a {cfg.task} metric"
                         f"{did_you_mean(cfg.train.metric, known)}; choose one of {', '.join(known)}")


def check_config(cfg: Any, task: Any) -> None:
    """Every check, in the order a user fixes things: the loss, the keys of other tasks, the task's
    own rules, the model, the metric."""
    check_loss(cfg, task)
    check_task_keys(cfg, task)
    task.check_config(cfg)
    check_model(cfg, task)
    check_metric(cfg, task)
