"""`model.name: rnn | lstm | gru`, recurrent text models trained from scratch (with a WordPiece
tokenizer trained on the training texts, or a pretrained one): embedding -> stacked recurrent
layers over the real tokens only -> pooling -> a Linear head. A Hugging Face PreTrainedModel /
PretrainedConfig pair registered with the Auto classes, so a run directory saves and loads it
exactly as it does a pretrained encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from gradtune.models.hf_loss import hf_loss


class RecurrentConfig(PretrainedConfig):
    model_type = "gradtune-recurrent"

    def __init__(
        self, cell: str = "lstm", vocab_size: int = 8000, embedding_size: int = 128, hidden_size: int = 128,
        num_layers: int = 1, bidirectional: bool = False, pooling: str = "last", dropout: float = 0.0,
        classifier_dropout: float = 0.0, **kwargs: Any,
    ):
        self.cell, self.vocab_size, self.embedding_size = cell, vocab_size, embedding_size
        self.hidden_size, self.num_layers, self.bidirectional = hidden_size, num_layers, bidirectional
        self.pooling, self.dropout, self.classifier_dropout = pooling, dropout, classifier_dropout
        super().__init__(**kwargs)


class RecurrentForSequenceClassification(PreTrainedModel):
    """input_ids [b, t] -> embedding -> num_layers recurrent layers over the real tokens only
    (packed: padding never enters the recurrence) -> pooling (last | mean | max) -> a Linear head."""

    config_class = RecurrentConfig
    base_model_prefix = "recurrent"
    main_input_name = "input_ids"

    def __init__(self, config: RecurrentConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size)
        kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
        self.rnn = kind(config.embedding_size, config.hidden_size, num_layers=config.num_layers, batch_first=True,
                        bidirectional=config.bidirectional, dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.head = nn.Linear(config.hidden_size * (2 if config.bidirectional else 1), config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        pass  # PyTorch's own init, drawn in the constructor from the seeded RNG

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, **kwargs: Any,
    ) -> SequenceClassifierOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        mask = mask.bool()
        # the real tokens first, in order, whichever side the tokenizer padded
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        ids, mask = input_ids.gather(1, order), mask.gather(1, order)
        lengths = mask.sum(dim=1).clamp(min=1)
        packed = pack_padded_sequence(self.embeddings(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        if self.config.pooling == "last":  # final forward state (+ the backward state at the first token)
            h = state[0] if isinstance(state, tuple) else state
            pooled = torch.cat([h[-2], h[-1]], dim=-1) if self.config.bidirectional else h[-1]
        else:
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
            real = mask[:, :, None]
            if self.config.pooling == "mean":
                pooled = (out * real).sum(dim=1) / lengths[:, None].to(out.dtype)
            else:
                pooled = out.masked_fill(~real, float("-inf")).max(dim=1).values
        logits = self.head(self.drop(pooled))
        return SequenceClassifierOutput(loss=hf_loss(logits, labels, self.config.problem_type), logits=logits)


AutoConfig.register(RecurrentConfig.model_type, RecurrentConfig, exist_ok=True)
AutoModelForSequenceClassification.register(RecurrentConfig, RecurrentForSequenceClassification, exist_ok=True)


def build(cfg: Any, tokenizer: Any, task: Any, meta: dict[str, Any]) -> RecurrentForSequenceClassification:
    """A freshly initialised recurrent classifier (seeded by the caller's set_seed(train.seed)) whose
    embedding covers the tokenizer's vocabulary, with the task's head."""
    m = cfg.model
    config = RecurrentConfig(
        cell=m.name, vocab_size=len(tokenizer), embedding_size=m.embedding_size, hidden_size=m.hidden_size,
        num_layers=m.num_layers, bidirectional=m.bidirectional, pooling=m.pooling or "last", dropout=m.dropout or 0.0,
        classifier_dropout=m.classifier_dropout or 0.0, pad_token_id=tokenizer.pad_token_id,
        **task.model_kwargs(meta),
    )
    return RecurrentForSequenceClassification(config)
