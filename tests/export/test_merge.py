"""`gradtune export`: a merged LoRA / DoRA / IA3 model gives the adapter model's outputs from a
standalone folder; prompt tuning and non-adapter runs are refused with the reason; a from-scratch
base is saved with its adapter so the run reloads and merges too."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import gradtune
from conftest import linear_rows, tabular_config, train_in_memory, write_csv
from gradtune.commands import app
from gradtune.errors import GradtuneError
from gradtune.export import export
from gradtune.export.hf import export_merged

TEXTS = ["the movie was great", "awful service really", "the hotel is so dull", "this book truly wonderful"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert, sentiment_files):
    """One short run per method (lr high enough that the adapters move far from their init)."""
    out = {}
    for method in ("lora", "dora", "ia3", "prompt_tuning", "bitfit"):
        cfg = {"model": {"name": str(tiny_bert)},
               "data": {"train": str(sentiment_files["train"]), "max_length": 32},
               "strategy": {"method": method},
               "train": {"max_steps": 6, "batch_size": 8, "lr": 0.05, "warmup_ratio": 0.0, "progress": False,
                         "seed": 0},
               "output_dir": str(tmp_path_factory.mktemp("runs") / method)}
        out[method] = gradtune.train(cfg).run_dir
    return out


@pytest.mark.parametrize("method", ["lora", "dora", "ia3"])
def test_merged_model_gives_the_adapter_models_outputs(method, runs, tmp_path):
    folder = export_merged(runs[method], tmp_path / "merged")
    files = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "gradtune.json", "label_map.json", "tokenizer.json"} <= files
    assert "adapter_config.json" not in files
    adapter, merged = gradtune.load(runs[method]), gradtune.load(folder)
    assert not hasattr(merged.model, "peft_config")  # a plain transformers model
    a, b = adapter.logits(TEXTS), merged.logits(TEXTS)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    assert a.std() > 1e-3  # the outputs differ between texts: the comparison means something
    assert json.loads((folder / "gradtune.json").read_text())["strategy"] == {
        **json.loads((runs[method] / "model" / "gradtune.json").read_text())["strategy"], "merged": True}


def test_merging_refuses_what_is_not_an_adapter_of_weights(runs, tmp_path):
    with pytest.raises(GradtuneError, match="prompt_tuning run cannot be merged: its virtual tokens"):
        export_merged(runs["prompt_tuning"], tmp_path / "a")
    with pytest.raises(GradtuneError, match="bitfit run has nothing to merge.*already standalone"):
        export_merged(runs["bitfit"], tmp_path / "b")
    copied = export(runs["bitfit"], tmp_path / "c").folder  # without --merge: the model folder as-is
    assert torch.equal(gradtune.load(copied).logits(TEXTS), gradtune.load(runs["bitfit"]).logits(TEXTS))
    with pytest.raises(GradtuneError, match="already exists and is not empty"):
        export(runs["bitfit"], tmp_path / "c")


def test_export_command(runs, tmp_path):
    result = CliRunner().invoke(app, ["export", str(runs["lora"]), "--output", str(tmp_path / "m"), "--merge"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "model.safetensors").is_file()
    result = CliRunner().invoke(app, ["export", str(runs["lora"]), "--output", str(tmp_path / "x"), "--format", "x"])
    assert result.exit_code == 2 and "--format 'x'" in result.output


def test_lora_on_a_scratch_model_saves_its_base_and_reloads(tmp_path):
    train = write_csv(tmp_path / "train.csv", linear_rows(64, 0))
    cfg = tabular_config(train, tmp_path / "run", model={"hidden_sizes": [8]}, train={"max_steps": 5})
    cfg["strategy"] = {"method": "lora", "r": 2}
    model, run_dir = train_in_memory(cfg)
    folder = run_dir / "model"
    assert (folder / "adapter_model.safetensors").is_file() and (folder / "base" / "model.safetensors").is_file()
    rows = [[150.0, 0.5], [120.0, -0.3]]
    meta = json.loads((folder / "gradtune.json").read_text())
    assert meta["base_model_path"] is None and meta["parameters"]["trainable"] < meta["parameters"]["total"]
    adapter = gradtune.load(run_dir)
    after_training = gradtune.load(run_dir)
    after_training.model = model
    assert torch.equal(adapter.logits(rows), after_training.logits(rows))
    merged = gradtune.load(export_merged(run_dir, tmp_path / "merged"))
    torch.testing.assert_close(merged.logits(rows), adapter.logits(rows), atol=1e-5, rtol=1e-6)
