"""`gradtune runs`: every run under a folder with how it ended, made for real: a finished run, one
stopped by a NaN (failed), one stopped by Ctrl-C and one by SIGTERM (interrupted, resumable), one
whose lock a live process holds (running), and the runs of an older gradtune (no end record)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import gradtune
from conftest import at_training_step
from gradtune.commands import app
from gradtune.folders import FolderLock
from gradtune.rundir import RunDir
from gradtune.tasks import classification
from gradtune.tracking.metrics_log import read_metrics
from gradtune.tracking.runs import list_runs, status_of

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "old_runs"
runner = CliRunner()


def signal_self(sig: int):
    def send(value):
        os.kill(os.getpid(), sig)  # as if typed at the terminal (Ctrl-C) or sent by `kill` (SIGTERM)
        return value

    return send


@pytest.fixture(scope="module")
def runs(tiny_bert, sentiment_files, tmp_path_factory) -> Path:
    """runs/: finished, failed (NaN at step 4), ctrl-c and sigterm (stopped after step 3), and
    old/<the runs of gradtune 0.1.0>."""
    root = tmp_path_factory.mktemp("runs")

    def cfg(name: str, **train) -> dict:
        return {"task": "classification", "model": {"name": str(tiny_bert)},
                "data": {"train": str(sentiment_files["train"]), "validation": str(sentiment_files["validation"]),
                         "max_length": 32},
                "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "log_every": 5,
                          "progress": False, "seed": 0, **train},
                "output_dir": str(root / name)}

    gradtune.train(cfg("finished"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(classification, "loss_sum", at_training_step(4, lambda value: value * float("nan")))
        with pytest.raises(gradtune.GradtuneError, match="non-finite loss at step 4"):
            gradtune.train(cfg("failed"))
    for name, sig in (("ctrl-c", signal.SIGINT), ("sigterm", signal.SIGTERM)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(classification, "loss_sum", at_training_step(3, signal_self(sig)))
            with pytest.raises(KeyboardInterrupt):
                gradtune.train(cfg(name))
    shutil.copytree(OLD, root / "old")
    return root


def test_each_run_has_its_status(runs):
    found = {r.name: r for r in list_runs(runs, sort="name")}
    assert sorted(found) == ["ctrl-c", "failed", "finished", "old/causal_lm_gpt", "old/classification",
                             "old/multilabel_lora", "old/regression_lstm", "old/tabular", "sigterm"]
    assert {name: r.status for name, r in found.items() if not name.startswith("old/")} == {
        "finished": "finished", "failed": "failed", "ctrl-c": "interrupted", "sigterm": "interrupted"}
    assert "non-finite loss at step 4" in found["failed"].error and found["finished"].error is None
    # an interrupted run stops after the signal's step, with the checkpoint a resume starts from
    assert found["ctrl-c"].steps == found["sigterm"].steps == 3
    assert [p.name for p in RunDir(runs / "sigterm").list_checkpoints()] == ["step-0000003"]
    finished = found["finished"]
    evaluation = [r for r in read_metrics(runs / "finished" / "metrics.jsonl") if r["kind"] == "eval"][-1]
    assert (finished.task, finished.strategy, finished.steps) == ("classification", "full", 20)
    assert (finished.metric, finished.best_metric, finished.best_step) == ("accuracy", evaluation["accuracy"], 20)
    assert finished.train_seconds > 0 and finished.started is not None
    # runs written before the end record: their files tell
    assert {r.status for name, r in found.items() if name.startswith("old/")} == {"finished"}
    old = found["old/classification"]
    assert (old.task, old.metric, old.best_metric, old.steps) == ("classification", "accuracy", 0.45, 16)


def test_a_run_whose_lock_is_held_is_running(runs):
    records = read_metrics(runs / "finished" / "metrics.jsonl")
    with FolderLock(runs / "finished", "output_dir"):  # what `gradtune train` holds while it trains
        assert status_of(runs / "finished", records) == ("running", None)
        result = runner.invoke(app, ["runs", str(runs), "--json"])
        assert {r["name"]: r["status"] for r in json.loads(result.output)}["finished"] == "running"
    assert status_of(runs / "finished", records) == ("finished", None)


def test_a_resumed_run_finishes_and_forgets_its_interruption(runs, tmp_path):
    run_dir = Path(shutil.copytree(runs / "ctrl-c", tmp_path / "ctrl-c"))
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    gradtune.train({**cfg, "output_dir": str(run_dir)}, ["train.max_steps=5"], resume=True)
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["status"] for r in records if r["kind"] == "end"] == ["finished"]
    assert status_of(run_dir, records) == ("finished", None)


def test_sorting(runs):
    def names(sort: str) -> list[str]:
        return [r.name for r in list_runs(runs, sort=sort)]

    assert names("name") == sorted(names("name"))
    steps = [r.steps for r in list_runs(runs, sort="steps")]
    assert steps == sorted(steps, reverse=True) and steps[0] == 24
    started = [r.started for r in list_runs(runs, sort="started")]
    assert started == sorted(started, reverse=True)
    assert names("started").index("sigterm") < names("started").index("ctrl-c") < names("started").index("finished")
    times = [r.train_seconds or 0 for r in list_runs(runs, sort="time")]
    assert times == sorted(times, reverse=True)
    by_metric = list_runs(runs, sort="metric")
    scored = [r for r in by_metric if r.best_metric is not None]
    assert by_metric[: len(scored)] == scored  # runs with a validation metric first, best first
    assert {r.name for r in scored} == {"finished", "old/classification"}  # both accuracy: higher is better
    assert [r.best_metric for r in scored] == sorted((r.best_metric for r in scored), reverse=True)
    with pytest.raises(gradtune.GradtuneError, match="--sort size: choose one of started, name, metric"):
        list_runs(runs, sort="size")


def test_the_command_prints_a_table_or_json(runs):
    result = runner.invoke(app, ["runs", str(runs), "--sort", "name"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(line for line in lines if line.lstrip().startswith("old/classification"))
    assert row.split()[:9] == ["old/classification", "finished", "classification", "bert", "full", "accuracy", "0.45",
                               "16", "0.1s"]
    assert next(line for line in lines if line.lstrip().startswith("sigterm")).split()[1] == "interrupted"
    assert "failed failed: non-finite loss at step 4 (lr" in result.output  # the error, under the table
    result = runner.invoke(app, ["runs", str(runs), "--json", "--sort", "steps"])
    rows = json.loads(result.output)
    assert [r["steps"] for r in rows] == sorted((r["steps"] for r in rows), reverse=True)
    row = next(r for r in rows if r["name"] == "finished")
    assert row["status"] == "finished" and row["metric"] == "accuracy" and row["started"].endswith("Z")
    assert set(row) >= {"path", "task", "model", "strategy", "best_metric", "best_step", "train_seconds", "error"}


def test_a_folder_that_is_not_there_or_holds_no_runs(tmp_path):
    result = runner.invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "nowhere: no such folder" in result.output
    result = runner.invoke(app, ["runs", str(tmp_path)])
    assert result.exit_code == 0 and "No runs under" in result.output
    assert json.loads(runner.invoke(app, ["runs", str(tmp_path), "--json"]).output) == []
