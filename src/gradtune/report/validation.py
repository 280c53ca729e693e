"""The validation rows a report predicts on: the run's data.validation file, or the part of data.train
that data.validation_split held out (the same seeded split as training), checked as training
checks them, and bounded (the first `limit` rows) so a report takes seconds, not an epoch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from gradtune.data.rows import load_split
from gradtune.errors import GradtuneError
from gradtune.training.prepare import sample


class Unavailable(Exception):
    """Why there are no validation rows to predict on (the report says so and goes on)."""


@dataclass
class Validation:
    path: Path
    source: str  # how the run chose them: "data.validation" or "data.validation_split of data.train"
    rows: datasets.Dataset  # the first `limit` checked rows, with `_row` (the row in the file)
    total: int  # rows in the whole split


def read_validation(config: dict[str, Any], task: Any, meta: dict[str, Any], limit: int) -> Validation:
    data, train = config.get("data", {}), config.get("train", {})
    split = data.get("validation_split")
    path = data.get("validation") or (data.get("train") if split else None)
    if not path:
        raise Unavailable("the run had no validation data (data.validation or data.validation_split)")
    source = "data.validation" if data.get("validation") else f"data.validation_split={split} of data.train"
    if not Path(path).is_file():
        raise Unavailable(f"the validation file {path} ({source}) is not there any more (moved, or another "
                          "machine); predictions on it are left out")
    columns = task.columns(meta, labelled=task.labelled)
    try:
        rows, _ = load_split(path, columns, task.text_keys, on_empty="skip")
    except GradtuneError as e:
        raise Unavailable(f"the validation file can't be read as the run read it: {e}") from None
    if split and not data.get("validation"):
        rows = rows.train_test_split(test_size=split, seed=train.get("seed", 42))["test"]
    rows = sample(rows, data.get("max_validation_rows"), train.get("seed", 42))
    return Validation(Path(path), source, rows.select(range(min(limit, len(rows)))), len(rows))
