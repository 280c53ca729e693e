"""Writing text with a causal language model: greedy or sampled (temperature, top-p) continuation
of a prompt, through transformers' `generate`."""

from __future__ import annotations

from typing import Any

import torch

from gradtune.errors import GradtuneError


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 50, temperature: float = 1.0,
             top_p: float = 1.0, greedy: bool = False, seed: int | None = None) -> str:
    """The text the model writes after `prompt`, up to `max_new_tokens` tokens or its end-of-text
    token. Greedy takes the likeliest token each step (deterministic); otherwise tokens are sampled
    from softmax(logits / temperature), restricted to the smallest set holding `top_p` of the
    probability (nucleus sampling). `seed` makes a sampled text reproducible. A from-scratch gpt
    stops at model.max_positions."""
    if max_new_tokens < 1:
        raise GradtuneError(f"max_new_tokens must be at least 1 (got {max_new_tokens})")
    if not greedy and not temperature > 0:
        raise GradtuneError(f"temperature must be > 0 (got {temperature}); use greedy for the likeliest text")
    if not 0 < top_p <= 1:
        raise GradtuneError(f"top_p must be in (0, 1] (got {top_p})")
    enc = tokenizer(prompt, return_tensors="pt").to(model.device)
    length = enc["input_ids"].shape[1]
    limit = getattr(model.config, "max_positions", None)
    if limit is not None and length + max_new_tokens > limit:  # a from-scratch gpt's learned positions
        if length >= limit:
            raise GradtuneError(f"the prompt is {length} tokens; this model reads at most {limit} "
                                "(model.max_positions): shorten it")
        max_new_tokens = limit - length
    if seed is not None:
        torch.manual_seed(seed)
    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p, "top_k": 0}  # 0: no top-k cut
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=not greedy, pad_token_id=pad, **sampling)
    return tokenizer.decode(out[0, length:], skip_special_tokens=True)
