"""Writing text with a causal language model: the continuation of a prompt, or (a chat model, task
instruct) the assistant's answer to it, formatted with the run's chat template. Greedy or sampled
(temperature, top-p), several prompts at once (left-padded into one batch), stop strings, streaming
piece by piece, and the key/value cache (each new token computes only its own keys and values)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers.generation.streamers import TextStreamer

from gradtune.data.chat import ensure_template, prompt_ids
from gradtune.errors import GradtuneError

Prompt = str | list[dict[str, str]]  # a text, or (chat) a conversation of {role, content}


class _Stream(TextStreamer):
    """The text of the answer as it is written, in pieces, to `on_text` (the prompt is left out)."""

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None]):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.on_text = on_text

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.on_text(text)


def _check(max_new_tokens: int, temperature: float, top_p: float, greedy: bool) -> None:
    if max_new_tokens < 1:
        raise GradtuneError(f"max_new_tokens must be at least 1 (got {max_new_tokens})")
    if not greedy and not temperature > 0:
        raise GradtuneError(f"temperature must be > 0 (got {temperature}); use greedy for the likeliest text")
    if not 0 < top_p <= 1:
        raise GradtuneError(f"top_p must be in (0, 1] (got {top_p})")


def encode_prompts(tokenizer: Any, prompts: list[Prompt], chat: bool) -> list[list[int]]:
    """Token ids of each prompt: as the chat template asks for the assistant's turn (chat), or as text."""
    if chat:
        ensure_template(tokenizer)
        return [prompt_ids(tokenizer, [{"role": "user", "content": p}] if isinstance(p, str) else list(p))
                for p in prompts]
    if not all(isinstance(p, str) for p in prompts):
        raise GradtuneError("a conversation (a list of messages) needs a chat model (task instruct)")
    return [list(tokenizer(p)["input_ids"]) for p in prompts]


def _cut(text: str, stop: list[str]) -> str:
    """The text up to the first stop string."""
    ends = [text.index(s) for s in stop if s in text]
    return text[: min(ends)] if ends else text


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: Prompt | list[Prompt], *, chat: bool = False,
             max_new_tokens: int = 50, temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False,
             seed: int | None = None, stop: list[str] | None = None, use_cache: bool = True,
             on_text: Callable[[str], None] | None = None) -> str | list[str]:
    """What the model writes after each prompt, up to `max_new_tokens` tokens, its end-of-text token
    or a `stop` string (cut off). Greedy takes the likeliest token each step (deterministic);
    otherwise tokens are sampled from softmax(logits / temperature), restricted to the smallest set
    holding `top_p` of the probability (nucleus sampling); `seed` makes that reproducible. One
    prompt (a str, or a conversation) gives a str, a list gives a list. `on_text` receives the
    answer in pieces as it is written (one prompt only)."""
    _check(max_new_tokens, temperature, top_p, greedy)
    single = isinstance(prompts, str) or (chat and prompts and isinstance(prompts[0], dict))
    batch = [prompts] if single else list(prompts)
    if not batch:
        return []
    if on_text is not None and len(batch) > 1:
        raise GradtuneError("streaming writes one answer at a time: give one prompt")
    ids = encode_prompts(tokenizer, batch, chat)
    longest = max(len(i) for i in ids)
    limit = getattr(model.config, "max_positions", None)  # a from-scratch gpt's learned positions
    if limit is not None and longest + max_new_tokens > limit:
        if longest >= limit:
            raise GradtuneError(f"the prompt is {longest} tokens; this model reads at most {limit} "
                                "(model.max_positions): shorten it")
        max_new_tokens = limit - longest
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # left padding: every prompt ends at the last column, where the new tokens follow
    input_ids = torch.tensor([[pad] * (longest - len(i)) + i for i in ids], device=model.device)
    mask = torch.tensor([[0] * (longest - len(i)) + [1] * len(i) for i in ids], device=model.device)
    if seed is not None:
        torch.manual_seed(seed)
    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p, "top_k": 0}  # 0: no top-k cut
    stops = {"stop_strings": stop, "tokenizer": tokenizer} if stop else {}
    streamer = _Stream(tokenizer, on_text) if on_text is not None else None
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else None
    out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                         do_sample=not greedy, pad_token_id=pad, eos_token_id=eos, use_cache=use_cache,
                         streamer=streamer, **sampling, **stops)
    texts = [_cut(tokenizer.decode(row[longest:], skip_special_tokens=True), stop or []) for row in out]
    return texts[0] if single else texts
