"""`gradtune plan`: the shapes it counts are the loader's, its time and sizes are those of the real
run (within a generous factor for time: the machine may be busy), and budgets give fitting advice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import gradtune
from gradtune.commands import app
from gradtune.config import as_config
from gradtune.errors import GradtuneError
from gradtune.perf.budget import parse_duration, parse_size, suggest
from gradtune.perf.plan import estimate, make_plan
from gradtune.rundir import RunDir
from gradtune.training.optim import step_plan
from gradtune.training.prepare import prepare
from gradtune.training.step import pieces

runner = CliRunner()


@pytest.fixture(scope="module")
def config(tiny_bert: Path, sentiment_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    return {
        "task": "classification", "model": {"name": str(tiny_bert)},
        "data": {"train": str(sentiment_files["train"]), "validation": str(sentiment_files["validation"]),
                 "max_length": 32},
        # micro-batches: the plan must count the padding of each piece as step.pieces cuts it
        "train": {"epochs": 4, "batch_size": 8, "micro_batch_size": 4, "lr": 3e-3, "warmup_ratio": 0.0,
                  "log_every": 5, "progress": False, "seed": 0},
        "output_dir": str(tmp_path_factory.mktemp("plan") / "run"), "report": False,
    }


@pytest.fixture(scope="module")
def plan(config):
    return make_plan(config)


def test_tokens_and_padding_are_the_loaders(plan, config):
    job = prepare(as_config(config), Path(config["output_dir"]))
    job.train_loader.batch_sampler.set_epoch(0)
    tokens = padded = batches = 0
    for batch in job.train_loader:
        batches += 1
        tokens += int(batch["attention_mask"].sum())
        padded += sum(piece["input_ids"].numel() for piece in pieces(batch, step_plan(job.cfg.train).micro_batch))
    result = plan.as_dict()
    assert result["tokens_per_epoch"] == tokens
    assert result["padded_tokens_per_epoch"] == padded
    assert result["steps_per_epoch"] == batches and result["total_steps"] == 4 * batches
    assert 0 <= result["padding_percent"] == pytest.approx(100 * (1 - tokens / padded), abs=0.1)


def test_time_and_sizes_match_the_real_run(plan, config):
    run = gradtune.train(config)
    predicted = plan.estimate.train_seconds
    # a behaviour, not a speed test: the same machine, a generous factor for a busy one
    assert 0.33 * run.train_seconds <= predicted <= 3 * run.train_seconds, (predicted, run.train_seconds)
    checkpoint = RunDir(run.run_dir).list_checkpoints()[-1]
    on_disk = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file()) / 2**20
    assert plan.measured.checkpoint_mb == pytest.approx(on_disk, rel=0.02)
    model = sum(f.stat().st_size for f in RunDir(run.run_dir).model.rglob("*") if f.is_file()) / 2**20
    assert plan.measured.model_mb == pytest.approx(model, rel=0.05)
    assert plan.estimate.checkpoints == 4 and plan.estimate.evaluations == 4
    assert 100 < plan.estimate.peak_memory_mb < 20_000


def test_the_estimate_scales_with_epochs_and_rows(plan, config):
    t = plan.cfg.train
    base = estimate(plan.layout, plan.measured, t)
    twice = estimate(plan.layout, plan.measured, t, epochs=8)
    extra = plan.measured.first_step_extra
    assert twice.total_steps == 2 * base.total_steps
    assert twice.train_seconds - extra == pytest.approx(2 * (base.train_seconds - extra), rel=0.1)
    half = estimate(plan.layout, plan.measured, t, rows=0.5)
    assert half.tokens_per_epoch == pytest.approx(base.tokens_per_epoch / 2, rel=0.2)
    shorter = estimate(plan.layout, plan.measured, t, max_length=8)
    assert shorter.padded_tokens_per_epoch < base.padded_tokens_per_epoch
    # never more; the same when a tiny model's steps cost a fixed overhead whatever their length
    assert shorter.train_seconds <= base.train_seconds


def test_a_time_budget_below_the_prediction_gets_suggestions_that_fit(plan):
    setup = plan.measured.setup_seconds  # no change makes reading the data and building the model faster
    budget = setup + (plan.estimate.run_seconds - setup) / 3
    found = suggest(plan, budget, None)
    assert found, "no suggestion for a budget of a third of the run"
    assert all(s.run_seconds <= budget for s in found)
    assert any(s.overrides[0].startswith("train.epochs=") for s in found)
    assert suggest(plan, plan.estimate.run_seconds * 2, None) == []  # it fits: nothing to change


def test_the_command_prints_json_and_suggestions(config, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["plan", str(path), "train.epochs=2", "--json", "--time", "1s"])
    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)
    for key in ("train_seconds", "tokens_per_epoch", "peak_memory_mb", "eval_seconds", "checkpoint_mb"):
        assert planned[key] > 0, key
    assert planned["epochs"] == 2 and planned["budget"]["seconds"] == 1.0
    assert all(s["run_seconds"] <= 1.0 for s in planned["suggestions"])
    shown = runner.invoke(app, ["plan", str(path), "--time", "10h"])
    assert shown.exit_code == 0, shown.output
    assert "tokens / epoch" in shown.stdout and "--time 10h: fits" in shown.stdout


@pytest.mark.parametrize("text,seconds", [("10m", 600), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_sizes():
    assert parse_size("4GB") == 4096 and parse_size("512MB") == 512 and parse_size("1.5g") == 1536


def test_bad_budgets_and_configs_are_clear_errors(config, tmp_path):
    with pytest.raises(GradtuneError, match="10m, 1h30m, 90s"):
        parse_duration("10 mins")
    with pytest.raises(GradtuneError, match="4GB, 512MB"):
        parse_size("4 gigs")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["plan", str(path), "--time", "soon"])
    assert result.exit_code == 2 and "not a duration" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["plan", str(path), "train.epochz=2"])
    assert result.exit_code == 2 and "epochz" in result.output
