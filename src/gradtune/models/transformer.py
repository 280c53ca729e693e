"""`model.name: transformer`, a small transformer encoder trained from scratch for the text tasks
(classification, regression, multilabel), written out in torch.nn. The decoder (`gpt`, gpt.py)
is built from the same blocks. Each is a stack of the same pre-LN block,

    x = x + Attention(LayerNorm(x))      tokens look at each other (gpt: only at earlier ones)
    x = x + MLP(LayerNorm(x))            each token on its own: Linear -> GELU -> Linear

over token + learned position embeddings. The encoder pools the final vectors (the first token,
[CLS], or the mean / max over the real tokens) into a Linear head. A Hugging Face PreTrainedModel
registered with the Auto classes, so save_pretrained / from_pretrained, peft and export treat it
like any pretrained model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from gradtune.models.hf_loss import hf_loss


class TransformerConfig(PretrainedConfig):
    """Shared by both models; `causal` tells the attention whether a token may look ahead."""

    model_type = "gradtune-transformer"
    # the names transformers' generation (its key/value cache) looks for
    attribute_map = {"num_hidden_layers": "num_layers", "num_attention_heads": "num_heads"}

    def __init__(
        self, vocab_size: int = 8000, embedding_size: int = 128, hidden_size: int = 128, num_layers: int = 2,
        num_heads: int = 4, max_positions: int = 128, dropout: float = 0.0, attention_dropout: float = 0.0,
        classifier_dropout: float = 0.0, pooling: str = "first", causal: bool = False, **kwargs: Any,
    ):
        self.vocab_size, self.embedding_size, self.hidden_size = vocab_size, embedding_size, hidden_size
        self.num_layers, self.num_heads, self.max_positions = num_layers, num_heads, max_positions
        self.dropout, self.attention_dropout, self.classifier_dropout = dropout, attention_dropout, classifier_dropout
        self.pooling, self.causal = pooling, causal
        kwargs.setdefault("tie_word_embeddings", causal)
        super().__init__(**kwargs)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product attention, softmax(Q K^T / sqrt(d)) V, written out. `allowed`
    [b, 1, t, t_keys] says which key each query may look at: the real tokens (padding mask), and for
    a decoder only those at or before it (causal mask). With a key/value cache (generation) the keys
    and values of the text so far are kept, so a new token computes only its own."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.heads, self.width = config.num_heads, config.embedding_size
        self.qkv = nn.Linear(config.embedding_size, 3 * config.embedding_size)
        self.out = nn.Linear(config.embedding_size, config.embedding_size)
        self.attn_drop = nn.Dropout(config.attention_dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, cache: Any = None, layer: int = 0) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.width // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:  # the keys and values of every token so far, this step's appended
            k, v = cache.update(k, v, layer)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [b, heads, t, t_keys]
        # the smallest finite number, not -inf: a query with no allowed key (a padding position)
        # then gets a harmless uniform average instead of NaN
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = self.attn_drop(torch.softmax(scores, dim=-1))
        return self.out((weights @ v).transpose(1, 2).reshape(b, t, self.width))


class Block(nn.Module):
    """Pre-LN: each sublayer reads a normalised copy and adds its result to the residual stream."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.embedding_size), nn.LayerNorm(config.embedding_size)
        self.attention = SelfAttention(config)
        self.mlp = nn.Sequential(nn.Linear(config.embedding_size, config.hidden_size), nn.GELU(),
                                 nn.Linear(config.hidden_size, config.embedding_size))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, cache: Any = None, layer: int = 0) -> torch.Tensor:
        x = x + self.drop(self.attention(self.ln1(x), allowed, cache, layer))
        return x + self.drop(self.mlp(self.ln2(x)))


class TransformerPreTrainedModel(PreTrainedModel):
    config_class = TransformerConfig
    base_model_prefix = "transformer"
    main_input_name = "input_ids"

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2's init: small normal weights, so the residual stream starts near the embeddings
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _build_stack(self, config: TransformerConfig) -> None:
        self.tokens = nn.Embedding(config.vocab_size, config.embedding_size)
        self.positions = nn.Embedding(config.max_positions, config.embedding_size)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_final = nn.LayerNorm(config.embedding_size)

    def _encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None = None,
        cache: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The final vectors [b, t, width] and the real-token mask [b, t]. With a cache (generation),
        `input_ids` are the new tokens and `attention_mask` covers the past ones too."""
        b, t = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        device = input_ids.device
        if attention_mask is None and position_ids is not None:
            # packed rows (data.packing): a restart of the positions starts the next example, and no
            # token looks at another example's
            positions = position_ids
            start = torch.ones(b, 1, dtype=torch.long, device=device)
            segment = torch.cat([start, (positions[:, 1:] != positions[:, :-1] + 1).long()], dim=1).cumsum(dim=1)
            allowed = segment[:, None, :, None] == segment[:, None, None, :]  # [b, 1, t, t]
            real = torch.ones(b, t, dtype=torch.bool, device=device)
        else:
            real = torch.ones(b, past + t, dtype=torch.bool, device=device) if attention_mask is None \
                else attention_mask.bool()
            # a token's position counts the real tokens before it, so left padding shifts nothing
            positions = (real.long().cumsum(dim=1) - 1).clamp(min=0)[:, -t:]
            allowed = real[:, None, None, :]  # [b, 1, 1, past + t]: no query looks at padding
            real = real[:, -t:]
        if past + t > self.config.max_positions:  # a shape, not a value: ONNX export traces this
            raise ValueError(f"{past + t} tokens, but the model has positions for {self.config.max_positions} "
                             "(model.max_positions)")
        x = self.drop(self.tokens(input_ids) + self.positions(positions))
        if self.config.causal:  # query i (at past + i) sees the keys up to past + i
            allowed = allowed & torch.ones(t, allowed.shape[-1], dtype=torch.bool, device=device).tril(diagonal=past)
        for layer, block in enumerate(self.blocks):
            x = block(x, allowed, cache, layer)
        return self.ln_final(x), real


class TransformerForSequenceClassification(TransformerPreTrainedModel):
    """input_ids [b, t] -> embeddings -> num_layers blocks -> pooling (first | mean | max over the
    real tokens) -> dropout -> a Linear head with num_labels outputs."""

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        self._build_stack(config)
        self.head_drop = nn.Dropout(config.classifier_dropout)
        self.head = nn.Linear(config.embedding_size, config.num_labels)
        self.post_init()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, **kwargs: Any,
    ) -> SequenceClassifierOutput:
        x, real = self._encode(input_ids, attention_mask)
        if self.config.pooling == "first":  # the trained tokenizer puts [CLS] there
            first = real.long().argmax(dim=1)  # the first real token, whichever side was padded
            pooled = x.gather(1, first[:, None, None].expand(-1, 1, x.shape[-1])).squeeze(1)
        elif self.config.pooling == "mean":
            pooled = (x * real[..., None]).sum(dim=1) / real.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
        else:
            pooled = x.masked_fill(~real[..., None], float("-inf")).max(dim=1).values
        logits = self.head(self.head_drop(pooled))
        return SequenceClassifierOutput(loss=hf_loss(logits, labels, self.config.problem_type), logits=logits)


AutoConfig.register(TransformerConfig.model_type, TransformerConfig, exist_ok=True)
AutoModelForSequenceClassification.register(TransformerConfig, TransformerForSequenceClassification, exist_ok=True)


def sizes(model_cfg: Any, tokenizer: Any, max_length: int) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer), embedding_size=model_cfg.embedding_size, hidden_size=model_cfg.hidden_size,
        num_layers=model_cfg.num_layers, num_heads=model_cfg.num_heads,
        max_positions=model_cfg.max_positions or max_length, dropout=model_cfg.dropout or 0.0,
        attention_dropout=model_cfg.attention_dropout or 0.0, pad_token_id=tokenizer.pad_token_id,
    )


def build(cfg: Any, tokenizer: Any, task: Any, meta: dict[str, Any]) -> TransformerForSequenceClassification:
    """A freshly initialised encoder (seeded by the caller's set_seed) with the task's head, positions
    for model.max_positions (default data.max_length) tokens."""
    m = cfg.model
    config = TransformerConfig(**sizes(m, tokenizer, cfg.data.max_length), pooling=m.pooling or "first",
                               classifier_dropout=m.classifier_dropout or 0.0, **task.model_kwargs(meta))
    return TransformerForSequenceClassification(config)
