"""Tasks: what is learned. Each task is one module with the same shape (METRICS, METRIC_MODES,
label handling, model head, loss, metrics, decoding); add a task by adding a module and a line."""

from types import ModuleType

from gradtune.tasks import classification

TASKS: dict[str, ModuleType] = {"classification": classification}


def get_task(name: str) -> ModuleType:
    return TASKS[name]
