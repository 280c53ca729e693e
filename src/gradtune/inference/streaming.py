"""Files of any length for predict and eval: read in chunks of rows, predictions written as they come,
so that memory stays flat as the file grows (the file itself is read by `datasets` into an Arrow
table on disk, which is memory-mapped, not held). Within a chunk the texts are still batched longest
first (Predictor.features_logits, data.batching)."""

from __future__ import annotations

import csv
import ctypes
import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from gradtune.data.batching import collate_fn, make_loader
from gradtune.data.files import row_location
from gradtune.data.rows import is_empty
from gradtune.errors import GradtuneError

# rows per chunk: enough for length-sorted batches to pad little, small enough that a chunk's
# tokens, logits and results are a few MB whatever the file's size
CHUNK_ROWS = 4096


def chunks(ds: datasets.Dataset, rows: int | None = None) -> Iterator[datasets.Dataset]:
    """The file's rows `rows` (default CHUNK_ROWS) at a time, each chunk in memory with `_row`, the
    0-based data row in the file (so that an error found later names the line a user would look at)."""
    rows = rows or CHUNK_ROWS
    features = datasets.Features({**ds.features, "_row": datasets.Value("int64")})  # the file's types, not a guess
    for start in range(0, len(ds), rows):
        part = ds[start : start + rows]
        n = len(next(iter(part.values())))
        yield datasets.Dataset.from_dict({**part, "_row": list(range(start, start + n))}, features=features)


def release_freed_memory() -> None:
    """Give what a finished chunk freed back to the system. glibc keeps freed activation buffers (their
    sizes change with every batch's length) in its heap, and then the peak RSS creeps up chunk after
    chunk; elsewhere (macOS, musl: no malloc_trim) there is nothing to do."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def without_empty(chunk: datasets.Dataset, path: str | Path, text_columns: dict[str, str], on_empty: str,
                  skip_hint: str) -> tuple[datasets.Dataset, int]:
    """A chunk without its rows of missing or blank text (`text_columns`: config key -> column), and how
    many were dropped; with on_empty="error" the first one is an error naming its line."""
    empty: set[int] = set()
    for key, column in text_columns.items():
        for i, value in enumerate(chunk[column]):
            if is_empty(value):
                if on_empty == "error":
                    skip = f", or {skip_hint}" if skip_hint else ""
                    raise GradtuneError(f"{path}, {row_location(path, chunk['_row'][i])}, column {column!r} ({key}): "
                                        f"the text is empty; fill it in or remove the row{skip}")
                empty.add(i)
    if not empty:
        return chunk, 0
    return chunk.select([i for i in range(len(chunk)) if i not in empty]), len(empty)


class StreamedBatches:
    """A labelled file as a task's `evaluate` iterates over it: chunk by chunk, each chunk encoded and
    cut into batches longest first (padded to their own longest). It stands where a DataLoader would
    (`collate_fn` included); the task's metrics keep counts and sums, so the result is the same as
    from one loader over the whole file. `rows` counts the rows seen (a qa row may give several windows)."""

    def __init__(self, ds: datasets.Dataset, path: str | Path, task: Any, tokenizer: Any, meta: dict[str, Any],
                 batch_size: int, collator: Any = None, chunk_rows: int | None = None):
        self.ds, self.path, self.task, self.tokenizer, self.meta = ds, path, task, tokenizer, meta
        self.batch_size, self.collator, self.chunk_rows = batch_size, collator, chunk_rows
        self.collate_fn = collate_fn(tokenizer, collator)
        columns = task.columns(meta, labelled=task.labelled)
        self.texts = {key: columns[key] for key in task.text_keys if columns.get(key)}
        self.rows = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.rows = 0
        for chunk in chunks(self.ds, self.chunk_rows):
            chunk, _ = without_empty(chunk, self.path, self.texts, "error", "")
            features = self.task.encode(chunk, self.path, self.tokenizer, self.meta, labelled=self.task.labelled)
            self.rows += len(set(features["_row"]))
            yield from make_loader(features, self.tokenizer, self.batch_size, seed=0, shuffle=False,
                                   collator=self.collator)
            del features
            release_freed_memory()


class PredictionWriter:
    """Results written as they come, as CSV (the shown inputs, then the task's csv_columns) or JSON lines
    (.jsonl, .json), into a temporary file beside `path` that replaces it when all went well: a failure
    half-way never leaves half a file."""

    def __init__(self, path: Path, task: Any, meta: dict[str, Any]):
        self.path, self.task, self.meta = path, task, meta
        self.csv = path.suffix.lower() == ".csv"
        self.partial = path.with_name(f".{path.name}.partial")
        self.count = 0
        self.writer: csv.DictWriter | None = None

    def __enter__(self) -> PredictionWriter:
        self.file = self.partial.open("w", newline="" if self.csv else None, encoding="utf-8")
        return self

    def write(self, shown: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
        for given, result in zip(shown, results):
            if self.csv:
                line = {**given, **self.task.csv_columns(result, self.meta)}
                if self.writer is None:
                    self.writer = csv.DictWriter(self.file, fieldnames=list(line))
                    self.writer.writeheader()
                self.writer.writerow(line)
            else:
                self.file.write(json.dumps({**given, **result}, ensure_ascii=False) + "\n")
        self.count += len(results)

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if self.csv and self.writer is None:  # no rows: the header alone
            csv.DictWriter(self.file, fieldnames=["text"]).writeheader()
        self.file.close()
        if kind is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)
