"""task: tabular with model.name: mlp: numeric feature columns -> a number, trained from scratch.
Bad feature columns are named, standardization is saved and reapplied, the model round-trips,
and a hidden layer learns what a line can't."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

import gradtune
from conftest import linear_rows, tabular_config, write_csv
from gradtune.config import build_config
from gradtune.errors import GradtuneError
from gradtune.models.mlp import MLPForSequenceClassification
from gradtune.tracking.metrics_log import read_metrics


def test_config_requires_numeric_feature_columns_and_the_mlp():
    with pytest.raises(GradtuneError, match="task 'tabular' needs data.feature_columns"):
        build_config({"task": "tabular", "model": {"name": "mlp"}})
    assert build_config({"task": "tabular", "data": {"feature_columns": ["a"]}}).model.name == "mlp"  # its default
    with pytest.raises(GradtuneError, match="model.name 'mlp'"):
        build_config({"task": "tabular", "model": {"name": "minilm"}, "data": {"feature_columns": ["a"]}})
    with pytest.raises(GradtuneError, match="model.hidden_sizes: for model.name mlp"):
        build_config({"task": "classification", "model": {"hidden_sizes": [4]}})
    with pytest.raises(GradtuneError, match="data.standardize_features is for task 'tabular'"):
        build_config({"task": "regression", "data": {"standardize_features": True}})


def test_missing_feature_column_lists_the_files_columns(tmp_path):
    train = write_csv(tmp_path / "train.csv", linear_rows(10, 0))
    cfg = tabular_config(train, tmp_path / "run", data={"feature_columns": ["x1", "area"]})
    with pytest.raises(GradtuneError) as err:
        gradtune.train(cfg)
    message = str(err.value)
    assert "no column 'area'" in message and "data.feature_columns" in message
    assert "'x1', 'x2', 'y'" in message and str(train) in message


def test_non_numeric_feature_names_file_line_and_column(tmp_path):
    rows = linear_rows(10, 0)
    rows[3]["x2"] = "big"  # data row 3 is line 5 (after the header)
    train = write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(GradtuneError, match=r"train.csv, line 5, column 'x2': feature 'big' is not a number"):
        gradtune.train(tabular_config(train, tmp_path / "run"))


def test_standardize_features_is_saved_and_applied_at_predict_and_eval(tmp_path):
    rows = linear_rows(120, 1)
    train = write_csv(tmp_path / "train.csv", rows[:100])
    dev = write_csv(tmp_path / "dev.csv", rows[100:])
    cfg = tabular_config(train, tmp_path / "run", dev, data={"standardize_features": True},
                         train={"epochs": 30, "optimizer": "sgd", "lr": 0.1, "max_grad_norm": None})
    run = gradtune.train(cfg)
    meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
    x1 = [r["x1"] for r in rows[:100]]  # the training rows only, not the validation file
    mean = sum(x1) / len(x1)
    std = math.sqrt(sum((v - mean) ** 2 for v in x1) / len(x1))
    assert meta["feature_mean"][0] == pytest.approx(mean) and meta["feature_std"][0] == pytest.approx(std)
    assert not (run.run_dir / "model" / "tokenizer_config.json").exists()

    predictor = run.predictor()
    # the model's own view: standardized inputs through the saved weights
    raw = [[r["x1"], r["x2"]] for r in rows[100:]]
    scaled = [[(v - m) / s for v, m, s in zip(row, meta["feature_mean"], meta["feature_std"])] for row in raw]
    with torch.no_grad():
        direct = predictor.model(features=torch.tensor(scaled)).logits[:, 0].tolist()
    predicted = [p["value"] for p in predictor.predict(raw)]
    assert predicted == pytest.approx(direct, abs=1e-4)
    by_name = predictor.predict({"x2": raw[0][1], "x1": raw[0][0]})
    assert by_name[0]["value"] == pytest.approx(predicted[0], abs=1e-6)
    # learnt in standardized units, answers in the data's: close to the true line
    assert predicted == pytest.approx([0.5 * a - 3 * b for a, b in raw], abs=3.0)

    result = gradtune.evaluate(run.run_dir, dev)
    assert result["r2"] > 0.9 and result["examples"] == 20

    out = tmp_path / "pred.csv"
    assert gradtune.predict_file(run.run_dir, dev, out) == 20
    header, first = out.read_text().splitlines()[:2]
    assert header == "x1,x2,value"
    assert float(first.split(",")[2]) == pytest.approx(predicted[0], abs=1e-5)


def test_mlp_round_trip_gives_identical_predictions(tmp_path):
    train = write_csv(tmp_path / "train.csv", linear_rows(40, 2))
    cfg = tabular_config(train, tmp_path / "run", model={"hidden_sizes": [8, 4], "activation": "tanh"},
                         train={"epochs": 2})
    run = gradtune.train(cfg)
    model = run.predictor().model
    model.save_pretrained(tmp_path / "copy")
    again = MLPForSequenceClassification.from_pretrained(tmp_path / "copy")
    x = torch.randn(16, 2)
    with torch.no_grad():
        assert torch.equal(model(features=x).logits, again(features=x).logits)
    assert [layer.out_features for layer in again.layers if hasattr(layer, "out_features")] == [8, 4]
    # the same seed gives the same initial weights, so the same run
    rerun = gradtune.train({**cfg, "output_dir": str(tmp_path / "rerun")})
    rows = [[150.0, 0.5], [120.0, -0.2]]
    assert run.predictor().predict(rows) == rerun.predictor().predict(rows)


def test_a_hidden_layer_learns_a_nonlinear_target(tmp_path):
    rng = random.Random(3)
    rows = []
    for _ in range(200):
        x1, x2 = rng.uniform(-2, 2), rng.uniform(-2, 2)
        rows.append({"x1": x1, "x2": x2, "y": x1 * x1 - abs(x2)})
    train = write_csv(tmp_path / "train.csv", rows)
    losses = {}
    for hidden in ([], [32]):
        cfg = tabular_config(train, tmp_path / f"run{len(hidden)}", model={"hidden_sizes": hidden},
                             train={"epochs": 60, "batch_size": 32, "lr": 0.02, "log_every": 7})
        run = gradtune.train(cfg)
        records = [r for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
        losses[len(hidden)] = (records[0]["loss"], records[-1]["loss"])
    first, last = losses[1]
    assert last < 0.2 * first  # the hidden layer fits x1² - |x2|
    assert last < 0.3 * losses[0][1]  # far better than the best line
