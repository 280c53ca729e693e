"""The gradient-descent knobs: accumulation math, GD modes, optimizers, schedules, regularization,
non-finite handling and gradient health."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tests.conftest import sentiment_rows, write_csv

import gradtune
from gradtune.config import build_config
from gradtune.errors import GradtuneError
from gradtune.rundir import RunDir
from gradtune.tasks import classification, get_task
from gradtune.tracking.gradient_health import GradientHealth
from gradtune.tracking.metrics_log import read_metrics
from gradtune.training.optim import build_scheduler, parameter_groups


def weights_after(run_dir):
    return load_file(RunDir(run_dir).list_checkpoints()[-1] / "model.safetensors")


@pytest.fixture
def ten_examples(tmp_path):
    rows = sentiment_rows(10, seed=3)
    rows[0]["text"] = "the movie " + "really " * 12 + "good"  # much longer: pieces are padded differently
    return write_csv(tmp_path / "ten.csv", rows)


def test_accumulated_gradient_equals_the_one_batch_gradient_in_float64(make_config, ten_examples, tmp_path):
    # one SGD step with lr 1 moves the weights by exactly -grad, so equal weights = equal gradients
    base = dict(data__train=str(ten_examples), train__optimizer="sgd", train__lr=1.0, train__weight_decay=0.0,
                train__max_grad_norm=None, train__schedule="constant", train__warmup_ratio=0.0,
                train__max_steps=1, train__precision="fp64", model__dropout=0.0, model__attention_dropout=0.0)
    variants = {
        "one_batch": dict(train__batch_size=10),
        "micro_3": dict(train__batch_size=10, train__micro_batch_size=3),  # pieces of 3, 3, 3, 1
        "accum_2x5": dict(train__batch_size=5, train__grad_accum_steps=2),
        "full_batch": dict(train__gd_mode="batch", train__micro_batch_size=4),  # 4, 4, 2
    }
    weights = {}
    for name, options in variants.items():
        cfg = make_config(**base, **options, output_dir=str(tmp_path / name))
        del cfg["data"]["validation"]
        run = gradtune.train(cfg)
        assert run.steps == 1
        weights[name] = weights_after(run.run_dir)
    reference = weights.pop("one_batch")
    assert reference["classifier.weight"].dtype == torch.float64
    for name, w in weights.items():
        for key in reference:
            assert torch.allclose(w[key], reference[key], rtol=0, atol=1e-10), (name, key)


def test_gd_modes_set_the_number_of_updates(make_config, ten_examples, tmp_path):
    def steps(**options):
        cfg = make_config(data__train=str(ten_examples), train__epochs=2, output_dir=str(tmp_path / str(options)),
                          **options)
        del cfg["data"]["validation"]
        return gradtune.train(cfg).steps

    assert steps(train__gd_mode="stochastic") == 20  # one update per example
    assert steps(train__gd_mode="batch", train__micro_batch_size=3) == 2  # one update per epoch
    assert steps(train__gd_mode="minibatch", train__batch_size=4) == 6  # ceil(10 / 4) per epoch


@pytest.mark.parametrize("optimizer,lr,extra", [
    ("sgd", 0.1, {"train__momentum": 0.9, "train__nesterov": True}),
    ("sgd", 0.5, {}),
    ("adam", 1e-3, {}),
    ("adamw", 1e-3, {}),
    ("rmsprop", 1e-3, {}),
    ("adagrad", 3e-2, {}),
])
def test_each_optimizer_lowers_the_loss(make_config, wide_init_bert, tmp_path, optimizer, lr, extra):
    # 20 full-batch steps on 8 examples: every optimizer must fit them
    cfg = make_config(data__train=str(write_csv(tmp_path / "eight.csv", sentiment_rows(8, seed=5))),
                      model__name=str(wide_init_bert),
                      train__optimizer=optimizer, train__lr=lr, train__epochs=20, train__batch_size=8,
                      train__schedule="constant", train__log_every=1, **extra)
    del cfg["data"]["validation"]
    run = gradtune.train(cfg)
    losses = [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert sum(losses[-3:]) / 3 < 0.9 * losses[0], (optimizer, losses)


def test_weight_decay_skips_biases_and_layernorm(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    decay, no_decay = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert no_decay["weight_decay"] == 0.0
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert "classifier.bias" in skipped and any("LayerNorm.weight" in n for n in skipped)


def lr_curve(schedule, total=110, warmup=10, **options):
    cfg = build_config({"train": {"schedule": schedule, "warmup_steps": warmup, "lr": 1.0, **options}}).train
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, total)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(total):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_schedules_follow_their_formulas():
    # warmup 10 steps, then 100 steps of decay; p = fraction of the decay done
    for schedule in ("constant", "linear", "cosine", "cosine_restarts", "polynomial"):
        lrs = lr_curve(schedule, power=2.0)
        assert lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0), schedule
    assert lr_curve("constant")[80] == pytest.approx(1.0)
    linear = lr_curve("linear")
    assert linear[60] == pytest.approx(0.5) and linear[110] == pytest.approx(0.0)
    cosine = lr_curve("cosine")
    assert cosine[35] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    restarts = lr_curve("cosine_restarts", num_cycles=2)
    assert restarts[35] == pytest.approx(0.5) and restarts[60] == pytest.approx(1.0)  # restarted at p = 0.5
    poly = lr_curve("polynomial", power=2.0)
    assert poly[60] == pytest.approx(0.25) and poly[85] == pytest.approx(0.0625)


def test_plateau_schedule_cuts_the_lr_when_the_metric_stalls():
    cfg = build_config({"train": {"schedule": "plateau", "warmup_steps": 2, "lr": 1.0,
                                  "plateau_factor": 0.5, "plateau_patience": 1}}).train
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, 100, mode="max")
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.5)  # warming up
    scheduler.step()
    for metric in (0.8, 0.8, 0.8):  # best, then two evaluations without improvement
        scheduler.observe(metric)
    assert scheduler.get_last_lr()[0] == pytest.approx(0.5)


def test_plateau_schedule_trains_end_to_end(make_config):
    run = gradtune.train(make_config(train__schedule="plateau", train__eval_every=5, train__epochs=2))
    lrs = [r["lr"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert run.steps == 40 and max(lrs) == pytest.approx(3e-3)


def test_class_weights_and_label_smoothing_reach_the_loss():
    weights = classification.class_weights("balanced", [0, 0, 0, 1], 2)
    assert weights.tolist() == pytest.approx([4 / 6, 4 / 2])
    with pytest.raises(GradtuneError, match="one weight per label"):
        classification.class_weights([1.0], [0, 1], 2)
    cfg = build_config({"train": {"class_weights": [1.0, 3.0], "label_smoothing": 0.1}}).train
    loss = get_task("classification").make_loss(cfg, [0, 1], {"labels": ["negative", "positive"]})
    logits, labels = torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 1])
    expected = F.cross_entropy(logits, labels, weight=torch.tensor([1.0, 3.0]), label_smoothing=0.1, reduction="sum")
    assert loss(logits, labels) == pytest.approx(float(expected))


def test_dropout_overrides_reach_the_model_config(make_config):
    run = gradtune.train(make_config(train__epochs=1, model__dropout=0.0, model__attention_dropout=0.05,
                                     model__classifier_dropout=0.3))
    saved = json.loads((run.run_dir / "model" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.0 and saved["attention_probs_dropout_prob"] == 0.05
    assert saved["classifier_dropout"] == 0.3


def test_loss_that_does_not_fit_the_task_is_a_config_error():
    with pytest.raises(GradtuneError, match="train.loss='mse' does not fit task 'classification'"):
        build_config({}, ["train.loss=mse"])


def nan_at_step(step: int):
    real, calls = classification.loss_sum, {"n": 0}

    def loss(logits, labels, **options):
        value = real(logits, labels, **options)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == step:
                return value * float("nan")
        return value

    return loss


def test_nan_stops_training_naming_step_lr_and_rows_and_the_checkpoint_resumes(make_config, monkeypatch):
    cfg = make_config(train__epochs=1, train__save_every=5)
    monkeypatch.setattr(classification, "loss_sum", nan_at_step(7))
    with pytest.raises(GradtuneError) as err:
        gradtune.train(cfg)
    message = str(err.value)
    assert "non-finite loss at step 7" in message and "lr 0.0021" in message  # 3e-3 decayed linearly
    assert "train.csv line" in message and "step-0000005" in message
    assert [p.name for p in RunDir(cfg["output_dir"]).list_checkpoints()] == ["step-0000005"]
    monkeypatch.undo()
    assert gradtune.train(cfg, resume=True).steps == 20


def test_nan_can_be_skipped(make_config, monkeypatch):
    monkeypatch.setattr(classification, "loss_sum", nan_at_step(3))
    run = gradtune.train(make_config(train__epochs=1, train__on_nonfinite="skip"))
    skips = [r for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "skip"]
    assert [r["step"] for r in skips] == [3] and run.steps == 20


def test_gradient_health_is_logged_per_layer(make_config):
    run = gradtune.train(make_config(train__epochs=1, train__log_every=5))
    record = next(r for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train")
    layers = record["layer_grad_norm"]
    assert {"bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "classifier"} <= set(layers)
    assert all(v > 0 for v in layers.values()) and record["grad_norm"] > 0
    assert set(record["update_ratio"]) == set(layers)
    assert all(0 < v < 1 for v in record["update_ratio"].values())


def test_exploding_and_vanishing_gradients_are_warned_once():
    said = []
    health = GradientHealth(torch.nn.Linear(2, 2), said.append)
    for step in range(30):
        health.check(step, 1.0, None)
    health.check(30, 50.0, None)
    health.check(31, 80.0, None)
    assert len(said) == 1 and "exploding" in said[0] and "max_grad_norm" in said[0]
    health.check(32, 1.0, {"layer.0": 1e-9, "layer.1": 1e-3, "classifier": 1.0})
    assert len(said) == 2 and "vanishing" in said[1]
