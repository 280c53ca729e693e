"""task: multilabel on the tiny BERT (its wide-init copy, whose [CLS] vectors differ from the start):
it learns which topics a text mentions (labels set by its words), from delimited strings (CSV) and
from lists (JSONL), and names unseen labels."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gradtune
from conftest import FILLER, NEGATIVE, POSITIVE, write_csv
from gradtune.commands import app
from gradtune.config import build_config
from gradtune.errors import GradtuneError
from gradtune.tracking.metrics_log import read_metrics

LABELS = ["food", "hotel", "service"]
METRIC_KEYS = {"f1_micro", "f1_macro", "precision_micro", "recall_micro", "precision_macro", "recall_macro",
               "subset_accuracy", "hamming_loss", "loss", "examples"}


def topic_rows(n: int, seed: int) -> list[dict]:
    """Labels follow the words: "food" if the food is mentioned, "hotel" if the hotel is, "service"
    if the service is. The movie, the app, filler and sentiment words are distractors; some rows
    get no label at all."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        subjects = rng.sample(["the food", "the service", "the hotel", "the movie", "the app"], rng.randint(1, 3))
        filler = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
        words = [" and ".join(subjects), *filler, rng.choice(rng.choice([POSITIVE, NEGATIVE]))]
        labels = [name for name in LABELS if f"the {name}" in subjects]
        rows.append({"text": " ".join(words), "labels": labels})
    return rows


def as_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    return write_csv(path, [{"text": r["text"], "tags": delimiter.join(r["labels"])} for r in rows])


def as_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"text": r["text"], "tags": r["labels"]}) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return {"train": topic_rows(240, seed=1), "validation": topic_rows(60, seed=2)}


@pytest.fixture(scope="module")
def files(rows, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("topics")
    return {"train": as_csv(folder / "train.csv", rows["train"], "|"),
            "validation": as_csv(folder / "dev.csv", rows["validation"], "|"),
            "train_jsonl": as_jsonl(folder / "train.jsonl", rows["train"]),
            "validation_jsonl": as_jsonl(folder / "dev.jsonl", rows["validation"])}


def multilabel_config(wide_init_bert: Path, train: Path, validation: Path, output_dir: Path, **data) -> dict:
    return {
        "task": "multilabel",
        "model": {"name": str(wide_init_bert)},
        "data": {"train": str(train), "validation": str(validation), "label_column": "tags",
                 "max_length": 32, **data},
        "train": {"epochs": 6, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "log_every": 5,
                  "progress": False, "seed": 0},
        "output_dir": str(output_dir),
    }


@pytest.fixture(scope="module")
def run(wide_init_bert, files, tmp_path_factory):
    cfg = multilabel_config(wide_init_bert, files["train"], files["validation"], tmp_path_factory.mktemp("ml") / "run",
                            label_delimiter="|")
    return gradtune.train(cfg)


def train_losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]


def all_labels_f1(rows: list[dict]) -> float:
    """micro F1 of the trivial answer "every label, always": precision = share of positive
    decisions, recall 1. (Predicting no label at all scores 0.)"""
    p = sum(len(r["labels"]) for r in rows) / (len(LABELS) * len(rows))
    return 2 * p / (1 + p)


def test_loss_falls_and_f1_beats_the_trivial_baseline(run, rows):
    losses = train_losses(run.run_dir)
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3
    assert set(run.metrics) == METRIC_KEYS - {"examples"}
    baseline = all_labels_f1(rows["validation"])
    assert run.metrics["f1_micro"] > max(0.9, baseline + 0.2)
    assert run.metrics["subset_accuracy"] > 0.8
    assert run.best_metric == max(
        r["f1_micro"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "eval")


def test_metadata_predictions_and_outputs(run, files, rows, tmp_path):
    model = run.run_dir / "model"
    meta = json.loads((model / "gradtune.json").read_text())
    assert (meta["task"], meta["labels"], meta["threshold"], meta["delimiter"]) == ("multilabel", LABELS, 0.5, "|")
    assert json.loads((model / "label_map.json").read_text()) == {"0": "food", "1": "hotel", "2": "service"}

    predictor = gradtune.load(run.run_dir)
    results = predictor.predict(["the food was great", "the service and the food was awful", "the app is fun"])
    for result in results:
        assert set(result) == {"labels", "probabilities"} and set(result["probabilities"]) == set(LABELS)
        assert result["labels"] == [n for n in LABELS if result["probabilities"][n] > 0.5]
    assert [r["labels"] for r in results] == [["food"], ["food", "service"], []]

    out = tmp_path / "pred.csv"
    assert gradtune.predict_file(run.run_dir, files["validation"], out) == 60
    predicted = list(csv.DictReader(out.open()))
    assert list(predicted[0]) == ["text", "labels", "prob_food", "prob_hotel", "prob_service"]
    right = sum(set(filter(None, p["labels"].split("|"))) == set(r["labels"])
                for p, r in zip(predicted, rows["validation"]))
    metrics = gradtune.evaluate(run.run_dir, files["validation"])
    assert metrics["examples"] == 60 and metrics["subset_accuracy"] == pytest.approx(right / 60, abs=1e-5)
    assert metrics["f1_micro"] == pytest.approx(run.best_metric, abs=1e-5)

    out = tmp_path / "pred.jsonl"
    gradtune.predict_file(run.run_dir, files["validation"], out)
    assert set(json.loads(out.read_text().splitlines()[0])) == {"text", "labels", "probabilities"}


def test_cli_eval_output_has_the_multilabel_keys(run, files, tmp_path):
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(app, ["eval", str(run.run_dir), "--data", str(files["validation"]),
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert set(json.loads(out.read_text())) == METRIC_KEYS


def test_list_labels_from_jsonl_and_a_higher_threshold(wide_init_bert, files, rows, tmp_path):
    cfg = multilabel_config(wide_init_bert, files["train_jsonl"], files["validation_jsonl"], tmp_path / "jsonl")
    cfg["train"].update(threshold=0.7)
    run = gradtune.train(cfg)
    assert run.metrics["f1_micro"] > all_labels_f1(rows["validation"])
    meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
    assert (meta["labels"], meta["threshold"]) == (LABELS, 0.7)
    for result in gradtune.load(run.run_dir).predict(["the food was great", "the app was dull"]):
        assert result["labels"] == [n for n in LABELS if result["probabilities"][n] > 0.7]


@pytest.mark.parametrize("name, content", [
    ("dev.csv", "text,tags\nthe food was great,food|service\nthe hotel was dull,\nthe app was bad,hotel|drinks\n"),
    ("dev.jsonl", '{"text": "the food was great", "tags": ["food"]}\n{"text": "the hotel", "tags": []}\n'
                  '{"text": "the app was bad", "tags": ["hotel", "drinks"]}\n'),
])
def test_unseen_validation_label_names_file_line_and_column(wide_init_bert, files, tmp_path, name, content):
    dev = tmp_path / name
    dev.write_text(content)
    cfg = multilabel_config(wide_init_bert, files["train"], dev, tmp_path / "unseen", label_delimiter="|")
    with pytest.raises(GradtuneError) as info:
        gradtune.train(cfg)
    assert str(info.value).startswith(f"{dev}, line 4, column 'tags': label 'drinks' never appears"
                                      if name.endswith("csv") else
                                      f"{dev}, line 3, column 'tags': label 'drinks' never appears")


def test_config_defaults_and_mismatches():
    cfg = build_config({"task": "multilabel"})
    assert (cfg.train.loss, cfg.train.metric, cfg.train.threshold, cfg.data.label_delimiter) == (
        "bce", "f1_micro", 0.5, ",")
    with pytest.raises(GradtuneError, match="train.loss='cross_entropy' does not fit task 'multilabel'"):
        build_config({"task": "multilabel"}, ["train.loss=cross_entropy"])
    with pytest.raises(GradtuneError, match="train.loss='bce' does not fit task 'classification'"):
        build_config({}, ["train.loss=bce"])
    with pytest.raises(GradtuneError, match="train.metric='accuracy' is not a multilabel metric"):
        build_config({"task": "multilabel"}, ["train.metric=accuracy"])
    with pytest.raises(GradtuneError, match="train.threshold is for task 'multilabel'"):
        build_config({}, ["train.threshold=0.3"])
    with pytest.raises(GradtuneError, match="train.class_weights is for task 'classification'"):
        build_config({"task": "multilabel"}, ["train.class_weights=balanced"])


def test_per_label_thresholds_are_saved_and_used_by_predict_and_eval(wide_init_bert, files, rows, tmp_path):
    cfg = multilabel_config(wide_init_bert, files["train"], files["validation"], tmp_path / "bars",
                            label_delimiter="|")
    cfg["train"].update(threshold={"hotel": 0.999, "food": 0.001}, max_steps=3)  # service keeps 0.5
    run = gradtune.train(cfg)
    meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
    assert meta["threshold"] == {"food": 0.001, "hotel": 0.999}
    bars = {"food": 0.001, "hotel": 0.999, "service": 0.5}
    results = gradtune.load(run.run_dir).predict([r["text"] for r in rows["validation"]])
    for result in results:
        assert result["labels"] == [n for n in LABELS if result["probabilities"][n] > bars[n]]
    # after 3 steps no probability is that extreme: food is always predicted, hotel never
    assert all("food" in r["labels"] and "hotel" not in r["labels"] for r in results)
    assert any("service" in r["labels"] for r in results) or all(r["probabilities"]["service"] <= 0.5
                                                                 for r in results)
    right = sum(set(p["labels"]) == set(r["labels"]) for p, r in zip(results, rows["validation"]))
    metrics = gradtune.evaluate(run.run_dir, files["validation"])
    assert metrics["subset_accuracy"] == pytest.approx(right / len(results), abs=1e-5)
    decisions = len(LABELS) * len(results)
    wrong = sum(len(set(p["labels"]) ^ set(r["labels"])) for p, r in zip(results, rows["validation"]))
    assert metrics["hamming_loss"] == pytest.approx(wrong / decisions, abs=1e-5)


def test_a_threshold_for_an_unknown_label_lists_the_real_labels(wide_init_bert, files, tmp_path):
    cfg = multilabel_config(wide_init_bert, files["train"], files["validation"], tmp_path / "bad",
                            label_delimiter="|")
    cfg["train"].update(threshold={"food": 0.3, "drinks": 0.2})
    with pytest.raises(GradtuneError, match=r"train.threshold names label\(s\) 'drinks' that .*train.csv "
                                            r"\(column 'tags'\) does not have; its labels: food, hotel, service"):
        gradtune.train(cfg)
    with pytest.raises(GradtuneError, match=r"train.threshold: label .food.: 1.5 is not a probability"):
        build_config({"task": "multilabel"}, ["train.threshold={food: 1.5}"])
    assert build_config({"task": "multilabel"}, ["train.threshold={food: 0.3}"]).train.threshold == {"food": 0.3}
