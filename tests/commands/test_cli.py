"""The `gradtune` command as a user types it: train, eval, predict, errors, Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gradtune.commands import app
from gradtune.rundir import RunDir
from gradtune.tracking.metrics_log import read_metrics

runner = CliRunner()


def write_config(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def trained_run(make_config, tmp_path) -> Path:
    config = write_config(tmp_path, make_config())
    result = runner.invoke(app, ["train", str(config), "train.epochs=3", f"output_dir={tmp_path / 'cli-run'}"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "confusion matrix" in result.output
    return tmp_path / "cli-run"


def test_train_eval_predict(trained_run, sentiment_files, tmp_path):
    saved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 3  # the override, resolved into the saved config

    out = tmp_path / "metrics.json"
    result = runner.invoke(app, ["eval", str(trained_run), "--data", str(sentiment_files["validation"]),
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    for key in ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "loss"):
        assert isinstance(metrics[key], float)
    assert metrics["accuracy"] >= 0.9 and metrics["examples"] == 40

    result = runner.invoke(app, ["predict", str(trained_run), "--text", "the movie was great",
                                 "--text", "the food was awful"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [line["label"] for line in lines] == ["positive", "negative"]
    assert set(lines[0]["probabilities"]) == {"negative", "positive"}

    predictions = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(trained_run), "--input", str(sentiment_files["validation"]),
                                 "--output", str(predictions)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(predictions.open()))
    truth = list(csv.DictReader(sentiment_files["validation"].open()))
    assert len(rows) == 40 and set(rows[0]) == {"text", "label", "prob_negative", "prob_positive"}
    assert sum(r["label"] == t["label"] for r, t in zip(rows, truth)) >= 36


def test_bad_config_is_one_clear_line_not_a_traceback(make_config, tmp_path):
    config = write_config(tmp_path, make_config())
    result = runner.invoke(app, ["train", str(config), "train.lrr=0.1"])
    assert result.exit_code == 2
    assert "train.lrr" in result.output and "did you mean 'lr'" in result.output
    assert "Traceback" not in result.output


def test_messages_print_brackets_as_typed(make_config, tmp_path):
    # rich would read "[area, rooms]" or a folder named "[v2]" as markup and print nothing of it
    config = write_config(tmp_path, make_config(output_dir=str(tmp_path / "[v2]")))
    result = runner.invoke(app, ["train", str(config), "task=tabular"])
    assert result.exit_code == 2 and "e.g. [area, rooms]" in " ".join(result.output.split())
    data = write_config(tmp_path, make_config(data__train=str(tmp_path / "[x]" / "train.csv")))
    result = runner.invoke(app, ["train", str(data)])
    assert result.exit_code == 2 and "[x]" in result.output


def test_bad_data_names_file_and_row(make_config, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood film,positive\n,negative\n")
    config = write_config(tmp_path, make_config(data__train=str(bad)))
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2
    assert "bad.csv" in result.output and "line 3" in result.output and "'text'" in result.output


def test_predict_needs_text_or_input(trained_run):
    result = runner.invoke(app, ["predict", str(trained_run)])
    assert result.exit_code == 2 and "--text" in result.output


def test_beams_are_for_seq2seq_only(trained_run):
    result = runner.invoke(app, ["predict", str(trained_run), "--text", "fine", "--num-beams", "4"])
    assert result.exit_code == 2 and "num_beams applies to task 'seq2seq' only" in result.output


def test_pair_counts_must_match(trained_run):
    result = runner.invoke(app, ["predict", str(trained_run), "--text", "a", "--text", "b", "--pair", "c"])
    assert result.exit_code == 2 and "one --pair per --text (2 --text, 1 --pair)" in result.output


def test_ctrl_c_saves_a_checkpoint_that_resumes(make_config, tmp_path):
    run_dir = tmp_path / "interrupted"
    # many small steps, so the signal arrives mid-training
    cfg = make_config(output_dir=str(run_dir), train__epochs=200, train__save_every=10_000,
                      train__log_every=1)
    config = write_config(tmp_path, cfg)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gradtune", "train", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "--resume" in output
    checkpoints = RunDir(run_dir).list_checkpoints()
    assert len(checkpoints) == 1
    stopped_at = json.loads((checkpoints[0] / "progress.json").read_text())["step"]
    assert 0 < stopped_at < 4000

    result = runner.invoke(app, ["train", str(config), "train.epochs=1", "--resume"])
    assert result.exit_code == 0, result.output
    steps = [r["step"] for r in read_metrics(metrics) if r["kind"] == "train"]
    assert steps == sorted(set(steps))  # no step logged twice after the resume
