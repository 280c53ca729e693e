"""The tokenized-features cache: a second run on the same data skips tokenizing.

A split's features are saved with `datasets`' `save_to_disk` (Arrow files, never pickle) under
the user cache dir, in a folder named by a fingerprint of everything that decides them: the data
file's bytes, which rows of it are used (sampling, a validation split and skipped empty rows all
show in the `_row` column), the tokenizer's full serialized state, the task and its input settings
(columns, max_length, label names, ...), and the versions of gradtune and datasets. A folder is
written under a temporary name and renamed when complete, so a crash never leaves half of one;
one that cannot be read is deleted and rebuilt. `data.cache: false` turns the cache off."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets

from gradtune import __version__
from gradtune.models.bundled import cache_dir
from gradtune.tracking.console import log

# the one user cache folder ($GRADTUNE_CACHE, else $XDG_CACHE_HOME/gradtune, else ~/.cache/gradtune)
cache_root = cache_dir


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_identity(tokenizer: Any) -> str:
    """What the tokenizer does, as text: a fast tokenizer's whole serialized state (vocabulary,
    normalizer, pre-tokenizer, post-processor), else its class, vocabulary and special tokens."""
    if tokenizer is None:
        return "none"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # without the truncation and padding of the last call, which each call sets anew
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        state = json.dumps(state, sort_keys=True)
    else:
        state = json.dumps(sorted(tokenizer.get_vocab().items()))
    special = json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str)
    return f"{type(tokenizer).__name__}\n{special}\n{state}"


def fingerprint(path: str | Path, rows: datasets.Dataset, tokenizer: Any, task: str, meta: dict[str, Any],
                labelled: bool) -> str:
    """The cache key of one split's features."""
    digest = hashlib.sha256()
    settings = {"task": task, "labelled": labelled, "meta": meta, "columns": rows.column_names,
                "gradtune": __version__, "datasets": datasets.__version__}
    for part in (file_digest(path), json.dumps(settings, sort_keys=True, default=str), tokenizer_identity(tokenizer)):
        digest.update(part.encode())
        digest.update(b"\0")
    # which rows of the file, in which order: a sample, a validation split, skipped empty rows
    if "_row" in rows.column_names:
        digest.update(json.dumps(list(rows["_row"])).encode())
    else:
        digest.update(str(len(rows)).encode())
    return digest.hexdigest()[:32]


def read_entry(folder: Path) -> datasets.Dataset | None:
    """A saved split, or None when there is none or it cannot be read (then it is deleted)."""
    if not folder.is_dir():
        return None
    try:
        ds = datasets.load_from_disk(str(folder))
        if len(ds):  # reads the Arrow data, so a damaged file fails here and not mid-training
            ds[0], ds[len(ds) - 1]
        return ds
    except Exception as err:  # damaged in any way: rebuild it
        log.warning(f"Ignoring an unreadable tokenization cache entry {folder} ({type(err).__name__}); rebuilding it")
        shutil.rmtree(folder, ignore_errors=True)
        return None


def write_entry(ds: datasets.Dataset, folder: Path) -> None:
    """Save under a temporary name, then rename: a folder with the final name is always complete.
    A cache that cannot be written only warns (the run goes on without it)."""
    partial = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        ds.save_to_disk(str(partial))
        os.replace(partial, folder)
    except OSError as err:
        # another run may have written the same entry first; that one is as good as ours
        if not folder.is_dir():
            log.warning(f"Could not write the tokenization cache {folder} ({err}); set data.cache=false to skip it")
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def encode_split(task: Any, rows: datasets.Dataset, path: str | Path, tokenizer: Any, meta: dict[str, Any],
                 use_cache: bool) -> datasets.Dataset:
    """`task.encode` of one split's rows, through the cache when `use_cache` (data.cache), the task's
    encoding may be cached and the rows come from one file."""
    def encode() -> datasets.Dataset:
        return task.encode(rows, path, tokenizer, meta)

    if not (use_cache and task.cache_features and Path(path).is_file()):
        return encode()
    return encode_cached(encode, path, rows, tokenizer, task.name, meta)


def encode_cached(
    encode: Callable[[], datasets.Dataset], path: str | Path, rows: datasets.Dataset, tokenizer: Any, task: str,
    meta: dict[str, Any], labelled: bool = True,
) -> datasets.Dataset:
    """`encode()`'s features of `rows` (read from `path`), read from the cache when an earlier run
    made them from the same bytes, rows, tokenizer and settings; else encoded and saved."""
    folder = cache_root() / "features" / fingerprint(path, rows, tokenizer, task, meta, labelled)
    cached = read_entry(folder)
    if cached is not None:
        log.info(f"{path}: tokenized features read from the cache ({folder}; data.cache=false turns it off)")
        return cached
    ds = encode()
    write_entry(ds, folder)
    return ds
