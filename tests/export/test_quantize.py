"""int8 ONNX: `export --format onnx --quantize int8` writes model.int8.onnx beside model.onnx and prints
how int8 changes the predictions and metrics on the run's validation file (or why it cannot); the
int8 model loads with backend onnx for predict and eval, and asking for one that is not there says
how to make it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gradtune
from gradtune.commands import app
from gradtune.errors import GradtuneError
from gradtune.export.quantize import validation_file

runner = CliRunner()
TEXTS = ["the movie was great", "awful", "the food was really quite bad and dull"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, wide_init_bert, sentiment_files) -> Path:
    out = tmp_path_factory.mktemp("int8") / "run"
    cfg = {"model": {"name": str(wide_init_bert)},
           "data": {"train": str(sentiment_files["train"]), "validation": str(sentiment_files["validation"]),
                    "max_length": 32},
           "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "progress": False, "seed": 0}, "output_dir": str(out)}
    return gradtune.train(cfg).run_dir


def test_int8_export_writes_the_model_and_prints_the_accuracy_change(run):
    with pytest.raises(GradtuneError, match="export .* --quantize int8"):
        gradtune.load(run, backend="onnx", quantize="int8")  # before the export: how to make it
    result = runner.invoke(app, ["export", str(run), "--format", "onnx", "--quantize", "int8",
                                 "--output", str(run / "onnx")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert (run / "onnx" / "model.onnx").is_file() and (run / "onnx" / "model.int8.onnx").is_file()
    assert "model.int8.onnx (int8 weights:" in said
    assert "int8 vs float32 on data.validation" in said and "same prediction for" in said
    assert "of 40 rows" in said and "accuracy " in said and " -> " in said
    assert "--backend onnx --quantize int8" in said


def test_the_int8_model_predicts_and_evaluates_with_backend_onnx(run):
    if not (run / "onnx" / "model.int8.onnx").is_file():
        pytest.skip("needs the export of the test above")
    int8, full = gradtune.load(run, backend="onnx", quantize="int8"), gradtune.load(run, backend="onnx")
    got, expected = int8.predict(TEXTS), full.predict(TEXTS)
    assert [set(r) for r in got] == [set(r) for r in expected]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in got)
    # the weights changed, so the numbers do, a little
    assert got != expected
    assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in zip(got, expected)
               for k in a["probabilities"]) < 0.2
    result = runner.invoke(app, ["predict", str(run), "--backend", "onnx", "--quantize", "int8", "--text", TEXTS[0]])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["label"] == got[0]["label"]
    metrics = gradtune.evaluate(run, validation_file(run)[0], backend="onnx", quantize="int8")
    assert metrics["examples"] == 40 and 0 <= metrics["accuracy"] <= 1


def test_quantize_is_refused_where_it_does_not_apply(run, tmp_path):
    with pytest.raises(GradtuneError, match="applies to backend 'onnx'"):
        gradtune.load(run, quantize="int8")
    result = runner.invoke(app, ["export", str(run), "--format", "hf", "--quantize", "int8",
                                 "--output", str(tmp_path / "hf")])
    assert result.exit_code == 2 and "of an ONNX export (--format onnx)" in result.output


def test_without_a_validation_file_the_change_is_not_measured_and_says_why(tmp_path):
    (tmp_path / "config.yaml").write_text("data:\n  validation: null\n  validation_split: 0.1\n")
    assert validation_file(tmp_path)[2] == ("the run's config has no data.validation file (it used "
                                            "data.validation_split of its training file, which export does not "
                                            "rebuild)")
    (tmp_path / "config.yaml").write_text("data:\n  validation: missing/dev.csv\ntrain:\n  metric: f1_macro\n")
    path, metric, reason = validation_file(tmp_path)
    assert path is None and metric == "f1_macro"
    assert reason.startswith("data.validation missing/dev.csv is not readable")
    assert validation_file(tmp_path / "nowhere")[2].endswith("has no config.yaml to find data.validation in")
