"""task: tabular with categorical columns (one-hot and embeddings) and with a class as the target
(train.loss cross_entropy): learned from a synthetic set where the answer depends on the category,
statistics and categories from the training rows only, identical predictions after reload, unseen
categories encoded as all zeros and reported, and errors that name the file, line and column."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

import gradtune
from conftest import write_csv
from gradtune.config import build_config
from gradtune.errors import GradtuneError
from gradtune.experiments.gradcheck import check_gradients
from gradtune.models.mlp import MLPForSequenceClassification

OFFSET = {"north": 3.0, "south": -3.0, "east": 0.0, "west": 6.0}  # the number's shift per city
GROUP = {"north": "yes", "east": "yes", "south": "no", "west": "no"}  # the class is the city's group


def city_rows(n: int, seed: int, cities: list[str] | None = None) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        city, kind, x = rng.choice(cities or list(OFFSET)), rng.choice(["flat", "house"]), rng.uniform(-1, 1)
        rows.append({"x": round(x, 3), "city": city, "kind": kind,
                     "price": round(2 * x + OFFSET.get(city, 0.0) + (1 if kind == "house" else 0), 3),
                     "group": GROUP.get(city, "no")})
    return rows


def config(tmp_path: Path, train_file: Path, validation: Path | None = None, name: str = "run",
           **sections) -> dict:
    data = {"train": str(train_file), "feature_columns": ["x"], "categorical_columns": ["city", "kind"],
            "label_column": "price", **sections.get("data", {})}
    if validation is not None:
        data["validation"] = str(validation)
    return {"task": "tabular", "model": {"name": "mlp", **sections.get("model", {})}, "data": data,
            "train": {"epochs": 20, "batch_size": 16, "optimizer": "adam", "lr": 0.05, "warmup_ratio": 0.0,
                      "progress": False, "seed": 0, **sections.get("train", {})},
            "output_dir": str(tmp_path / name)}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cities")
    return {"train": write_csv(folder / "train.csv", city_rows(160, 1)),
            "dev": write_csv(folder / "dev.csv", city_rows(60, 2))}


@pytest.fixture(scope="module")
def classifier(files, tmp_path_factory):
    """A one-hot classifier of the city's group (the numeric x is noise)."""
    cfg = config(tmp_path_factory.mktemp("cls"), files["train"], files["dev"],
                 data={"label_column": "group"}, train={"loss": "cross_entropy", "epochs": 10})
    return gradtune.train(cfg)


def test_the_class_follows_the_category_with_classification_metrics(classifier, files, tmp_path):
    assert classifier.metrics["accuracy"] >= 0.95 and classifier.metrics["f1_macro"] >= 0.95
    meta = json.loads((classifier.run_dir / "model" / "gradtune.json").read_text())
    assert meta["labels"] == ["no", "yes"] and meta["loss"] == "cross_entropy"
    assert meta["categories"] == {"city": ["east", "north", "south", "west"], "kind": ["flat", "house"]}
    assert "metric: accuracy" in (classifier.run_dir / "config.yaml").read_text()  # the default for classes

    result = gradtune.evaluate(classifier.run_dir, files["dev"])
    assert result["accuracy"] == pytest.approx(classifier.metrics["accuracy"]) and result["examples"] == 60
    predicted = classifier.predictor().predict({"x": 0.2, "city": "west", "kind": "flat"})
    assert predicted[0]["label"] == "no" and set(predicted[0]["probabilities"]) == {"no", "yes"}

    out = tmp_path / "pred.csv"
    assert gradtune.predict_file(classifier.run_dir, files["dev"], out) == 60
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["x", "city", "kind", "label", "prob_no", "prob_yes"]
    right = sum(r["label"] == GROUP[r["city"]] for r in rows)
    assert right / len(rows) == pytest.approx(result["accuracy"])


def test_an_unseen_category_is_all_zeros_and_reported(classifier, files, tmp_path, capsys):
    predictor = classifier.predictor()
    capsys.readouterr()
    got = predictor.predict([[0.5, "mars", "flat"], [0.5, "mars", "house"]])
    assert "2 row(s) hold categories of column 'city'" in capsys.readouterr().err
    # the one-hot block of the city is all zeros: the model's own answer for that input
    features = torch.tensor([[0.5, 0, 0, 0, 0, 1, 0], [0.5, 0, 0, 0, 0, 0, 1]])
    with torch.no_grad():
        expected = torch.softmax(predictor.model(features=features).logits, dim=-1)[:, 1].tolist()
    assert [g["probabilities"]["yes"] for g in got] == pytest.approx(expected, abs=1e-6)
    # an evaluation file with unseen categories is scored (zeros), and reported with its path
    dev = write_csv(tmp_path / "dev.csv", city_rows(10, 3, cities=["north", "moon"]))
    result = gradtune.evaluate(classifier.run_dir, dev)
    assert result["examples"] == 10
    assert f"{dev}" in capsys.readouterr().err.replace("\n", "")


def test_statistics_and_categories_come_from_training_rows_only(files, tmp_path):
    odd = city_rows(40, 5, cities=["north", "atlantis"])
    for row in odd:
        row["x"] = row["x"] * 1000  # far outside the training range
    odd_dev = write_csv(tmp_path / "odd_dev.csv", odd)
    metas = []
    for name, dev in (("a", files["dev"]), ("b", odd_dev)):
        cfg = config(tmp_path, files["train"], dev, name=name, data={"standardize_features": True},
                     train={"epochs": 1})
        run = gradtune.train(cfg)
        meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
        metas.append({k: meta[k] for k in ("feature_mean", "feature_std", "categories")})
    assert metas[0] == metas[1]
    xs = [r["x"] for r in city_rows(160, 1)]
    assert metas[0]["feature_mean"] == [pytest.approx(sum(xs) / len(xs))]
    assert "atlantis" not in metas[1]["categories"]["city"]


def test_embeddings_learn_the_number_and_reload_gives_identical_predictions(files, tmp_path):
    cfg = config(tmp_path, files["train"], files["dev"], model={"hidden_sizes": [16]},
                 data={"categorical_encoding": "embedding", "categorical_embedding_size": 3})
    run = gradtune.train(cfg)
    assert run.metrics["r2"] > 0.9
    model = run.predictor().model
    assert [tuple(t.weight.shape) for t in model.categories] == [(5, 3), (3, 3)]  # categories + unseen
    assert torch.equal(model.categories[0].weight[0], torch.zeros(3))  # the unseen row stays zero
    rows = [[0.1, "west", "house"], {"x": -0.4, "city": "south", "kind": "flat"}, [0.0, "pluto", "flat"]]
    first = run.predictor().predict(rows)
    assert first == gradtune.load(run.run_dir).predict(rows)
    assert first[0]["value"] == pytest.approx(2 * 0.1 + 6 + 1, abs=1.0)
    model.save_pretrained(tmp_path / "copy")
    again = MLPForSequenceClassification.from_pretrained(tmp_path / "copy")
    x = torch.tensor([[0.3, 1.0, 2.0], [-0.2, 4.0, 1.0], [0.0, 0.0, 0.0]])
    with torch.no_grad():
        assert torch.equal(model(features=x).logits, again(features=x).logits)


def test_gradcheck_covers_the_category_embeddings(files, tmp_path):
    cfg = config(tmp_path, files["train"], model={"hidden_sizes": [4], "activation": "tanh"},
                 data={"categorical_encoding": "embedding"})
    report = check_gradients(cfg, params_per_tensor=4, batch_size=8)
    assert report.passed, [(r.tensor, r.worst_rel_error) for r in report.rows if not r.ok]
    rows = {r.tensor: r for r in report.rows}
    assert {"categories.0.weight", "categories.1.weight"} <= set(rows)
    assert abs(rows["categories.0.weight"].autograd) > 1e-10  # a row the batch uses, checked for real
    assert max(r.worst_rel_error for r in report.rows) < 1e-6


def test_a_missing_category_names_file_line_and_column(files, tmp_path):
    rows = city_rows(10, 0)
    rows[4]["kind"] = ""  # data row 4: line 6
    train = write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(GradtuneError, match=r"train.csv, line 6, column 'kind': the category is missing"):
        gradtune.train(config(tmp_path, train))
    bad = write_csv(tmp_path / "input.csv", rows)
    run = gradtune.train(config(tmp_path, files["train"], train={"epochs": 1}))
    with pytest.raises(GradtuneError, match=r"input.csv, line 6, column 'kind': the category is missing"):
        gradtune.predict_file(run.run_dir, bad, tmp_path / "out.csv")
    with pytest.raises(GradtuneError, match=r"row 1, column 'city': the category is missing"):
        run.predictor().predict([[0.1, "north", "flat"], [0.2, None, "flat"]])
    with pytest.raises(GradtuneError, match="no value for column.s. kind"):
        run.predictor().predict({"x": 0.1, "city": "north"})
    missing = write_csv(tmp_path / "no_kind.csv", [{k: v for k, v in r.items() if k != "kind"} for r in rows])
    with pytest.raises(GradtuneError, match=r"no column 'kind' \(set by data.categorical_columns\[1\]\)"):
        gradtune.train(config(tmp_path, missing, name="r2"))


def test_config_checks_for_categories_and_classes(tmp_path):
    def build(**sections) -> None:
        build_config(config(tmp_path, tmp_path / "t.csv", **sections))

    cfg = build_config(config(tmp_path, tmp_path / "t.csv", train={"loss": "cross_entropy"}))
    assert cfg.train.metric == "accuracy"
    assert build_config(config(tmp_path, tmp_path / "t.csv")).train.metric == "r2"
    with pytest.raises(GradtuneError, match="'r2' is not a tabular metric"):
        build(train={"loss": "cross_entropy", "metric": "r2"})
    with pytest.raises(GradtuneError, match="standardize_target is for task 'regression'"):
        build(train={"loss": "cross_entropy"}, data={"standardize_target": True})
    with pytest.raises(GradtuneError, match="categorical_embedding_size is for data.categorical_encoding"):
        build(data={"categorical_embedding_size": 8})
    with pytest.raises(GradtuneError, match="in both data.feature_columns and data.categorical_columns"):
        build(data={"feature_columns": ["x", "city"]})
    with pytest.raises(GradtuneError, match="data.categorical_columns is for task 'tabular'"):
        build_config({"task": "classification", "data": {"categorical_columns": ["city"]}})
    # categorical columns alone are enough input
    assert build_config(config(tmp_path, tmp_path / "t.csv", data={"feature_columns": None})).data.feature_columns \
        is None
    with pytest.raises(GradtuneError, match="needs data.feature_columns .* and/or data.categorical_columns"):
        build(data={"feature_columns": None, "categorical_columns": None})
