"""The LM head computed only where a token is predicted (models/lm_head.py) gives the loss and the
gradients of the full head, for a tiny Llama (bare, under LoRA, packed), gradtune's gpt; prompt tuning
falls back to the full head; and a training run's head really sees only the target positions."""

from __future__ import annotations

import json
from pathlib import Path

import peft
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import gradtune
from conftest import sentiment_rows
from gradtune.models.gpt import GPTConfig, GPTForCausalLM
from gradtune.models.lm_head import IGNORE, NextTokenLoss, keeps_logits

VOCAB = 97


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, use_cache=False)
    return LlamaForCausalLM(config)


def tiny_gpt() -> GPTForCausalLM:
    torch.manual_seed(0)
    return GPTForCausalLM(GPTConfig(vocab_size=VOCAB, embedding_size=32, hidden_size=32, num_layers=2, num_heads=2,
                                    max_positions=64, use_cache=False))


def instruct_batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """3 right-padded rows whose prompts (labels -100) and padding differ in length; labels one column
    wider than the inputs, as the loop leaves them after trimming a micro-batch's padding."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (3, 12), generator=g)
    mask = torch.ones(3, 12, dtype=torch.long)
    labels = ids.clone()
    for row, (prompt, length) in enumerate([(4, 12), (7, 10), (2, 6)]):
        labels[row, :prompt] = IGNORE
        labels[row, length:], mask[row, length:] = IGNORE, 0
    labels = torch.cat([labels, torch.full((3, 1), IGNORE)], dim=1)
    return {"input_ids": ids, "attention_mask": mask}, labels


def loss_and_grads(model: torch.nn.Module, inputs: dict, labels: torch.Tensor, narrow: bool):
    model.zero_grad(set_to_none=True)
    loss_fn = NextTokenLoss()
    loss = loss_fn.of_model(model, inputs, labels) if narrow else loss_fn(model(**inputs).logits, labels)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.detach(), grads


def assert_same_as_full_head(model: torch.nn.Module, inputs: dict, labels: torch.Tensor) -> None:
    full_loss, full_grads = loss_and_grads(model, inputs, labels, narrow=False)
    loss, grads = loss_and_grads(model, inputs, labels, narrow=True)
    torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-5)
    assert grads.keys() == full_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], full_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt], ids=["llama", "gpt"])
def test_kept_logits_give_the_full_heads_loss_and_gradients(build):
    model = build()
    assert keeps_logits(model)
    assert_same_as_full_head(model, *instruct_batch())


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt], ids=["llama", "gpt"])
def test_under_lora_too(build):
    targets = ["q_proj", "v_proj"] if build is tiny_llama else ["qkv", "out"]
    model = peft.get_peft_model(build(), peft.LoraConfig(r=4, target_modules=targets, init_lora_weights=False,
                                                        task_type=peft.TaskType.CAUSAL_LM))
    assert keeps_logits(model)
    assert_same_as_full_head(model, *instruct_batch())


def test_packed_rows_without_an_attention_mask():
    """Packing: position ids restart at each example, no attention mask."""
    inputs, labels = instruct_batch()
    positions = torch.cat([torch.arange(5), torch.arange(7)]).repeat(3, 1)
    assert_same_as_full_head(tiny_llama(), {"input_ids": inputs["input_ids"], "position_ids": positions}, labels)


def test_prompt_tuning_falls_back_to_the_full_head():
    """Virtual tokens come before the text: the positions would not match, so the full head runs."""
    model = peft.get_peft_model(tiny_llama(), peft.PromptTuningConfig(num_virtual_tokens=3,
                                                                       task_type=peft.TaskType.CAUSAL_LM))
    assert not keeps_logits(model)
    inputs, labels = instruct_batch()
    loss, _ = loss_and_grads(model, inputs, labels, narrow=True)
    full = NextTokenLoss()(model(**inputs).logits[:, 3:], labels)  # peft returns the virtual tokens' logits too
    torch.testing.assert_close(loss, full.detach())


def test_training_computes_the_head_only_at_answer_tokens(chat_llama: Path, tmp_path: Path, monkeypatch):
    """An instruct run: the head's input holds one row per target token, never the prompt's tokens."""
    rows = [{"instruction": "What is the sentiment of this review?", "input": r["text"], "output": r["label"]}
            for r in sentiment_rows(16, seed=3)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: list[tuple[int, ...]] = []
    original = LlamaForCausalLM.forward

    def recording(self, *args, **kwargs):
        handle = self.lm_head.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
        try:
            return original(self, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(LlamaForCausalLM, "forward", recording)
    cfg = {"task": "instruct", "model": {"name": str(chat_llama)}, "data": {"train": str(train), "max_length": 96},
           "strategy": {"method": "lora", "target_modules": ["q_proj", "v_proj"]},
           "train": {"epochs": 1, "batch_size": 8, "lr": 1e-2, "warmup_ratio": 0.0, "progress": False,
                     "precision": "fp32", "seed": 0}, "output_dir": str(tmp_path / "run")}
    gradtune.train(cfg)
    assert len(seen) == 2  # two steps, each one forward
    # the answer ("positive" / "negative", a token or two) and the end of the turn: a few targets per row,
    # [kept, hidden] instead of [8, ~40 tokens, hidden]
    assert all(len(shape) == 2 and 8 <= shape[0] <= 8 * 6 for shape in seen), seen
