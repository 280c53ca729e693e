"""Data: read CSV / TSV / JSONL / JSON / Parquet through `datasets`, check columns and rows with
errors that name the file, row and column, tokenize (Arrow-cached), and batch by length so a
short sentence is never padded to `max_length`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding

from gradtune.errors import GradtuneError

datasets.disable_progress_bars()  # reading and tokenizing take seconds; the training bar is what matters

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
TEXT_FORMATS = {"csv", "tsv", "jsonl", "json"}


def file_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise GradtuneError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(FORMATS)}"
        )
    return FORMATS[suffix]


def _check_text_file(path: Path) -> None:
    raw = path.read_bytes()
    if not raw.strip():
        raise GradtuneError(f"{path}: the file is empty")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise GradtuneError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[err.start]:02x}); "
            "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None


def read_table(path: str | Path) -> datasets.Dataset:
    """Read one file into a `datasets.Dataset`, with a clear error for a missing, empty or
    undecodable file."""
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise GradtuneError(f"data file not found: {path}")
    if fmt in TEXT_FORMATS:
        _check_text_file(path)
    # pandas reads the texts "NA", "None", "null", ... as missing; only an empty cell should be
    csv_kwargs = {"keep_default_na": False, "na_values": [""]}
    builder, kwargs = {
        "csv": ("csv", csv_kwargs),
        "tsv": ("csv", {**csv_kwargs, "delimiter": "\t"}),
        "jsonl": ("json", {}),
        "json": ("json", {}),
        "parquet": ("parquet", {}),
    }[fmt]
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as err:  # the readers raise many types; the user needs the file and reason
        if _has_no_rows(path, fmt):
            raise GradtuneError(f"{path}: the file has no data rows") from None
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise GradtuneError(f"{path}: could not be read as {fmt}: {reason}") from None
    if len(ds) == 0:
        raise GradtuneError(f"{path}: the file has no data rows")
    return ds


def _csv_row_starts(path: Path, fmt: str) -> Iterator[int]:
    """The 1-based line on which each data row of a CSV/TSV starts (a quoted field may span
    lines, so this is not the row index + 2)."""
    text = path.read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",")
    next(reader, None)  # header
    start = reader.line_num + 1
    for fields in reader:
        if fields:  # blank lines are not rows
            yield start
        start = reader.line_num + 1


def _has_no_rows(path: Path, fmt: str) -> bool:
    """Whether a file the reader refused is just empty of rows (a header-only CSV, `[]`, a
    0-row Parquet): `datasets` then fails with "Instruction 'train' corresponds to no data",
    which tells the user nothing. Only called after a failure, so the success path reads once."""
    try:
        if fmt in ("csv", "tsv"):
            return next(_csv_row_starts(path, fmt), None) is None
        if fmt == "json":
            return json.loads(path.read_text(encoding="utf-8")) in ([], {})
        if fmt == "parquet":
            return pq.read_metadata(path).num_rows == 0
    except (OSError, ValueError, csv.Error):  # unreadable otherwise: the reader's message stands
        return False
    return False


def row_location(path: str | Path, index: int) -> str:
    """Where the `index`-th data row (0-based) sits in its file, as a user would look for it:
    a 1-based line number for text files, a record or row number otherwise."""
    path = Path(path)
    fmt = file_format(path)
    if fmt in ("csv", "tsv"):
        for row, start in enumerate(_csv_row_starts(path, fmt)):
            if row == index:
                return f"line {start}"
    elif fmt == "jsonl":
        row = -1
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                row += 1
                if row == index:
                    return f"line {number}"
    elif fmt == "json":
        return f"record {index + 1}"
    return f"row {index + 1}"


def require_columns(ds: datasets.Dataset, path: str | Path, columns: dict[str, str | None]) -> None:
    """`columns` maps config keys (data.text_column) to the column names they ask for."""
    for key, column in columns.items():
        if column is not None and column not in ds.column_names:
            raise GradtuneError(
                f"{path}: no column {column!r} (set by {key}); the file has columns: "
                f"{', '.join(ds.column_names)}"
            )


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def drop_empty_text(
    ds: datasets.Dataset, path: str | Path, text_columns: list[tuple[str, str]], on_empty: str
) -> tuple[datasets.Dataset, int]:
    """Find rows whose text is missing or blank. `on_empty="error"` names the first one;
    "skip" drops them and returns how many were dropped."""
    empty: list[int] = []
    for key, column in text_columns:
        for i, value in enumerate(ds[column]):
            if _is_empty(value):
                if on_empty == "error":
                    raise GradtuneError(
                        f"{path}, {row_location(path, i)}, column {column!r} ({key}): the text is "
                        "empty; fill it in, remove the row, or set data.on_empty=skip"
                    )
                empty.append(i)
    if not empty:
        return ds, 0
    drop = set(empty)
    return ds.select([i for i in range(len(ds)) if i not in drop]), len(drop)


def load_split(path: str | Path, data_cfg: Any, with_labels: bool = True) -> tuple[datasets.Dataset, int]:
    """Read and check one split. Adds `_row` (the 0-based data row in the file) so that errors
    found later still point at the right line. Returns the dataset and the rows skipped."""
    ds = read_table(path)
    features = getattr(data_cfg, "feature_columns", None) or []
    categorical = getattr(data_cfg, "categorical_columns", None) or []
    if features or categorical:  # task tabular: input columns instead of text (encode_column checks the cells)
        columns = {f"data.feature_columns[{i}]": column for i, column in enumerate(features)}
        columns.update({f"data.categorical_columns[{i}]": column for i, column in enumerate(categorical)})
    else:
        columns = {"data.text_column": data_cfg.text_column, "data.text_pair_column": data_cfg.text_pair_column}
    if with_labels:
        columns["data.label_column"] = data_cfg.label_column
    require_columns(ds, path, columns)
    ds = ds.add_column("_row", list(range(len(ds))))
    texts = [(key, col) for key, col in columns.items() if col and key.startswith("data.text")]
    return drop_empty_text(ds, path, texts, data_cfg.on_empty)


def tokenize(
    ds: datasets.Dataset, tokenizer: Any, text_column: str, pair_column: str | None, max_length: int
) -> datasets.Dataset:
    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [str(t) for t in batch[text_column]]
        pairs = [str(t) for t in batch[pair_column]] if pair_column else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    return ds.map(encode, batched=True, desc="tokenizing")


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar length: shuffle, cut into mega-chunks of 50 batches, sort each
    chunk by length, split into batches, shuffle the batch order. Deterministic in (seed, epoch),
    so a resumed run sees exactly the batches the uninterrupted run would have seen."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, shuffle: bool = True):
        self.lengths, self.batch_size, self.seed, self.shuffle = lengths, batch_size, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n, size = len(self.lengths), self.batch_size
        if not self.shuffle:  # evaluation: longest first, order only matters for speed
            order = sorted(range(n), key=lambda i: -self.lengths[i])
            yield from (order[s : s + size] for s in range(0, n, size))
            return
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(n, generator=g).tolist()
        mega = size * 50
        batches: list[list[int]] = []
        for s in range(0, n, mega):
            chunk = sorted(perm[s : s + mega], key=lambda i: -self.lengths[i])
            batches += [chunk[j : j + size] for j in range(0, len(chunk), size)]
        for b in torch.randperm(len(batches), generator=g).tolist():
            yield batches[b]


# `_row` (the example's row in its file) rides along so an error can name the rows of a bad batch
# `features` is the input of a task without a tokenizer (tabular)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "features", "labels", "_row")


def stack_collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The collator when there is no tokenizer: every example has the same shape, so stack them
    (features and labels as float32, `_row` as int64)."""
    batch = {}
    for key in rows[0]:
        dtype = torch.long if key == "_row" else torch.float32
        batch[key] = torch.tensor([row[key] for row in rows], dtype=dtype)
    return batch


def make_loader(
    ds: datasets.Dataset, tokenizer: Any, batch_size: int, seed: int, shuffle: bool, collator: Any = None
) -> DataLoader:
    """A DataLoader that pads each batch only to its own longest sequence. Without a tokenizer
    (tabular) every example has length 1 and the batch is stacked: the same seeded sampler. A task
    with its own `collator` (causal_lm: token labels padded with -100) passes it."""
    columns = [c for c in MODEL_INPUTS if c in ds.column_names]
    lengths = ds["length"] if tokenizer is not None else [1] * len(ds)
    sampler = LengthGroupedBatchSampler(lengths, batch_size, seed, shuffle)
    return DataLoader(
        ds.with_format(columns=columns),
        batch_sampler=sampler,
        collate_fn=collator or (DataCollatorWithPadding(tokenizer) if tokenizer is not None else stack_collate),
        # its own generator: starting an epoch must not draw from the global RNG, which
        # dropout uses and a checkpoint restores (else a resumed run drifts from the original)
        generator=torch.Generator().manual_seed(seed),
    )


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
