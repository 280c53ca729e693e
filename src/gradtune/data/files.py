"""Data files: read CSV / TSV / JSONL / JSON / Parquet through `datasets`, with errors that name the
file (missing, empty, not UTF-8, unreadable) and the column; and where a row sits in its file, so
that every later error can name the line a user would look at."""

from __future__ import annotations

import csv
import glob
import io
import json
from collections.abc import Iterator
from pathlib import Path

import datasets
import pyarrow.parquet as pq

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
            f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[err.start]:02x}); {_resave_hint(raw)}"
        ) from None


def _resave_hint(raw: bytes) -> str:
    """How to re-save a file that is not UTF-8: Chinese Windows and Excel save CSV as GBK (GB18030).
    Such a file decodes as GB18030 into common Chinese characters (GB2312's, both bytes >= 0xA1);
    Latin-1 text may decode too, but into rare ones (an accent's byte then an ASCII letter)."""
    try:
        han = [c for c in raw.decode("gb18030") if "\u4e00" <= c <= "\u9fff"]
    except UnicodeDecodeError:
        han = []
    if han and sum(_in_gb2312(c) for c in han) >= 0.9 * len(han):
        return ("it looks like GBK / GB18030 (Chinese Windows, Excel's plain \"CSV\"): re-save it as UTF-8 "
                "(Excel: \"CSV UTF-8\"; or `iconv -f gb18030 -t utf-8`)")
    return "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"


def _in_gb2312(char: str) -> bool:
    try:
        char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def read_table(path: str | Path) -> datasets.Dataset:
    """Read one file into a `datasets.Dataset`, with a clear error for a missing, empty or
    undecodable file."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in FORMATS)[:5]
        hint = f"; it holds {', '.join(inside)}" if inside else ""
        raise GradtuneError(f"{path} is a folder, not a data file: give one file{hint}")
    fmt = file_format(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (a relative path is read from the current folder: looked for " \
                                                f"{path.resolve()})"
        raise GradtuneError(f"data file not found: {path}{where}")
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
    if fmt == "json":  # SQuAD's nested JSON: one row per question
        from gradtune.data.squad import read_squad

        squad = read_squad(path)
        if squad is not None:
            if not squad:
                raise GradtuneError(f"{path}: the file has no data rows (no questions)")
            return datasets.Dataset.from_list(squad)
    try:
        # data_files is a glob pattern: a path holding [ ] * ? must be escaped to mean itself
        ds = datasets.load_dataset(builder, data_files=glob.escape(str(path)), split="train", **kwargs)
    except Exception as err:  # the readers raise many types; the user needs the file, the line and the reason
        if _has_no_rows(path, fmt):
            raise GradtuneError(f"{path}: the file has no data rows") from None
        reason = _why_unreadable(path, fmt)
        if reason is None:
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise GradtuneError(f"{path}: could not be read as {fmt}: {reason}") from None
    if len(ds) == 0:
        raise GradtuneError(f"{path}: the file has no data rows")
    return ds


def _why_unreadable(path: Path, fmt: str) -> str | None:
    """What is wrong with a file the reader refused, naming the 1-based line; None if this finds
    nothing (the reader's own message then stands). Only called after a failure."""
    text = path.read_text(encoding="utf-8")
    if fmt in ("csv", "tsv"):
        reader = csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",", strict=True)
        try:
            header = next(reader)
            if not any(h.strip() for h in header):
                return "line 1, the header, names no columns; the first line must name them (text,label)"
            for fields in reader:
                if fields and len(fields) != len(header):
                    return (f"line {reader.line_num} has {len(fields)} fields but the header has {len(header)} "
                            f"({', '.join(header)}); quote a field that holds the delimiter")
        except csv.Error as err:
            if "unexpected end of data" in str(err):
                return f"a quote opened on line {reader.line_num} or before is never closed"
            return f"line {reader.line_num}: {err}"
        return None
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                return f"line {number}, column {err.colno} is not valid JSON: {err.msg}"
            if not isinstance(record, dict):
                return f"line {number} is a JSON {type(record).__name__}; each line must be one object {{...}}"
        return None
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            return f"line {err.lineno}, column {err.colno} is not valid JSON: {err.msg}"
        records = isinstance(data, list) and all(isinstance(r, dict) for r in data)
        if not (records or isinstance(data, dict)):
            return "a JSON data file holds a list of records, [{...}, {...}], or a mapping of columns to lists"
    return None


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
            alike = [c for c in ds.column_names if c.strip().lower() == column.strip().lower()]
            hint = f" (did you mean {alike[0]!r}?)" if alike else ""
            raise GradtuneError(
                f"{path}: no column {column!r} (set by {key}){hint}; the file has columns: "
                f"{', '.join(map(repr, ds.column_names))}"
            )
