"""task: causal_lm. A from-scratch gpt memorises a tiny counting corpus (perplexity far below the
vocabulary size, greedy generation continues the count), round-trips exactly, normalises its loss
per target token (accumulated micro-batches give the one-batch update), and a pretrained causal LM
folder (a tiny random Llama) trains too. Config mistakes name the key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import gradtune
from conftest import NUMBERS, build_tiny_llama, counting_rows, write_csv
from gradtune.commands import app
from gradtune.config import build_config
from gradtune.errors import GradtuneError
from gradtune.models import gpt
from gradtune.rundir import RunDir
from gradtune.tasks import get_task
from gradtune.tracking.metrics_log import read_metrics
from gradtune.training.prepare import prepare


@pytest.fixture(scope="module")
def counting_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("counting")
    return {"train": write_csv(folder / "train.csv", counting_rows(240, 1)),
            "validation": write_csv(folder / "dev.csv", counting_rows(40, 2))}


def gpt_config(files: dict[str, Path], output_dir: Path, **train) -> dict:
    return {
        "task": "causal_lm",
        "model": {"name": "gpt", "embedding_size": 32, "hidden_size": 64, "num_layers": 2, "num_heads": 2,
                  "vocab_size": 300},
        "data": {"train": str(files["train"]), "validation": str(files["validation"]), "max_length": 16},
        "train": {"epochs": 6, "batch_size": 16, "optimizer": "adamw", "lr": 1e-2, "warmup_ratio": 0.0,
                  "log_every": 5, "progress": False, "seed": 0, **train},
        "output_dir": str(output_dir),
    }


@pytest.fixture(scope="module")
def gpt_run(counting_files, tmp_path_factory):
    return gradtune.train(gpt_config(counting_files, tmp_path_factory.mktemp("gpt") / "run"))


def test_gpt_learns_the_corpus_far_below_the_vocabulary_size(gpt_run):
    vocab = len(gradtune.load(gpt_run.run_dir).tokenizer)
    assert gpt_run.metrics["perplexity"] < 2.0 < vocab / 100
    # perplexity is exp(loss per token), both streamed over the validation set
    assert gpt_run.metrics["perplexity"] == pytest.approx(math.exp(gpt_run.metrics["loss"]), rel=1e-4)
    evals = [r["perplexity"] for r in read_metrics(gpt_run.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert evals[0] > 2 * evals[-1]
    meta = json.loads((gpt_run.run_dir / "model" / "gradtune.json").read_text())
    assert meta["task"] == "causal_lm" and meta["tokenizer"] == "train" and meta["label_column"] is None


def test_greedy_generation_continues_the_count_and_survives_a_reload(gpt_run):
    predictor = gradtune.load(gpt_run.run_dir)
    assert isinstance(predictor.model, gpt.GPTForCausalLM)
    assert predictor.model.lm_head.weight is predictor.model.tokens.weight  # tied
    text = predictor.generate("four five six", max_new_tokens=8, greedy=True)
    assert text.split()[:3] == ["seven", "eight", "nine"]
    again = gradtune.load(gpt_run.run_dir / "model")
    assert again.generate("four five six", max_new_tokens=8, greedy=True) == text
    enc = predictor.tokenizer(["ten eleven twelve one", "two"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(predictor.model(**enc).logits, again.model(**enc).logits)
    # the byte-level BPE tokenizer decodes what it encodes, and starts each text with <|endoftext|>
    ids = predictor.tokenizer("Ünïcode and punctuation: ok?!").input_ids
    assert ids[0] == predictor.tokenizer.bos_token_id
    assert predictor.tokenizer.decode(ids, skip_special_tokens=True) == "Ünïcode and punctuation: ok?!"
    # sampling is reproducible with a seed
    one = predictor.generate("one", max_new_tokens=6, temperature=1.5, top_p=0.9, seed=3)
    assert predictor.generate("one", max_new_tokens=6, temperature=1.5, top_p=0.9, seed=3) == one


def test_evaluate_and_the_generate_command(gpt_run, counting_files):
    result = gradtune.evaluate(gpt_run.run_dir, counting_files["validation"])
    assert set(result) == {"perplexity", "loss", "examples"} and result["examples"] == 40
    assert result["loss"] == pytest.approx(gpt_run.metrics["loss"], abs=1e-4)
    out = CliRunner().invoke(app, ["generate", str(gpt_run.run_dir), "--prompt", "eight nine", "--greedy",
                                   "--max-new-tokens", "4"])
    assert out.exit_code == 0, out.output
    assert out.output.split()[:4] == ["eight", "nine", "ten", "eleven"]
    bad = CliRunner().invoke(app, ["generate", str(gpt_run.run_dir), "--prompt", "one", "--top-p", "0"])
    assert bad.exit_code == 2 and "top_p" in bad.output
    with pytest.raises(GradtuneError, match="use generate"):
        gradtune.load(gpt_run.run_dir).predict(["one two"])


def test_generate_on_a_classifier_is_a_clear_error(make_config):
    run = gradtune.train(make_config(train__max_steps=1))
    with pytest.raises(GradtuneError, match="does not write text"):
        gradtune.load(run.run_dir).generate("the movie")
    out = CliRunner().invoke(app, ["generate", str(run.run_dir), "--prompt", "the movie"])
    assert out.exit_code == 2 and "does not write text" in out.output and "Traceback" not in out.output


def test_loss_is_normalised_per_target_token_across_micro_batches(counting_files, tmp_path):
    # texts of very different lengths: per-example and per-token normalisation then differ
    rows = [{"text": " ".join(NUMBERS[: 2 + (i * 5) % 11])} for i in range(10)]
    files = {"train": write_csv(tmp_path / "ten.csv", rows), "validation": counting_files["validation"]}
    sgd = dict(optimizer="sgd", lr=1.0, weight_decay=0.0, max_grad_norm=None, schedule="constant", max_steps=1,
               precision="fp64")
    variants = {"one_batch": dict(batch_size=10), "micro_3": dict(batch_size=10, micro_batch_size=3),
                "accum_2x5": dict(batch_size=5, grad_accum_steps=2), "full": dict(gd_mode="batch", micro_batch_size=4)}
    weights = {}
    for name, options in variants.items():
        cfg = gpt_config(files, tmp_path / name, **sgd, **options)
        del cfg["data"]["validation"]
        run = gradtune.train(cfg)
        weights[name] = load_file(RunDir(run.run_dir).list_checkpoints()[-1] / "model.safetensors")
    reference = weights.pop("one_batch")
    for name, w in weights.items():
        for key in reference:
            assert torch.allclose(w[key], reference[key], rtol=0, atol=1e-10), (name, key)
    # and the step is exactly -grad of the mean next-token loss over every target token of the
    # batch (the model's own HF loss), not a mean of per-text means
    cfg = build_config(gpt_config(files, tmp_path / "x", **sgd, batch_size=10))
    job = prepare(cfg, tmp_path / "x")
    model = job.model.double()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    batch = next(iter(job.train_loader))
    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss.backward()
    tied = next(k for k in ("tokens.weight", "lm_head.weight") if k in reference)  # saved once
    assert torch.allclose(reference[tied], before["tokens.weight"] - model.tokens.weight.grad, rtol=0, atol=1e-10)
    head = model.blocks[0].mlp[0].weight
    assert torch.allclose(reference["blocks.0.mlp.0.weight"], before["blocks.0.mlp.0.weight"] - head.grad,
                          rtol=0, atol=1e-10)
    # every real token is a target except each text's first (<|endoftext|>, which nothing predicts)
    assert get_task("causal_lm").loss_units(batch["labels"]) == int(batch["attention_mask"].sum()) - len(rows)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A random-init Llama folder with a pretrained-style tokenizer."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), [r["text"] for r in counting_rows(100, 5)],
                            max_positions=64)


def test_a_pretrained_causal_lm_folder_trains(counting_files, tiny_llama, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    cfg = gpt_config(counting_files, tmp_path / "run", max_steps=20, lr=1e-2, log_every=1)
    cfg["model"] = {"name": str(tiny_llama)}
    run = gradtune.train(cfg)
    losses = [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert sum(losses[-3:]) < 0.6 * sum(losses[:3])
    assert run.metrics["perplexity"] < len(tokenizer) / 10
    predictor = gradtune.load(run.run_dir)
    assert type(predictor.model).__name__ == "LlamaForCausalLM"
    assert isinstance(predictor.generate("one two", max_new_tokens=3, greedy=True), str)


@pytest.mark.parametrize(("settings", "key"), [
    ({"data": {"label_column": "target"}}, "data.label_column"),
    ({"data": {"text_pair_column": "b"}}, "data.text_pair_column"),
    ({"model": {"name": "lstm"}}, "model.name 'lstm'"),
    ({"model": {"name": "transformer"}}, "model.name 'transformer'"),
    ({"task": "classification"}, "model.name 'gpt'"),
    ({"model": {"name": "gpt", "pooling": "first"}}, "model.pooling"),
    ({"model": {"name": "gpt", "num_heads": 3}}, "model.num_heads"),
    ({"train": {"metric": "accuracy"}}, "train.metric"),
])
def test_config_errors_name_the_key(settings, key):
    raw = {"task": "causal_lm", "model": {"name": "gpt"}}
    for section, values in settings.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    with pytest.raises(GradtuneError, match=key.replace(".", r"\.")):
        build_config(raw)


def test_lora_on_a_language_model_adapts_attention_keeps_the_vocabulary_and_reloads_exactly(counting_files, tmp_path):
    # a causal LM has no task head: the adapter alone trains, the tied output layer stays frozen
    cfg = gpt_config(counting_files, tmp_path / "lora", epochs=1, lr=1e-2)
    run = gradtune.train({**cfg, "strategy": {"method": "lora", "r": 4}})
    saved = run.run_dir / "model"
    assert (saved / "adapter_config.json").is_file() and not (saved / "model.safetensors").exists()
    meta = json.loads((saved / "gradtune.json").read_text())
    assert 0 < meta["parameters"]["percent"] < 50
    first = gradtune.load(run.run_dir)
    again = gradtune.load(run.run_dir)
    ids = first.tokenizer(["three four five"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(first.model(**ids).logits, again.model(**ids).logits)
    assert first.generate("one two", max_new_tokens=4, greedy=True) == again.generate("one two", max_new_tokens=4,
                                                                                        greedy=True)
    with pytest.raises(GradtuneError, match="no task head"):
        gradtune.train({**gpt_config(counting_files, tmp_path / "head"), "strategy": {"method": "head"}})


@pytest.mark.parametrize(("method", "lr"), [("prefix_tuning", 0.1), ("lora", 1e-2)])
def test_adapters_on_a_pretrained_causal_lm_learn_and_reload_exactly(counting_files, tiny_llama, tmp_path, method, lr):
    cfg = gpt_config(counting_files, tmp_path / method, max_steps=20, lr=lr, log_every=1)
    cfg["model"] = {"name": str(tiny_llama)}
    cfg["strategy"] = {"method": method}
    run = gradtune.train(cfg)
    losses = [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    # the mean loss falls by more than 0.1 nats: on a random-init base the prefix's pull is small
    assert sum(losses[-3:]) < sum(losses[:3]) - 0.3
    saved = run.run_dir / "model"
    assert (saved / "adapter_config.json").is_file() and not (saved / "model.safetensors").exists()
    first, again = gradtune.load(run.run_dir), gradtune.load(run.run_dir)
    ids = first.tokenizer(["three four five"], return_tensors="pt")
    with torch.no_grad():
        adapted = first.model(**ids).logits
        assert torch.equal(adapted, again.model(**ids).logits)
        with first.model.disable_adapter():  # the adapter really changes the base model's output
            assert not torch.allclose(first.model(**ids).logits, adapted)


def test_prefix_tuning_on_an_encoder_says_why_not(make_config):
    with pytest.raises(GradtuneError, match="prefix_tuning.*prompt_tuning"):
        gradtune.train(make_config(strategy__method="prefix_tuning", train__max_steps=1))
