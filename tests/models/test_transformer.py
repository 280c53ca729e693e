"""model.name: transformer: a from-scratch transformer encoder for the text tasks. It learns the
sentiment data, ignores padding exactly (either side, every pooling), round-trips with its trained
tokenizer, takes a regression head, and rejects keys that are not its own."""

from __future__ import annotations

import json

import pytest
import torch

import gradtune
from conftest import write_csv
from gradtune.config import build_config
from gradtune.errors import GradtuneError
from gradtune.models import gpt, tokenizers, transformer
from gradtune.tasks import get_task
from gradtune.tracking.metrics_log import read_metrics


def transformer_config(make_config, **model) -> dict:
    cfg = make_config(train__epochs=4, train__optimizer="adamw", train__lr=3e-3, train__log_every=1)
    cfg["model"] = {"name": "transformer", "embedding_size": 32, "hidden_size": 64, "num_layers": 2,
                    "num_heads": 2, "vocab_size": 200, **model}
    return cfg


def test_learns_the_sentiment_data_and_round_trips(make_config, sentiment_files):
    run = gradtune.train(transformer_config(make_config))
    assert run.metrics["accuracy"] >= 0.9  # chance is 0.5
    losses = [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    folder = run.run_dir / "model"
    meta = json.loads((folder / "gradtune.json").read_text())
    assert meta["base_model"] == "transformer" and meta["tokenizer"] == "train"
    predictor = gradtune.load(run.run_dir)
    assert isinstance(predictor.model, transformer.TransformerForSequenceClassification)
    assert predictor.model.config.pooling == "first" and predictor.model.config.max_positions == 32
    texts = ["the movie was great", "the food is so very really awful", "superb"]
    again = gradtune.load(folder)
    assert torch.equal(predictor.logits(texts), again.logits(texts))
    assert [p["label"] for p in predictor.predict(texts)] == ["positive", "negative", "positive"]
    assert gradtune.evaluate(run.run_dir, sentiment_files["validation"])["accuracy"] >= 0.9


@pytest.mark.parametrize("pooling", ["first", "mean", "max"])
def test_padding_never_changes_the_logits(pooling):
    texts = ["the movie was great", "the hotel is so very really quite bad and dull overall", "fun"]
    tokenizer = tokenizers.train_wordpiece(texts * 3, 60, 32)
    cfg = build_config({"model": {"name": "transformer", "embedding_size": 16, "hidden_size": 32,
                                  "num_layers": 2, "num_heads": 2, "pooling": pooling}, "data": {"max_length": 32}})
    torch.manual_seed(0)
    model = transformer.build(cfg, tokenizer, get_task("classification"), {"labels": ["a", "b", "c"]}).eval()
    with torch.no_grad():
        batch = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        for i, text in enumerate(texts):
            alone = model(**tokenizer([text], return_tensors="pt")).logits
            torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-5, rtol=0)
        left = tokenizer(texts, padding=True, return_tensors="pt", padding_side="left")
        torch.testing.assert_close(model(**left).logits, batch, atol=1e-5, rtol=0)
        # and the padding really is masked: other ids under the padding change nothing
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        noisy = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, 7)
        torch.testing.assert_close(model(input_ids=noisy, attention_mask=enc["attention_mask"]).logits, batch)


def test_causal_attention_never_looks_ahead():
    tokenizer = tokenizers.train_bpe(["one two three four five six"] * 5, 270, 32)
    cfg = build_config({"task": "causal_lm", "model": {"name": "gpt", "embedding_size": 16, "hidden_size": 32,
                                                       "num_heads": 2}, "data": {"max_length": 32}})
    torch.manual_seed(0)
    model = gpt.build(cfg, tokenizer, get_task("causal_lm"), {}).eval()
    ids = tokenizer("one two three four five six", return_tensors="pt").input_ids
    changed = ids.clone()
    changed[0, -1] = 5  # another last token
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    torch.testing.assert_close(a[:, :-1], b[:, :-1], atol=0, rtol=0)  # earlier positions never saw it
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_regression_head(make_config, tmp_path):
    rows = [{"text": t, "score": float(len(t.split()))} for t in ["good", "good good", "bad bad bad", "a b c d"] * 8]
    cfg = transformer_config(make_config, pooling="mean")
    cfg["task"] = "regression"
    cfg["data"].update(train=str(write_csv(tmp_path / "r.csv", rows)), label_column="score")
    del cfg["data"]["validation"]
    cfg["train"]["epochs"] = 1
    run = gradtune.train(cfg)
    model = gradtune.load(run.run_dir).model
    assert model.config.problem_type == "regression" and model.head.out_features == 1


@pytest.mark.parametrize(("model", "key"), [
    ({"name": "transformer", "bidirectional": True}, "model.bidirectional"),
    ({"name": "transformer", "pooling": "last"}, "model.pooling"),
    ({"name": "lstm", "pooling": "first"}, "model.pooling"),
    ({"name": "lstm", "num_heads": 2}, "model.num_heads"),
    ({"name": "transformer", "embedding_size": 30, "num_heads": 4}, "model.num_heads"),
    ({"name": "transformer", "max_positions": 16}, "model.max_positions"),
    ({"name": "minilm", "max_positions": 64}, "model.max_positions"),
    ({"name": "gpt"}, "model.name 'gpt'"),
])
def test_keys_of_other_models_are_rejected(model, key):
    with pytest.raises(GradtuneError, match=key.replace(".", r"\.")):
        build_config({"model": model, "data": {"max_length": 32}})
