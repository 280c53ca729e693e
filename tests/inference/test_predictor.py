"""Prediction input is checked as training input is: an empty text is an error naming the input (or
the file line), or skipped and counted on request."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

import gradtune
from conftest import write_csv
from gradtune.commands import app
from gradtune.errors import GradtuneError


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_bert, sentiment_files):
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = {"model": {"name": str(tiny_bert)}, "data": {"train": str(sentiment_files["train"]), "max_length": 32},
           "train": {"max_steps": 4, "progress": False}, "output_dir": str(out)}
    return gradtune.train(cfg).run_dir


def test_an_empty_text_is_an_error_naming_the_input(run):
    model = gradtune.load(run)
    with pytest.raises(GradtuneError, match=r"input 1: the text is empty .*on_empty='skip'"):
        model.predict(["the movie was great", "   ", "awful"])


def test_empty_texts_can_be_skipped_and_are_counted(run, caplog):
    model = gradtune.load(run)
    with caplog.at_level("WARNING", logger="gradtune"):
        results = model.predict(["the movie was great", "", "awful"], on_empty="skip")
    assert results[1] is None and results[0] == model.predict(["the movie was great"])[0]
    assert results[2] == model.predict(["awful"])[0]
    assert "Skipped 1 input(s) with empty text" in caplog.text


def test_a_prediction_file_with_an_empty_text_names_the_line(run, tmp_path):
    rows = [{"text": "the movie was great"}, {"text": ""}, {"text": "awful"}]
    source = write_csv(tmp_path / "in.csv", rows)
    result = CliRunner().invoke(app, ["predict", str(run), "--input", str(source), "--output", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "in.csv, line 3, column 'text'" in result.output, result.output
    assert not (tmp_path / "o.csv").exists()
    result = CliRunner().invoke(app, ["predict", str(run), "--input", str(source), "--output",
                                      str(tmp_path / "o.csv"), "--on-empty", "skip"])
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in csv.DictReader((tmp_path / "o.csv").open())] == ["the movie was great", "awful"]
    result = CliRunner().invoke(app, ["predict", str(run), "--text", "", "--text", "fun", "--on-empty", "skip"])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines[0] == {"text": "", "skipped": "empty text"} and "label" in lines[1]
