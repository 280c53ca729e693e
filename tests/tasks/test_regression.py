"""task: regression on the tiny BERT: it learns a count of positive words, standardizes the target
and answers in the data's units, trains on text pairs, and names bad targets."""

from __future__ import annotations

import csv
import json
import random
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gradtune
from conftest import FILLER, NEGATIVE, POSITIVE, SUBJECTS, write_csv
from gradtune.commands import app
from gradtune.config import as_config, build_config
from gradtune.errors import GradtuneError
from gradtune.models.pretrained import load_tokenizer
from gradtune.tasks import get_task
from gradtune.tracking.metrics_log import read_metrics
from gradtune.training.prepare import read_data

REGRESSION_KEYS = {"mse", "mae", "rmse", "r2", "pearson", "spearman", "loss", "examples"}


def score_rows(n: int, seed: int) -> list[dict]:
    """The target is a simple function of the words: 10 + 5 x (positive words in text and pair).
    Negative words are distractors; the pair column carries some of the words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positives = rng.sample(POSITIVE, rng.randint(0, 3))
        words = positives + rng.sample(NEGATIVE, rng.randint(0, 2))
        rng.shuffle(words)
        cut = rng.randint(0, len(words))
        filler = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 3)))
        text = " ".join(filter(None, [rng.choice(SUBJECTS), filler, *words[:cut]]))
        rows.append({"text": text, "pair": " ".join(words[cut:]) or "overall", "score": 10 + 5 * len(positives)})
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scores")
    train, dev = score_rows(200, seed=1), score_rows(50, seed=2)
    # text + pair joined into one text: the single-text runs see every word too
    joined = lambda rows: [{**r, "text": f"{r['text']} {r['pair']}"} for r in rows]
    return {"train": write_csv(folder / "train.csv", joined(train)),
            "validation": write_csv(folder / "dev.csv", joined(dev)),
            "pair_train": write_csv(folder / "pair_train.csv", train),
            "pair_validation": write_csv(folder / "pair_dev.csv", dev)}


def regression_config(tiny_bert: Path, files: dict[str, Path], output_dir: Path, **train) -> dict:
    return {
        "task": "regression",
        "model": {"name": str(tiny_bert)},
        "data": {"train": str(files["train"]), "validation": str(files["validation"]),
                 "label_column": "score", "standardize_target": True, "max_length": 32},
        "train": {"epochs": 6, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "log_every": 5,
                  "progress": False, "seed": 0, **train},
        "output_dir": str(output_dir),
    }


@pytest.fixture(scope="module")
def run(tiny_bert, files, tmp_path_factory):
    return gradtune.train(regression_config(tiny_bert, files, tmp_path_factory.mktemp("reg") / "run"))


def train_losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]


def test_loss_falls_and_r2_is_positive(run):
    losses = train_losses(run.run_dir)
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3
    assert set(run.metrics) == REGRESSION_KEYS - {"examples"}
    assert run.metrics["r2"] > 0.5 and run.best_metric == max(
        r["r2"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "eval")


def test_standardization_is_saved_and_undone(run, files, tmp_path):
    meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
    targets = [float(r["score"]) for r in csv.DictReader(files["train"].open())]
    assert meta["target_mean"] == pytest.approx(statistics.fmean(targets))
    assert meta["target_std"] == pytest.approx(statistics.pstdev(targets))
    assert "labels" not in meta and not (run.run_dir / "model" / "label_map.json").exists()

    out = tmp_path / "pred.csv"
    assert gradtune.predict_file(run.run_dir, files["validation"], out) == 50
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["text", "value"]
    predicted = [float(r["value"]) for r in rows]
    truth = [float(r["score"]) for r in csv.DictReader(files["validation"].open())]
    assert 10 < statistics.fmean(predicted) < 25  # the data's units, not z-scores near 0
    mse = statistics.fmean((p - t) ** 2 for p, t in zip(predicted, truth))
    metrics = gradtune.evaluate(run.run_dir, files["validation"])
    assert metrics["mse"] == pytest.approx(mse, rel=1e-4) and metrics["examples"] == 50
    assert metrics["r2"] == pytest.approx(run.best_metric, abs=1e-5)
    one = gradtune.load(run.run_dir).predict(rows[0]["text"])
    assert one[0]["value"] == pytest.approx(predicted[0], abs=1e-5)


def test_cli_eval_output_has_the_regression_keys(run, files, tmp_path):
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(app, ["eval", str(run.run_dir), "--data", str(files["validation"]),
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert set(json.loads(out.read_text())) == REGRESSION_KEYS


@pytest.mark.parametrize("loss", ["huber", "l1"])
def test_huber_and_l1_train(tiny_bert, files, tmp_path, loss):
    run = gradtune.train(regression_config(tiny_bert, files, tmp_path / loss, loss=loss, epochs=3))
    losses = train_losses(run.run_dir)
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    assert json.loads((run.run_dir / "model" / "gradtune.json").read_text())["loss"] == loss


def test_text_pair_regression(tiny_bert, files, tmp_path):
    cfg = regression_config(tiny_bert, files, tmp_path / "pair", epochs=3)
    cfg["data"].update(train=str(files["pair_train"]), validation=str(files["pair_validation"]),
                       text_pair_column="pair")
    run = gradtune.train(cfg)
    assert run.metrics["r2"] > 0
    out = tmp_path / "pred.jsonl"
    assert gradtune.predict_file(run.run_dir, files["pair_validation"], out) == 50
    assert set(json.loads(out.read_text().splitlines()[0])) == {"text", "value"}
    with pytest.raises(GradtuneError, match="pairs"):
        gradtune.load(run.run_dir).predict(["the movie was great"])


def test_mean_and_std_come_from_the_training_rows_only(tiny_bert, files, tmp_path):
    cfg = as_config(regression_config(tiny_bert, files, tmp_path / "split"), ["data.validation=null",
                                                                             "data.validation_split=0.25"])
    task = get_task("regression")
    splits = read_data(cfg, task)
    meta = splits.meta
    assert "labels" not in meta and meta["loss"] == "mse"
    train_ds = splits.train
    val_ds = task.encode(splits.validation, files["train"], load_tokenizer(str(tiny_bert)), meta)
    assert len(train_ds) == 150 and len(val_ds) == 50
    targets = [float(r["score"]) for r in csv.DictReader(files["train"].open())]
    kept = [targets[i] for i in train_ds["_row"]]
    assert meta["target_mean"] == pytest.approx(statistics.fmean(kept))
    assert meta["target_std"] == pytest.approx(statistics.pstdev(kept))
    assert [v * meta["target_std"] + meta["target_mean"] for v in val_ds["labels"]] == pytest.approx(
        [targets[i] for i in val_ds["_row"]])


@pytest.mark.parametrize("bad, message", [("lots", "target 'lots' is not a number"), ("", "the target is missing")])
def test_bad_target_names_file_line_and_column(tiny_bert, files, tmp_path, bad, message):
    path = tmp_path / "bad.csv"
    path.write_text(f"text,score\nthe movie was great,15\nthe food was bad,{bad}\nthe app,10\n")
    cfg = regression_config(tiny_bert, files, tmp_path / "bad")
    cfg["data"]["train"] = str(path)
    with pytest.raises(GradtuneError) as info:
        gradtune.train(cfg)
    assert str(info.value).startswith(f"{path}, line 3, column 'score': {message}")


def test_defaults_and_mismatches_follow_the_task():
    cfg = build_config({"task": "regression"})
    assert (cfg.train.loss, cfg.train.metric) == ("mse", "r2")
    assert (build_config({}).train.loss, build_config({}).train.metric) == ("cross_entropy", "accuracy")
    with pytest.raises(GradtuneError, match="train.loss='cross_entropy' does not fit task 'regression'"):
        build_config({"task": "regression"}, ["train.loss=cross_entropy"])
    with pytest.raises(GradtuneError, match="train.metric='accuracy' is not a regression metric"):
        build_config({"task": "regression"}, ["train.metric=accuracy"])
    with pytest.raises(GradtuneError, match="data.standardize_target is for task 'regression'"):
        build_config({}, ["data.standardize_target=true"])
    with pytest.raises(GradtuneError, match="train.class_weights is for task 'classification'"):
        build_config({"task": "regression"}, ["train.class_weights=balanced"])
