"""ONNX export and the onnxruntime backend: the exported graph gives PyTorch's logits (atol 1e-4) on
batches of other sizes and lengths than the traced one, token_type_ids reach it, the folder predicts
on its own, and `--backend onnx` predicts what the torch backend does."""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import gradtune
from conftest import POSITIVE, sentiment_rows, write_csv
from gradtune.commands import app
from gradtune.errors import GradtuneError
from gradtune.export.onnx import PaddedRecurrent, export_onnx
from gradtune.inference.onnx_runtime import OnnxModel
from gradtune.models import recurrent

runner = CliRunner()
TEXTS = ["good", "the movie was really quite very good and fun overall", "the food", "awful", "the hotel was dull"]
PAIRS = ["the app", "bad", "the hotel is so very lovely and it felt great", "the show", "boring"]


def fit(cfg: dict, output_dir: Path, **data) -> Path:
    cfg = {**cfg, "output_dir": str(output_dir)}
    cfg["data"] = {**cfg["data"], **data}
    cfg["train"] = {**cfg["train"], "epochs": 1}
    return gradtune.train(cfg).run_dir


@pytest.fixture(scope="module")
def pair_run(wide_init_bert, tmp_path_factory) -> Path:
    """A BERT classifier of text pairs, exported with the CLI to RUN/onnx."""
    folder = tmp_path_factory.mktemp("pairs")
    rows = [{"text": r["text"], "other": r["text"][::-1], "label": r["label"]} for r in sentiment_rows(48)]
    cfg = {"task": "classification", "model": {"name": str(wide_init_bert)},
           "data": {"train": str(write_csv(folder / "train.csv", rows)), "text_pair_column": "other",
                    "max_length": 32},
           "train": {"batch_size": 8, "lr": 3e-3, "progress": False, "seed": 0}}
    run = fit(cfg, folder / "run")
    result = runner.invoke(app, ["export", str(run), "--format", "onnx", "--output", str(run / "onnx")])
    assert result.exit_code == 0, result.output
    assert "onnxruntime matches PyTorch" in " ".join(result.output.split())  # rich wraps long lines
    return run


def test_export_folder_is_self_contained_with_dynamic_axes(pair_run, tmp_path):
    folder = pair_run / "onnx"
    assert {"model.onnx", "gradtune.json", "label_map.json", "config.json", "tokenizer.json"} <= \
        {p.name for p in folder.iterdir()}
    session = OnnxModel(folder / "model.onnx")
    assert {i.name: i.shape for i in session.session.get_inputs()} == {
        n: ["batch", "sequence"] for n in ("input_ids", "attention_mask", "token_type_ids")}
    # the folder alone predicts: the run's torch weights are not needed
    moved = shutil.copytree(folder, tmp_path / "elsewhere")
    assert gradtune.load(moved, backend="onnx").predict(TEXTS, PAIRS) == \
        gradtune.load(pair_run, backend="onnx").predict(TEXTS, PAIRS)


def test_logits_match_torch_on_other_batch_sizes_and_lengths(pair_run):
    torch_model, onnx_model = gradtune.load(pair_run), gradtune.load(pair_run, backend="onnx")
    for texts, pairs in ((TEXTS, PAIRS), (TEXTS[1:2], PAIRS[1:2]), (TEXTS * 3, PAIRS[::-1] * 3)):
        expected, got = torch_model.logits(texts, pairs), onnx_model.logits(texts, pairs)
        assert got.shape == expected.shape == (len(texts), 2)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert torch_model.logits(TEXTS, PAIRS).std(dim=0).max() > 1e-3  # the texts give different logits


def test_token_type_ids_reach_the_graph(pair_run):
    predictor = gradtune.load(pair_run)
    session = OnnxModel(pair_run / "onnx" / "model.onnx")
    enc = predictor.tokenizer(TEXTS, PAIRS, padding=True, return_tensors="pt")
    assert enc["token_type_ids"].any()  # the second segment is marked 1
    zeroed = {**enc, "token_type_ids": torch.zeros_like(enc["token_type_ids"])}
    for inputs in (enc, zeroed):
        with torch.no_grad():
            expected = predictor.model(**inputs).logits.numpy()
        np.testing.assert_allclose(session.logits({k: v.numpy() for k, v in inputs.items()}), expected, atol=1e-4)
    # and they matter: segment B read as segment A gives other logits, in the graph as in torch
    changed = session.logits({k: v.numpy() for k, v in zeroed.items()})
    assert np.abs(changed - session.logits({k: v.numpy() for k, v in enc.items()})).max() > 1e-3


def test_predictions_and_cli_match_the_torch_backend(pair_run, tmp_path):
    expected = gradtune.load(pair_run).predict(TEXTS, PAIRS)
    got = gradtune.load(pair_run, backend="onnx").predict(TEXTS, PAIRS)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    for a, b in zip(got, expected):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
    table = tmp_path / "in.csv"
    write_csv(table, [{"text": t, "other": p} for t, p in zip(TEXTS, PAIRS)])
    for backend in ("torch", "onnx"):
        result = runner.invoke(app, ["predict", str(pair_run), "--backend", backend, "--input", str(table),
                                     "--output", str(tmp_path / f"{backend}.jsonl")])
        assert result.exit_code == 0, result.output
    rows = {b: [json.loads(line) for line in (tmp_path / f"{b}.jsonl").read_text().splitlines()]
            for b in ("torch", "onnx")}
    assert [r["label"] for r in rows["onnx"]] == [r["label"] for r in rows["torch"]] == [r["label"] for r in expected]


def test_a_run_without_export_says_how_to_make_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "gradtune.json").write_text("{}")
    with pytest.raises(GradtuneError, match=f"gradtune export {run} --format onnx --output {run}/onnx"):
        gradtune.load(run, backend="onnx")
    result = runner.invoke(app, ["predict", str(run), "--backend", "onnx", "--text", "good"])
    assert result.exit_code == 2 and "--format onnx" in result.output
    with pytest.raises(GradtuneError, match="backend='tensorrt': use 'torch' or 'onnx'"):
        gradtune.load(run, backend="tensorrt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(GradtuneError, match=r"pip install 'gradtune\[onnx\]'"):
        OnnxModel(tmp_path / "model.onnx")


def word_score_rows(n: int) -> list[dict]:
    """A score that counts the positive words, plus noise."""
    rng = random.Random(0)
    return [{"text": r["text"], "score": sum(w in POSITIVE for w in r["text"].split()) + rng.random()}
            for r in sentiment_rows(n)]


@pytest.mark.parametrize("task", ["regression", "multilabel"])
def test_regression_and_multilabel_export(task, tiny_bert, tmp_path):
    rows = word_score_rows(32)
    if task == "multilabel":
        rows = [{"text": r["text"], "score": "|".join(w for w in ("movie", "food") if w in r["text"])} for r in rows]
    cfg = {"task": task, "model": {"name": str(tiny_bert)},
           "data": {"train": str(write_csv(tmp_path / "train.csv", rows)), "label_column": "score",
                    "max_length": 32, **({"label_delimiter": "|"} if task == "multilabel" else {})},
           "train": {"batch_size": 8, "lr": 3e-3, "progress": False, "seed": 0}}
    run = fit(cfg, tmp_path / "run")
    assert export_onnx(run, run / "onnx").max_abs_diff < 1e-4
    expected, got = gradtune.load(run).predict(TEXTS), gradtune.load(run, backend="onnx").predict(TEXTS)
    for a, b in zip(got, expected):
        if task == "regression":
            assert a["value"] == pytest.approx(b["value"], abs=1e-4)
        else:
            assert a["labels"] == b["labels"] and a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)


@pytest.mark.parametrize("pooling", ["first", "mean", "max"])
def test_from_scratch_transformer_exports(pooling, sentiment_files, tmp_path):
    cfg = {"task": "classification",
           "model": {"name": "transformer", "embedding_size": 16, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                     "vocab_size": 200, "pooling": pooling},
           "data": {"train": str(sentiment_files["train"]), "max_length": 32},
           "train": {"batch_size": 8, "lr": 3e-3, "progress": False, "seed": 0}}
    run = fit(cfg, tmp_path / "run")
    assert export_onnx(run, run / "onnx").max_abs_diff < 1e-4
    got, expected = gradtune.load(run, backend="onnx").predict(TEXTS), gradtune.load(run).predict(TEXTS)
    for a, b in zip(got, expected):
        assert a["label"] == b["label"] and a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)


def test_an_adapter_run_exports_with_its_adapter_applied(wide_init_bert, sentiment_files, tmp_path):
    cfg = {"task": "classification", "model": {"name": str(wide_init_bert)},
           "data": {"train": str(sentiment_files["train"]), "max_length": 32}, "strategy": {"method": "lora"},
           "train": {"batch_size": 8, "lr": 3e-2, "progress": False, "seed": 0}}
    run = fit(cfg, tmp_path / "run")
    assert export_onnx(run, run / "onnx").max_abs_diff < 1e-4
    adapted = gradtune.load(run)
    with adapted.model.disable_adapter():  # the base alone predicts otherwise: the export must hold the adapter
        assert not torch.allclose(adapted.logits(TEXTS), gradtune.load(run).logits(TEXTS))
    got = gradtune.load(run, backend="onnx").predict(TEXTS)
    for a, b in zip(got, adapted.predict(TEXTS)):
        assert a["label"] == b["label"] and a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("cell", ("rnn", "lstm", "gru"))
def test_padded_recurrent_forward_equals_the_packed_one(cell, pooling, bidirectional):
    torch.manual_seed(0)
    config = recurrent.RecurrentConfig(cell=cell, vocab_size=30, embedding_size=6, hidden_size=5, num_layers=2,
                                     bidirectional=bidirectional, pooling=pooling, num_labels=3, pad_token_id=0)
    model = recurrent.RecurrentForSequenceClassification(config).eval()
    ids = torch.randint(4, 30, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # right-padded
    mask[2, :6] = 0  # left-padded
    mask[3, 1:] = 0  # one token
    ids = ids.masked_fill(mask == 0, 0)
    with torch.no_grad():
        torch.testing.assert_close(PaddedRecurrent(model)(ids, mask), model(ids, mask).logits, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell,pooling", [("lstm", "last"), ("gru", "max"), ("rnn", "mean")])
def test_recurrent_models_export(cell, pooling, sentiment_files, tmp_path):
    cfg = {"task": "classification",
           "model": {"name": cell, "embedding_size": 8, "hidden_size": 8, "vocab_size": 120, "num_layers": 2,
                     "bidirectional": True, "pooling": pooling},
           "data": {"train": str(sentiment_files["train"]), "max_length": 32},
           "train": {"batch_size": 16, "lr": 0.02, "optimizer": "adam", "progress": False, "seed": 0}}
    run = fit(cfg, tmp_path / "run")
    export_onnx(run, run / "onnx")
    texts = TEXTS * 2 + ["superb"]
    torch.testing.assert_close(gradtune.load(run, backend="onnx").logits(texts), gradtune.load(run).logits(texts),
                               atol=1e-4, rtol=0)


def test_tabular_mlp_export(tmp_path):
    rng = random.Random(0)
    rows = [{"x1": rng.uniform(0, 5), "x2": rng.uniform(-1, 1)} for _ in range(40)]
    rows = [{**r, "y": 2 * r["x1"] - r["x2"]} for r in rows]
    cfg = {"task": "tabular", "model": {"name": "mlp", "hidden_sizes": [8]},
           "data": {"train": str(write_csv(tmp_path / "t.csv", rows)), "feature_columns": ["x1", "x2"],
                    "label_column": "y"},
           "train": {"batch_size": 8, "optimizer": "adam", "lr": 0.05, "progress": False, "seed": 0}}
    run = fit(cfg, tmp_path / "run")
    result = export_onnx(run, run / "onnx")
    assert result.inputs == ["features"]
    features = [[r["x1"], r["x2"]] for r in rows[:7]]
    got, expected = gradtune.load(run, backend="onnx").predict(features), gradtune.load(run).predict(features)
    assert [r["value"] for r in got] == pytest.approx([r["value"] for r in expected], abs=1e-4)
