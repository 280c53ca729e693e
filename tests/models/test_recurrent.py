"""model.name: rnn | lstm | gru: recurrent text classifiers trained from scratch, with a WordPiece
tokenizer trained on the training split. They learn, ignore padding exactly, round-trip, and reject
keys that are not theirs."""

from __future__ import annotations

import json

import pytest
import torch

import gradtune
from gradtune.config import build_config
from gradtune.errors import GradtuneError
from gradtune.models import recurrent, tokenizers
from gradtune.tasks import get_task
from gradtune.tracking.metrics_log import read_metrics


def recurrent_config(make_config, cell: str, **model) -> dict:
    cfg = make_config(train__epochs=4, train__optimizer="adam", train__lr=0.02, train__log_every=1)
    cfg["model"] = {"name": cell, "embedding_size": 16, "hidden_size": 16, "vocab_size": 200, **model}
    return cfg

CELLS = ("rnn", "lstm", "gru")


@pytest.mark.parametrize("cell", CELLS)
def test_each_cell_learns_the_sentiment_data(make_config, cell):
    run = gradtune.train(recurrent_config(make_config, cell))
    losses = [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    if cell == "lstm":
        assert run.metrics["accuracy"] >= 0.9


def test_round_trip_and_the_trained_tokenizer_is_saved_and_reused(make_config, sentiment_files):
    cfg = recurrent_config(make_config, "gru", bidirectional=True, pooling="mean", num_layers=2)
    cfg["model"]["dropout"] = 0.1
    run = gradtune.train(cfg)
    folder = run.run_dir / "model"
    assert (folder / "tokenizer.json").is_file()
    meta = json.loads((folder / "gradtune.json").read_text())
    assert meta["base_model"] == "gru" and meta["tokenizer"] == "train"
    predictor = gradtune.load(run.run_dir)
    vocab = predictor.tokenizer.get_vocab()
    assert [vocab[t] for t in tokenizers.SPECIALS] == [0, 1, 2, 3] and len(vocab) <= 200
    # trained on the training split only: the same tokenizer as one fitted on its texts alone
    texts = [line.rsplit(",", 1)[0] for line in sentiment_files["train"].read_text().splitlines()[1:]]
    assert tokenizers.train_wordpiece(texts, 200, 32).get_vocab() == vocab
    assert isinstance(predictor.model, recurrent.RecurrentForSequenceClassification)
    assert predictor.model.embeddings.num_embeddings == len(vocab)
    texts = ["the movie was great", "the food is so very really awful", "superb"]
    again = gradtune.load(folder)
    assert predictor.predict(texts) == again.predict(texts)
    assert torch.equal(predictor.logits(texts), again.logits(texts))
    assert [p["label"] for p in predictor.predict(texts)] == ["positive", "negative", "positive"]
    assert gradtune.evaluate(run.run_dir, sentiment_files["validation"])["accuracy"] >= 0.8


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("cell", CELLS)
def test_padding_never_changes_the_logits(cell, pooling, bidirectional):
    texts = ["the movie was great", "the hotel is so very really quite bad and dull overall", "fun"]
    tokenizer = tokenizers.train_wordpiece(texts * 3, 60, 32)
    cfg = build_config({"model": {"name": cell, "embedding_size": 16, "hidden_size": 16, "num_layers": 2,
                                  "bidirectional": bidirectional, "pooling": pooling}})
    torch.manual_seed(0)
    model = recurrent.build(cfg, tokenizer, get_task("classification"), {"labels": ["a", "b", "c"]}).eval()
    with torch.no_grad():
        batch = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        for i, text in enumerate(texts):
            alone = model(**tokenizer([text], return_tensors="pt")).logits
            torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-6, rtol=0)
        left = tokenizer(texts, padding=True, return_tensors="pt", padding_side="left")
        torch.testing.assert_close(model(**left).logits, batch, atol=1e-6, rtol=0)


def test_regression_head_and_a_reused_pretrained_tokenizer(make_config, tiny_bert, tmp_path):
    rows = [{"text": t, "score": float(len(t.split()))} for t in ["a b", "a b c", "good", "bad bad bad"] * 5]
    from conftest import write_csv

    train = write_csv(tmp_path / "r.csv", rows)
    cfg = recurrent_config(make_config, "rnn", tokenizer=str(tiny_bert), pooling="max")
    del cfg["model"]["vocab_size"]
    cfg.update(task="regression")
    cfg["data"] = {"train": str(train), "label_column": "score", "max_length": 16}
    run = gradtune.train(cfg)
    predictor = run.predictor()
    assert predictor.model.config.num_labels == 1
    assert predictor.tokenizer.get_vocab() == gradtune.models.pretrained.load_tokenizer(str(tiny_bert)).get_vocab()
    assert isinstance(predictor.predict(["a b c"])[0]["value"], float)


@pytest.mark.parametrize("model, message", [
    ({"name": "lstm", "hidden_sizes": [8]}, "model.hidden_sizes: for model.name mlp"),
    ({"name": "lstm", "pooling": "avg"}, "model.pooling"),
    ({"name": "minilm", "hidden_size": 8}, "model.hidden_size: for model.name rnn, lstm, gru, transformer, gpt"),
    ({"name": "minilm", "tokenizer": "train"}, "model.tokenizer"),
    ({"name": "gru", "attention_dropout": 0.1}, "model.attention_dropout: for a pretrained model or"),
    ({"name": "gru", "tokenizer": "minilm", "vocab_size": 100}, "model.vocab_size is for model.tokenizer 'train'"),
])
def test_keys_of_other_models_are_config_errors(model, message):
    with pytest.raises(GradtuneError, match=message):
        build_config({"model": model})
