"""Fine-tuning strategies: each method trains exactly its parameters (the head always), reloads to
identical predictions from a small folder, head training on cached features matches uncached
training, a resumed LoRA run matches an uninterrupted one, and bad settings are named."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

import gradtune
from conftest import train_in_memory
from gradtune.config import build_config
from gradtune.errors import GradtuneError
from gradtune.inference.predictor import Predictor
from gradtune.rundir import RunDir
from gradtune.tasks import classification
from gradtune.tracking.metrics_log import read_metrics
from gradtune.training.strategies import STRATEGIES, apply_strategy, parameter_counts

TEXTS = ["the movie was great", "awful service really", "the hotel is so dull", "this book truly wonderful"]
METHODS = {  # method -> extra strategy settings
    "full": {}, "head": {}, "top_k": {"layers": 1}, "bitfit": {}, "lora": {"r": 4}, "dora": {"r": 4},
    "ia3": {}, "prompt_tuning": {"num_virtual_tokens": 4},
}


def test_every_strategy_is_in_the_matrix():
    # prefix_tuning cannot reach a BERT classifier's attention (its own test below): the others all can
    assert set(METHODS) | {"prefix_tuning"} == set(STRATEGIES), "add the new strategy to METHODS"


def trained_names(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_reloads_to_identical_predictions_from_a_small_folder(method, make_config, tiny_bert):
    cfg = make_config(strategy={"method": method, **METHODS[method]}, train__max_steps=4,
                      data__validation=None)  # no validation: model/ holds the final weights
    model, run_dir = train_in_memory(cfg)
    # a frozen weight is exactly the pretrained one: it got no update and no weight decay
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    embeddings = load_file(tiny_bert / "model.safetensors")["embeddings.word_embeddings.weight"]
    assert torch.equal(base.bert.embeddings.word_embeddings.weight, embeddings) == (method != "full")
    reloaded = Predictor(run_dir)
    after_training = Predictor(run_dir)
    after_training.model = model
    assert torch.equal(reloaded.logits(TEXTS), after_training.logits(TEXTS))

    folder = run_dir / "model"
    meta = json.loads((folder / "gradtune.json").read_text())
    assert meta["strategy"]["method"] == method
    counts = meta["parameters"]
    assert 0 < counts["trainable"] <= counts["total"]
    assert counts["percent"] == pytest.approx(100 * counts["trainable"] / counts["total"], abs=1e-3)
    base_bytes = (tiny_bert / "model.safetensors").stat().st_size
    if method in ("lora", "dora", "ia3", "prompt_tuning"):
        assert not (folder / "model.safetensors").exists()
        assert (folder / "adapter_model.safetensors").stat().st_size < base_bytes / 3
        assert meta["base_model_path"] == str(tiny_bert.resolve())
    else:
        assert (folder / "model.safetensors").exists()


@pytest.mark.parametrize("method, trains", [
    ("head", lambda n: n.startswith("classifier.")),
    ("bitfit", lambda n: n.startswith("classifier.") or n.endswith("bias")),
    ("top_k", lambda n: n.startswith(("bert.encoder.layer.1.", "bert.pooler.", "classifier."))),
])
def test_freezing_methods_train_only_their_parameters(method, trains, tiny_bert):
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    s = build_config({"strategy": {"method": method, **METHODS[method]}}).strategy
    model = apply_strategy(base, s)
    names = [n for n, _ in model.named_parameters()]
    assert trained_names(model) == {n for n in names if trains(n)}
    assert parameter_counts(model)["trainable"] == sum(p.numel() for n, p in model.named_parameters() if trains(n))


def test_head_strategy_keeps_the_frozen_body_in_eval_mode(tiny_bert):
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    model = apply_strategy(base, build_config({"strategy": {"method": "head"}}).strategy)
    model.train()
    assert model.classifier.training and not model.bert.training and not model.dropout.training


def test_cached_head_features_train_exactly_like_the_frozen_model(make_config, wide_init_bert, tmp_path):
    runs = {}
    for cache in (True, False):
        cfg = make_config(model__name=str(wide_init_bert), strategy={"method": "head", "cache_features": cache},
                          train__epochs=2, train__lr=0.05, output_dir=str(tmp_path / f"cache-{cache}"))
        runs[cache] = gradtune.train(cfg)
    evals = {c: [r for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
             for c, run in runs.items()}
    assert [r["step"] for r in evals[True]] == [r["step"] for r in evals[False]] == [20, 40]
    for cached, plain in zip(evals[True], evals[False]):
        assert cached["loss"] == pytest.approx(plain["loss"], abs=1e-5)
        assert cached["accuracy"] == plain["accuracy"]
    assert evals[True][-1]["loss"] < evals[True][0]["loss"]  # the head did learn
    setup = read_metrics(runs[True].run_dir / "metrics.jsonl")[0]  # what trains is logged before step 1
    assert setup["kind"] == "setup" and setup["strategy"] == "head"
    assert 0 < setup["trainable"] < setup["total"] and setup["percent"] < 5
    cached_w = load_file(runs[True].run_dir / "model" / "model.safetensors")
    plain_w = load_file(runs[False].run_dir / "model" / "model.safetensors")
    for name in plain_w:
        torch.testing.assert_close(cached_w[name], plain_w[name], atol=1e-5, rtol=0)
    # the cached run's checkpoints hold only the head: the frozen body is not saved every epoch
    assert set(load_file(RunDir(runs[True].run_dir).list_checkpoints()[-1] / "model.safetensors")) == {
        "head.weight", "head.bias"}


def test_resumed_lora_run_matches_the_uninterrupted_one(make_config, tmp_path, monkeypatch):
    options = dict(strategy={"method": "lora", "r": 4}, train__max_steps=10, train__save_every=4,
                   data__validation=None)
    full = gradtune.train(make_config(output_dir=str(tmp_path / "full"), **options))
    real_loss, calls = classification.loss_sum, {"n": 0}

    def crashing_loss(logits, labels, **kw):
        calls["n"] += 1
        if calls["n"] == 7:  # steps 5-7 are lost; the resume starts from the step-4 checkpoint
            raise RuntimeError("simulated crash")
        return real_loss(logits, labels, **kw)

    cfg = make_config(output_dir=str(tmp_path / "resumed"), **options)
    monkeypatch.setattr(classification, "loss_sum", crashing_loss)
    with pytest.raises(RuntimeError, match="simulated crash"):
        gradtune.train(cfg)
    monkeypatch.setattr(classification, "loss_sum", real_loss)
    resumed = gradtune.train(cfg, resume=True)
    assert resumed.steps == full.steps == 10
    a = load_file(full.run_dir / "model" / "adapter_model.safetensors")
    b = load_file(resumed.run_dir / "model" / "adapter_model.safetensors")
    assert set(a) == set(b) and any("classifier" in k for k in a) and any("lora_A" in k for k in a)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6)


def test_lora_defaults_per_architecture_and_the_head_always_trains(tiny_bert):
    s = build_config({"strategy": {"method": "lora"}}).strategy
    bert = apply_strategy(AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2), s)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in trained_names(bert) if ".lora_A." in n}
    assert adapted == {"query", "key", "value"}
    assert any(".classifier.modules_to_save." in n for n in trained_names(bert))

    config = LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, num_labels=3, pad_token_id=0)
    llama = apply_strategy(LlamaForSequenceClassification(config), s)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in trained_names(llama) if ".lora_A." in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert any(".score.modules_to_save." in n for n in trained_names(llama))


def test_unknown_target_module_lists_the_real_layer_names(make_config):
    with pytest.raises(GradtuneError, match=r"no Linear/Conv layer named 'q_proj'.*dense, key, query, value"):
        gradtune.train(make_config(strategy={"method": "lora", "target_modules": ["query", "q_proj"]}))


@pytest.mark.parametrize("strategy, message", [
    ({"method": "head", "r": 4}, "strategy.r is for lora / dora"),
    ({"method": "lora", "layers": 2}, "strategy.layers is for top_k"),
    ({"method": "top_k"}, "needs strategy.layers"),
    ({"method": "prompt", "r": 4}, r"strategy.method: .*\(did you mean 'prompt_tuning'\?\) \(got 'prompt'\)"),
])
def test_settings_of_another_method_are_config_errors(strategy, message):
    with pytest.raises(GradtuneError, match=message):
        build_config({"strategy": strategy})


def test_unusable_methods_say_why(make_config):
    with pytest.raises(GradtuneError, match="strategy.layers=5.*has 2 blocks"):
        gradtune.train(make_config(strategy={"method": "top_k", "layers": 5}))
    with pytest.raises(GradtuneError, match="prefix_tuning.*key/value cache.*use prompt_tuning"):
        gradtune.train(make_config(strategy={"method": "prefix_tuning"}))
