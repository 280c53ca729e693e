"""`model.name: bart`, a small transformer encoder-decoder trained from scratch for `task: seq2seq`
(translation and the like), with a byte-level BPE tokenizer trained on both sides of the training
pairs. It is transformers' BART architecture at the size the model.* keys give (embedding_size is
its width, hidden_size each block's MLP, num_layers the blocks of the encoder and of the decoder),
randomly initialised: the encoder reads the source with attention in both directions, the decoder
writes the target one token at a time, attending to its own past and to the whole source.
"""

from __future__ import annotations

from typing import Any

from transformers import BartConfig, BartForConditionalGeneration


def build(cfg: Any, tokenizer: Any, task: Any, meta: dict[str, Any]) -> BartForConditionalGeneration:
    """A freshly initialised encoder-decoder (seeded by the caller's set_seed) over the tokenizer's
    vocabulary; the decoder starts from, and stops at, the end-of-text token."""
    m, longest = cfg.model, max(cfg.data.max_length, meta.get("max_target_length") or 0)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=m.embedding_size, encoder_ffn_dim=m.hidden_size,
        decoder_ffn_dim=m.hidden_size, encoder_layers=m.num_layers, decoder_layers=m.num_layers,
        encoder_attention_heads=m.num_heads, decoder_attention_heads=m.num_heads,
        max_position_embeddings=m.max_positions or longest, dropout=m.dropout or 0.0,
        attention_dropout=m.attention_dropout or 0.0, activation_dropout=0.0,
        pad_token_id=pad, bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, decoder_start_token_id=eos,
        forced_bos_token_id=None, forced_eos_token_id=eos,
    )
    return BartForConditionalGeneration(config)
