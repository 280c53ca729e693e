"""Rows: load one split with its columns checked, drop or report empty texts, and turn one column
into model values row by row, with errors that name the file, line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from gradtune.data.files import read_table, require_columns, row_location
from gradtune.errors import GradtuneError
from gradtune.tracking.console import log


def is_empty(value: Any) -> bool:
    """A missing or blank text."""
    return value is None or (isinstance(value, str) and not value.strip())


def drop_empty_text(
    ds: datasets.Dataset, path: str | Path, text_columns: dict[str, str], on_empty: str,
    skip_hint: str = "set data.on_empty=skip",
) -> tuple[datasets.Dataset, int]:
    """Find rows whose text is missing or blank (`text_columns`: config key -> column).
    `on_empty="error"` names the first one (`skip_hint`: how to skip such rows instead, if one
    can); "skip" drops them and returns how many were dropped."""
    empty: list[int] = []
    for key, column in text_columns.items():
        for i, value in enumerate(ds[column]):
            if is_empty(value):
                if on_empty == "error":
                    skip = f", or {skip_hint}" if skip_hint else ""
                    raise GradtuneError(
                        f"{path}, {row_location(path, i)}, column {column!r} ({key}): the text is "
                        f"empty; fill it in or remove the row{skip}"
                    )
                empty.append(i)
    if not empty:
        return ds, 0
    drop = set(empty)
    return ds.select([i for i in range(len(ds)) if i not in drop]), len(drop)


def load_split(
    path: str | Path, columns: dict[str, str | None], text_keys: tuple[str, ...] = (), on_empty: str = "error",
    skip_hint: str = "set data.on_empty=skip",
) -> tuple[datasets.Dataset, int]:
    """Read and check one split: every column of `columns` (config key -> column name; None: not
    used) must exist, and the texts of `text_keys` must not be empty. Adds `_row` (the 0-based data
    row in the file) so that errors found later still point at the right line. Returns the dataset
    and the rows skipped."""
    ds = read_table(path)
    require_columns(ds, path, columns)
    ds = ds.add_column("_row", list(range(len(ds))))
    texts = {key: columns[key] for key in text_keys if columns.get(key)}
    for key, column in texts.items():
        dtype = getattr(ds.features[column], "dtype", "string")
        if dtype.startswith(("int", "uint", "float", "bool")):  # a column of numbers: the wrong column?
            log.warning(f"{path}: column {column!r} ({key}) holds numbers ({dtype}), not text, e.g. "
                        f"{ds[0][column]!r}; they are read as text. Is {key} the column you meant?")
    return drop_empty_text(ds, path, texts, on_empty, skip_hint)


def encode_column(
    ds: datasets.Dataset, path: str | Path, column: str, encode: Any, new_column: str = "labels"
) -> datasets.Dataset:
    """Replace `column` by `new_column` = encode(value) row by row; an error names the file
    row and column of the first value that `encode` rejects (with ValueError)."""
    values = []
    for i, value in enumerate(ds[column]):
        try:
            values.append(encode(value))
        except ValueError as err:
            where = row_location(path, ds["_row"][i])
            raise GradtuneError(f"{path}, {where}, column {column!r}: {err}") from None
    return ds.remove_columns(column).add_column(new_column, values)
