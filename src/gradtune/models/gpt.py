"""`model.name: gpt`, a small transformer decoder trained from scratch for `task: causal_lm`: the
encoder's blocks (transformer.py) with a causal mask, and every position mapped to next-token
logits through the token embedding matrix itself (weight tying). It writes text with `.generate()`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin
from transformers.modeling_outputs import CausalLMOutput

from gradtune.models.transformer import TransformerConfig, TransformerPreTrainedModel, sizes


class GPTConfig(TransformerConfig):
    model_type = "gradtune-gpt"

    def __init__(self, **kwargs: Any):
        kwargs["causal"] = True
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
        # no key/value cache: generate() re-reads the whole text at each step (tiny models, short texts)
        self.generation_config.use_cache = False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, **kwargs: Any,
    ) -> CausalLMOutput:
        x, _ = self._encode(input_ids, attention_mask)
        logits = self.lm_head(x)
        loss = None
        if labels is not None:  # the HF convention (labels = input_ids, -100 ignored); gradtune's loop has its own
            loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)


AutoConfig.register(GPTConfig.model_type, GPTConfig, exist_ok=True)
AutoModelForCausalLM.register(GPTConfig, GPTForCausalLM, exist_ok=True)


def build(cfg: Any, tokenizer: Any, task: Any, meta: dict[str, Any]) -> GPTForCausalLM:
    """A freshly initialised decoder whose vocabulary is the tokenizer's."""
    config = GPTConfig(**sizes(cfg.model, tokenizer, cfg.data.max_length), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    return GPTForCausalLM(config)
