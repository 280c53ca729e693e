"""Fuzzing the front door: random, truncated, mis-encoded and mis-shaped data files and configs, and
random key=value overrides, through `gradtune train`, `eval` and `predict`. Each must either work or
end with gradtune's own error: exit code 2, one message, no Python traceback, and nothing left
half-written in the run folder. The examples are derandomized (the same ones every run), so a
failure here is a real bug to fix, never a flake."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import gradtune
from conftest import sentiment_rows, write_csv
from gradtune.commands import app

runner = CliRunner()
FUZZ = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# cells a hostile or careless file holds: texts with markup, quotes, delimiters and newlines, other
# types, and nothing at all
cells = st.one_of(
    st.text(max_size=20), st.sampled_from(["", " ", "NA", "null", "[pos]", 'a "quoted", text', "tab\there",
                                           "two\nlines", "caf\u00e9", "positive", "negative"]),
    st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.lists(st.integers(0, 2), max_size=3),
)
column_names = st.sampled_from(["text", "label", "sentence", "", "text ", "Label"])
random_rows = st.lists(st.dictionaries(column_names, cells, max_size=3), max_size=12)


@st.composite
def mutated_rows(draw) -> list[dict]:
    """Good sentiment rows with a few cells, columns or rows damaged: what careless files look like."""
    records = [dict(r) for r in sentiment_rows(24, seed=5)]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(records) - 1))
        change = draw(st.sampled_from(["cell", "drop", "extra", "rename"]))
        column = draw(st.sampled_from(["text", "label"]))
        if change == "cell":
            records[i][column] = draw(cells)
        elif change == "drop":
            records[i].pop(column, None)
        elif change == "extra":
            records[i][draw(column_names)] = draw(cells)
        else:  # a column renamed in every row
            new = draw(column_names)
            records = [{(new if k == column else k): v for k, v in r.items()} for r in records]
    return records


def render(records: list[dict], fmt: str) -> bytes:
    """Records as a file of `fmt` (a CSV's header is the union of the keys, in order)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, default=str) + "\n" for r in records).encode()
    if fmt == "json":
        return json.dumps(records, default=str).encode()
    keys = list(dict.fromkeys(k for r in records for k in r)) or ["text"]
    sep = "\t" if fmt == "tsv" else ","
    lines = [sep.join(keys)] + [sep.join(str(r.get(k, "")) for k in keys) for r in records]
    return ("\n".join(lines) + "\n").encode()


@st.composite
def data_files(draw) -> tuple[str, bytes]:
    """(suffix, content): well-formed, truncated, mis-encoded or not even rows."""
    fmt = draw(st.sampled_from(["csv", "tsv", "jsonl", "json"]))
    content = render(draw(st.one_of(mutated_rows(), random_rows)), fmt)
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "latin1", "garbage", "empty"]))
    if damage == "truncate":
        content = content[: draw(st.integers(0, max(len(content) - 1, 0)))]
    elif damage == "latin1":
        content = content.replace(b"a", b"\xe9", 1)
    elif damage == "garbage":
        content = draw(st.binary(max_size=60))
    elif damage == "empty":
        content = b""
    return fmt, content


OVERRIDE_KEYS = ["train.lr", "train.batch_size", "train.optimizer", "train.loss", "train.metric", "data.max_length",
                 "data.text_column", "data.label_column", "data.on_empty", "strategy.method", "task", "train.threshold",
                 "train.gd_mode", "train.schedule", "model.dropout", "data.validation_split", "train.eval_every",
                 "train.lrr", "data", "train.class_weights", "data.label_names", "train.precision"]
values = st.one_of(st.sampled_from(["0", "-1", "1e-3", "null", "[1, 2]", "{a: 1}", "[", "adamw", "sgd", "batch",
                                    "balanced", "lora", "head", "regression", "multilabel", "0.5", "true", "epoch",
                                    "fp64", "x y", "[neg, pos]"]),
                   st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8))
overrides = st.lists(st.tuples(st.sampled_from(OVERRIDE_KEYS), values).map(lambda kv: f"{kv[0]}={kv[1]}"),
                     max_size=3)


def assert_handled(result, folder: Path | None = None) -> None:
    """Worked (exit 0), or gradtune's own error (exit 2, SystemExit): never a traceback."""
    assert result.exit_code in (0, 2), f"exit {result.exit_code}: {result.exception!r}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if folder is not None and folder.exists():
        half = [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".new", ".old"))]
        assert not half, f"left half-written: {half}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("fuzz-run")
    train = write_csv(folder / "train.csv", sentiment_rows(40, seed=1))
    cfg = {"model": {"name": str(tiny_bert)}, "data": {"train": str(train), "max_length": 32},
           "train": {"max_steps": 2, "progress": False}, "output_dir": str(folder / "run")}
    return gradtune.train(cfg).run_dir


def train_in(tmp: Path, tiny_bert: Path, data: tuple[str, bytes], validation: tuple[str, bytes] | None,
             extra: list[str], broken_yaml: str = ""):
    (tmp / f"train.{data[0]}").write_bytes(data[1])
    cfg = {"model": {"name": str(tiny_bert)}, "data": {"train": str(tmp / f"train.{data[0]}"), "max_length": 16},
           "train": {"max_steps": 2, "batch_size": 4, "progress": False}, "output_dir": str(tmp / "run")}
    if validation is not None:
        (tmp / f"dev.{validation[0]}").write_bytes(validation[1])
        cfg["data"]["validation"] = str(tmp / f"dev.{validation[0]}")
    text = yaml.safe_dump(cfg)
    if broken_yaml == "cut":
        text = text[: len(text) // 2]
    elif broken_yaml == "twice":
        text += "train:\n  lr: 0.1\n"
    elif broken_yaml == "tabs":
        text = text.replace("  ", "\t")
    elif broken_yaml == "list":
        text = "- " + text.replace("\n", "\n  ")
    (tmp / "config.yaml").write_text(text)
    result = runner.invoke(app, ["train", str(tmp / "config.yaml"), *extra, "train.max_steps=2"])
    assert_handled(result, tmp / "run")
    if result.exit_code == 0:
        assert (tmp / "run" / "model" / "gradtune.json").is_file()


@FUZZ
@given(data=data_files(), validation=st.one_of(st.none(), data_files()))
def test_train_on_any_data_works_or_says_why(tiny_bert, data, validation):
    with tempfile.TemporaryDirectory() as tmp:
        train_in(Path(tmp), tiny_bert, data, validation, [])


@FUZZ
@given(extra=overrides, broken_yaml=st.sampled_from(["", "", "cut", "twice", "tabs", "list"]))
def test_train_with_any_config_works_or_says_why(tiny_bert, extra, broken_yaml):
    with tempfile.TemporaryDirectory() as tmp:
        good = ("csv", render([dict(r) for r in sentiment_rows(24, seed=5)], "csv"))
        train_in(Path(tmp), tiny_bert, good, None, extra, broken_yaml)


@FUZZ
@given(data=data_files())
def test_eval_and_predict_work_or_say_why(trained, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input.{data[0]}"
        path.write_bytes(data[1])
        assert_handled(runner.invoke(app, ["eval", str(trained), "--data", str(path)]))
        result = runner.invoke(app, ["predict", str(trained), "--input", str(path), "--output", f"{tmp}/out.csv"])
        assert_handled(result)
        if result.exit_code == 0:
            assert (Path(tmp) / "out.csv").is_file()


@FUZZ
@given(texts=st.lists(cells.map(str), min_size=1, max_size=4))
def test_predict_texts_work_or_say_why(trained, texts):
    assert_handled(runner.invoke(app, ["predict", str(trained), *(f"--text={t}" for t in texts)]))
