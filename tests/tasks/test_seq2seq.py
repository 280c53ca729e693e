"""task: seq2seq. BLEU and chrF as sacrebleu computes them (a pair worked by hand); a small
encoder-decoder from scratch learns a toy translation; beam search with one beam is greedy; a
pretrained T5 folder trains too; save -> reload -> identical translations; ONNX is refused with the
reason."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import gradtune
from conftest import write_csv
from gradtune.errors import GradtuneError
from gradtune.export import export
from gradtune.tasks.seq2seq import cjk_share, scores, translate

WORDS = {"one": "un", "two": "deux", "three": "trois", "four": "quatre", "five": "cinq", "red": "rouge",
         "green": "vert", "blue": "bleu", "cat": "chat", "dog": "chien", "house": "maison", "car": "voiture"}


def pairs(n: int, seed: int) -> list[dict[str, str]]:
    """A toy translation: each word of a 3-5 word sentence has one translation, in the same order."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(list(WORDS)) for _ in range(rng.randint(3, 5))]
        rows.append({"source": " ".join(words), "target": " ".join(WORDS[w] for w in words)})
    return rows


# -- the scores ------------------------------------------------------------------------------------------


def test_bleu_matches_a_pair_worked_by_hand():
    # 1- to 4-gram precisions 6/7, 5/6, 4/5, 3/4, the same length (no brevity penalty):
    # BLEU = (6/7 * 5/6 * 4/5 * 3/4) ** (1/4) = (3/7) ** (1/4)
    got = scores(["the cat sat on the mat today"], ["the cat sat on the mat yesterday"], "13a")
    assert got["bleu"] == pytest.approx(100 * (3 / 7) ** 0.25, abs=0.01)
    assert scores(["我喜欢你。"], ["我喜欢你。"], "zh") == {"bleu": 100.0, "chrf": 100.0}
    assert scores(["completely different"], ["我喜欢你。"], "zh")["chrf"] == 0.0


def test_chinese_targets_are_scored_with_the_zh_tokenizer():
    assert cjk_share(["我喜欢你。", "他们来了"]) == 1.0 and cjk_share(["I like you."]) == 0.0
    # the same words, split by the zh tokenizer into characters: one wrong character of four
    assert scores(["我喜欢他"], ["我喜欢你"], "zh")["bleu"] > scores(["我喜欢他"], ["我喜欢你"], "13a")["bleu"]


# -- training ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("toy")
    return {"train": write_csv(folder / "train.csv", pairs(400, 1)), "dev": write_csv(folder / "dev.csv", pairs(30, 2))}


def seq2seq_config(files: dict[str, Path], output: Path, model: dict | None = None, **train) -> dict:
    return {"task": "seq2seq",
            "model": model or {"name": "bart", "embedding_size": 64, "hidden_size": 128, "num_layers": 2,
                               "num_heads": 2, "vocab_size": 300},
            "data": {"train": str(files["train"]), "validation": str(files["dev"]), "max_length": 32},
            "train": {"epochs": 40, "batch_size": 16, "lr": 1e-3, "warmup_ratio": 0.05, "eval_every": 500,
                      "progress": False, "seed": 0, "max_new_tokens": 24, **train},
            "output_dir": str(output)}


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    return gradtune.train(seq2seq_config(files, tmp_path_factory.mktemp("s2s") / "run"))


def test_a_small_encoder_decoder_learns_to_translate(run, files):
    assert run.metrics["bleu"] > 60 and run.metrics["chrf"] > 70
    scored = gradtune.evaluate(run.run_dir, files["dev"])
    assert scored["bleu"] == pytest.approx(run.best_metric) and scored["examples"] == 30
    meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
    assert meta["bleu_tokenize"] == "13a" and meta["base_model"] == "bart"  # the task's default model


def test_translations_reload_identically_and_beam_one_is_greedy(run):
    model = gradtune.load(run.run_dir)
    sources = ["one red cat", "blue house two dog"]
    first = model.predict(sources)
    assert first == gradtune.load(run.run_dir).predict(sources) and first[0]["generated_text"]
    batch = model.tokenizer(sources, padding=True, return_tensors="pt")
    greedy = model.model.generate(**batch, do_sample=False, max_new_tokens=24)
    assert translate(model.model, model.tokenizer, batch, {"num_beams": 1, "max_new_tokens": 24}) == [
        t.strip() for t in model.tokenizer.batch_decode(greedy, skip_special_tokens=True)]
    beams = translate(model.model, model.tokenizer, batch, {"num_beams": 4, "max_new_tokens": 24})
    assert len(beams) == 2 and all(beams)


def test_eval_and_predict_choose_the_beams_and_the_length_limit(run, files):
    beams = gradtune.evaluate(run.run_dir, files["dev"], num_beams=4)
    assert beams["bleu"] > 60 and beams["examples"] == 30
    short = gradtune.load(run.run_dir, max_new_tokens=2).predict(["one red cat house"])[0]["generated_text"]
    assert len(gradtune.load(run.run_dir).tokenizer(short, add_special_tokens=False)["input_ids"]) <= 2
    assert gradtune.evaluate(run.run_dir, files["dev"], max_new_tokens=2)["bleu"] < beams["bleu"] / 2
    with pytest.raises(GradtuneError, match="num_beams must be at least 1"):
        gradtune.load(run.run_dir, num_beams=0)


def test_prediction_files_and_onnx(run, tmp_path):
    source = write_csv(tmp_path / "in.csv", [{"source": "one red cat"}, {"source": "two blue dog"}])
    assert gradtune.predict_file(run.run_dir, source, tmp_path / "out.jsonl") == 2
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines[0]["source"] == "one red cat" and lines[0]["generated_text"]
    with pytest.raises(GradtuneError, match="writes its targets token by token"):
        export(run.run_dir, tmp_path / "onnx", format="onnx")


def test_a_pretrained_t5_folder_trains(files, tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    from gradtune.models import tokenizers

    folder = tmp_path / "t5"
    texts = [r[k] for r in pairs(200, 3) for k in ("source", "target")]
    tokenizer = tokenizers.train_bpe(texts, 300, 32)
    tokenizer.save_pretrained(folder)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    cfg = seq2seq_config(files, tmp_path / "run", model={"name": str(folder)}, epochs=2)
    trained = gradtune.train(cfg)
    assert "bleu" in trained.metrics and "chrf" in trained.metrics
