"""`model.name: gpt`, a small transformer decoder trained from scratch for `task: causal_lm`: the
encoder's blocks (transformer.py) with a causal mask, and every position mapped to next-token
logits through the token embedding matrix itself (weight tying). It writes text with `.generate()`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, GenerationMixin
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep

from gradtune.models.transformer import TransformerConfig, TransformerPreTrainedModel, sizes


class GPTConfig(TransformerConfig):
    model_type = "gradtune-gpt"

    def __init__(self, use_cache: bool = True, **kwargs: Any):
        kwargs["causal"] = True
        self.use_cache = use_cache  # generation keeps past keys and values (training turns it off)
        super().__init__(**kwargs)


class GPTForCausalLM(TransformerPreTrainedModel, GenerationMixin):
    """input_ids [b, t] -> embeddings -> num_layers causal blocks -> logits [b, t, vocab] for the
    token after each position, through the (tied) token embedding matrix."""

    config_class = GPTConfig
    _tied_weights_keys = {"lm_head.weight": "tokens.weight"}

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self._build_stack(config)
        self.lm_head = nn.Linear(config.embedding_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None, cache: Any = None, use_cache: bool | None = None,
        labels: torch.Tensor | None = None, logits_to_keep: int | torch.Tensor = 0, **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """With use_cache (generate's default), the keys and values of the text so far are kept in
        `cache`, and the next call reads only the new tokens. `logits_to_keep` as in transformers:
        0 all positions, n the last n, a boolean [batch, tokens] mask those positions ([kept, vocab])."""
        use_cache = getattr(self.config, "use_cache", True) if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache()
        x, _ = self._encode(input_ids, attention_mask, position_ids, cache if use_cache else None)
        logits = self.lm_head(slice_logits_to_keep(x, logits_to_keep))
        loss = None
        if labels is not None:  # the HF convention (labels = input_ids, -100 ignored); gradtune's loop has its own
            loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache if use_cache else None)


AutoConfig.register(GPTConfig.model_type, GPTConfig, exist_ok=True)
AutoModelForCausalLM.register(GPTConfig, GPTForCausalLM, exist_ok=True)


def build(cfg: Any, tokenizer: Any, task: Any, meta: dict[str, Any]) -> GPTForCausalLM:
    """A freshly initialised decoder whose vocabulary is the tokenizer's."""
    config = GPTConfig(**sizes(cfg.model, tokenizer, cfg.data.max_length), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    return GPTForCausalLM(config)
