"""The tokenization cache: a second run on the same file skips tokenizing; a changed file or
setting, a damaged entry or `data.cache: false` tokenizes again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import sentiment_rows, write_csv

import gradtune.tasks.base as task_base
from gradtune.config import as_config
from gradtune.data.cache import cache_root
from gradtune.training.prepare import prepare


@pytest.fixture
def tokenized(monkeypatch) -> Iterator[list[int]]:
    """How many texts the tokenizer was given, counted over every call. `datasets`' own map cache
    is off, so that only gradtune's cache can spare a call."""
    import datasets

    datasets.disable_caching()
    calls: list[int] = []
    real = task_base.tokenize_texts

    def counting(batch, tokenizer, *args):
        calls.append(len(batch[args[0]]))
        return real(batch, tokenizer, *args)
    monkeypatch.setattr(task_base, "tokenize_texts", counting)
    yield calls
    datasets.enable_caching()


def features(job) -> dict[str, list]:
    """What the loaders hold, train and validation, as plain lists."""
    out = {}
    for name, loader in (("train", job.train_loader), ("validation", job.val_loader)):
        ds = loader.dataset.with_format(None)
        out.update({f"{name}.{c}": list(ds[c]) for c in ds.column_names})
    return out


def said(capsys) -> str:
    """The console's messages, unwrapped (rich breaks long lines)."""
    return " ".join(capsys.readouterr().err.split())


def entries() -> list[Path]:
    folder = cache_root() / "features"
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_the_cache_is_under_gradtune_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADTUNE_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("GRADTUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "gradtune"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "gradtune"


def test_a_second_run_reads_the_features_without_tokenizing(make_config, tokenized, tmp_path, capsys):
    cfg = as_config(make_config())
    first = prepare(cfg, tmp_path / "a")
    assert sum(tokenized) == 160 + 40  # the training and validation rows
    assert len(entries()) == 2
    tokenized.clear()
    second = prepare(cfg, tmp_path / "b")
    assert tokenized == []
    assert features(second) == features(first)
    assert "tokenized features read from the cache" in said(capsys)


def test_a_changed_file_is_tokenized_again(make_config, tokenized, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(160, seed=1))
    cfg = make_config(data__train=str(train))
    prepare(as_config(cfg), tmp_path / "a")
    rows = sentiment_rows(160, seed=1)
    rows[7]["text"] = "an entirely different sentence"
    write_csv(train, rows)
    tokenized.clear()
    job = prepare(as_config(cfg), tmp_path / "b")
    assert sum(tokenized) == 160  # the training file again; the unchanged validation file from the cache
    texts = job.train_loader.dataset.with_format(None)["input_ids"]
    assert len(texts) == 160


@pytest.mark.parametrize("setting", [{"data__max_length": 8}, {"data__max_train_rows": 100},
                                     {"data__validation": None, "data__validation_split": 0.25}])
def test_a_changed_setting_is_tokenized_again(make_config, tokenized, tmp_path, setting):
    prepare(as_config(make_config()), tmp_path / "a")
    tokenized.clear()
    job = prepare(as_config(make_config(**setting)), tmp_path / "b")
    assert sum(tokenized) > 0
    if "data__max_length" in setting:
        assert max(job.train_loader.dataset.with_format(None)["length"]) <= 8
    if "data__max_train_rows" in setting:
        assert len(job.train_loader.dataset) == 100
    if "data__validation_split" in setting:
        assert len(job.train_loader.dataset) == 120


def test_a_damaged_entry_is_ignored_and_rebuilt(make_config, tokenized, tmp_path, capsys):
    cfg = as_config(make_config())
    first = prepare(cfg, tmp_path / "a")
    for entry in entries():
        for arrow in entry.glob("*.arrow"):
            arrow.write_bytes(b"not arrow at all")
    tokenized.clear()
    second = prepare(cfg, tmp_path / "b")
    assert sum(tokenized) == 200
    assert "unreadable tokenization cache entry" in said(capsys)
    assert features(second) == features(first)
    tokenized.clear()
    prepare(cfg, tmp_path / "c")  # rebuilt: read from the cache again
    assert tokenized == []


def test_a_half_written_entry_is_never_read(make_config, tokenized, tmp_path):
    """Entries are written under a temporary name and renamed: a leftover from a crash is not an entry."""
    cfg = as_config(make_config())
    prepare(cfg, tmp_path / "a")
    for entry in entries():  # as if the rename never happened
        os.replace(entry, entry.with_name(f".{entry.name}.dead.partial"))
    tokenized.clear()
    prepare(cfg, tmp_path / "b")
    assert sum(tokenized) == 200


def test_cache_false_tokenizes_every_time_and_writes_nothing(make_config, tokenized, tmp_path):
    cfg = as_config(make_config(data__cache=False))
    prepare(cfg, tmp_path / "a")
    prepare(cfg, tmp_path / "b")
    assert sum(tokenized) == 2 * 200
    assert entries() == []


def test_a_cached_run_trains_to_the_same_model(make_config, tmp_path):
    """Training from cached features is training from fresh ones: the same metrics, step for step."""
    import gradtune

    first = gradtune.train(make_config(output_dir=str(tmp_path / "a"), train__epochs=2))
    second = gradtune.train(make_config(output_dir=str(tmp_path / "b"), train__epochs=2))
    assert len(entries()) == 2
    assert second.metrics == first.metrics


def test_the_tokenizers_identity_ignores_the_settings_of_its_last_call(tiny_bert):
    from transformers import AutoTokenizer

    from gradtune.data.cache import tokenizer_identity

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    before = tokenizer_identity(tokenizer)
    tokenizer(["a good film"], truncation=True, max_length=8, padding="max_length")
    assert tokenizer_identity(tokenizer) == before
