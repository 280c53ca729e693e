"""The training loop: it learns, it is reproducible, it resumes exactly, it keeps the best model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gradtune
from gradtune.errors import GradtuneError
from gradtune.rundir import RunDir
from gradtune.tasks import classification
from gradtune.tracking.metrics_log import read_metrics


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(RunDir(run_dir).list_checkpoints()[-1] / "model.safetensors")


def test_loss_falls_and_accuracy_is_reached(make_config):
    run = gradtune.train(make_config())
    losses = [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert run.best_metric >= 0.9
    assert run.metrics["accuracy"] >= 0.9 and run.metrics["f1_macro"] >= 0.9
    assert sum(map(sum, run.metrics["confusion_matrix"])) == 40


def test_run_directory_holds_what_later_commands_read(make_config):
    run = gradtune.train(make_config(train__epochs=2, train__keep_checkpoints=1))
    d = run.run_dir
    saved = yaml_config = (d / "config.yaml").read_text()
    assert "lr: 0.003" in saved and "keep_checkpoints: 1" in yaml_config
    assert [p.name for p in (d / "checkpoints").iterdir()] == ["step-0000040"]  # only the last K=1 kept
    ckpt = RunDir(d).list_checkpoints()[-1]
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.safetensors", "progress.json", "trainer_state.pt"]
    model_files = {p.name for p in (d / "model").iterdir()}
    assert {"model.safetensors", "config.json", "gradtune.json", "label_map.json"} <= model_files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in model_files)
    assert json.loads((d / "model" / "label_map.json").read_text()) == {"0": "negative", "1": "positive"}
    records = read_metrics(d / "metrics.jsonl")
    assert {r["kind"] for r in records} == {"setup", "train", "eval", "end"}
    assert records[-1]["kind"] == "end" and records[-1]["status"] == "finished"  # how training ended, last
    assert [r["step"] for r in records if r["kind"] == "eval"] == [20, 40]


def test_same_seed_gives_identical_runs(make_config, tmp_path):
    a = gradtune.train(make_config(train__epochs=1, output_dir=str(tmp_path / "a")))
    b = gradtune.train(make_config(train__epochs=1, output_dir=str(tmp_path / "b")))
    wa, wb = final_weights(a.run_dir), final_weights(b.run_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = gradtune.train(make_config(train__epochs=1, train__seed=1, output_dir=str(tmp_path / "c")))
    assert not all(torch.equal(wa[k], final_weights(c.run_dir)[k]) for k in wa)


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(make_config, tmp_path, monkeypatch):
    # 2 epochs of 20 steps, checkpoint every 6: the crash at step 15 loses steps 13-15, and the
    # resume starts mid-epoch (batch 12 of 20) and crosses the epoch boundary.
    options = dict(train__epochs=2, train__save_every=6, train__keep_checkpoints=5)
    full = gradtune.train(make_config(output_dir=str(tmp_path / "full"), **options))

    real_loss, calls = classification.loss_sum, {"n": 0}

    def crashing_loss(logits, labels, **options):
        if torch.is_grad_enabled():  # training steps only, not evaluation
            calls["n"] += 1
            if calls["n"] == 15:
                raise RuntimeError("simulated crash")
        return real_loss(logits, labels, **options)

    cfg = make_config(output_dir=str(tmp_path / "resumed"), **options)
    monkeypatch.setattr(classification, "loss_sum", crashing_loss)
    with pytest.raises(RuntimeError, match="simulated crash"):
        gradtune.train(cfg)
    monkeypatch.setattr(classification, "loss_sum", real_loss)
    assert [p.name for p in RunDir(tmp_path / "resumed").list_checkpoints()] == ["step-0000006", "step-0000012"]

    resumed = gradtune.train(cfg, resume=True)
    assert resumed.steps == full.steps == 40
    w_full, w_resumed = final_weights(full.run_dir), final_weights(resumed.run_dir)
    for name in w_full:
        torch.testing.assert_close(w_resumed[name], w_full[name], rtol=1e-5, atol=1e-6)
    losses = lambda run: [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert losses(resumed) == pytest.approx(losses(full), rel=1e-5)
    assert resumed.best_metric == full.best_metric


def test_best_model_is_kept_and_early_stopping_stops(make_config):
    # eval every 2 steps with patience 2: training must stop long before its 100 steps
    run = gradtune.train(make_config(train__eval_every=2, train__early_stopping_patience=2,
                                     train__metric="loss"))
    evals = [r for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert run.steps < 100
    best = min(evals, key=lambda r: r["loss"])
    assert run.best_metric == best["loss"] and run.best_step == best["step"]
    assert all(r["loss"] >= best["loss"] for r in evals[-2:])
    meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
    assert meta["step"] == best["step"]  # model/ holds the best weights, not the last
    assert gradtune.evaluate(run.run_dir, make_config()["data"]["validation"])["loss"] == pytest.approx(
        best["loss"], abs=1e-5)


def test_test_file_is_scored_with_the_best_model(make_config):
    cfg = make_config(train__epochs=1)
    cfg["data"]["test"] = cfg["data"]["validation"]
    run = gradtune.train(cfg)
    saved = json.loads((run.run_dir / "test_metrics.json").read_text())
    assert saved == run.test_metrics and saved["examples"] == 40
    assert saved["accuracy"] == pytest.approx(run.best_metric)


def test_existing_run_is_protected(make_config):
    cfg = make_config(train__epochs=1)
    gradtune.train(cfg)
    with pytest.raises(GradtuneError, match="--resume.*--overwrite"):
        gradtune.train(cfg)
    assert gradtune.train(cfg, overwrite=True).steps == 20


def test_resume_without_checkpoint_says_so(make_config):
    with pytest.raises(GradtuneError, match="no checkpoint to resume from"):
        gradtune.train(make_config(), resume=True)


def test_fresh_run_without_validation_saves_final_model(make_config):
    cfg = make_config()
    del cfg["data"]["validation"]
    run = gradtune.train(cfg)
    assert run.metrics == {} and (run.run_dir / "model" / "model.safetensors").is_file()
    # model/ holds the final weights (the last checkpoint's), and they learned the task
    final = final_weights(run.run_dir)
    saved = load_file(run.run_dir / "model" / "model.safetensors")
    assert all(torch.equal(final[k], saved[k]) for k in final)
    predictions = gradtune.load(run.run_dir).predict(["the movie was great", "the food was awful"])
    assert [p["label"] for p in predictions] == ["positive", "negative"]
    assert all(p["probabilities"][p["label"]] > 0.8 for p in predictions)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in predictions)
