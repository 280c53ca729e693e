"""Causal language modelling: learn to predict each next token of the texts in data.text_column
(no labels), with next-token cross-entropy; evaluated as loss per token and perplexity.

An example is one tokenized text (truncated to data.max_length, ended by the tokenizer's eos token
when it fits, so the model learns where a text stops). Its labels are the tokens themselves: the
logits at position i are scored against the token at i + 1, and padding (-100) is never a target.

The loss is summed over target tokens, and the loop divides by the target tokens of the whole
optimizer step (`loss_units`), not by the number of texts: a step is then the mean over its tokens
however the texts fall into micro-batches, so accumulated pieces give exactly the gradient of one
big batch, and a long text weighs in proportion to its length. Training computes the model's head
only at the positions that predict a target (models/lm_head.py): the same loss and gradient, less work.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.text import Perplexity
from transformers import DataCollatorForSeq2Seq

from gradtune.data.batching import tokenize_texts
from gradtune.errors import GradtuneError
from gradtune.models.lm_head import IGNORE, NextTokenLoss, next_token_loss_sum, shifted
from gradtune.tasks.base import LossFn, Task


def ready_tokenizer(tokenizer: Any) -> Any:
    """Pad on the right (the loop trims each micro-batch's padding from the right), and pad with
    eos where the tokenizer has no pad token (GPT-2, Llama): labels mark padding by -100, never by
    the pad id, so a real eos stays a target."""
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise GradtuneError("the tokenizer has neither a pad nor an eos token; causal_lm needs one to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class CausalLM(Task):
    name = "causal_lm"
    losses = ("cross_entropy",)
    metrics = ("perplexity", "loss")
    default_metric = "perplexity"
    shown_metrics = ("perplexity", "loss")
    lower_is_better = frozenset({"perplexity", "loss"})
    labelled = False  # the text is its own target
    writes_text = True
    auto_model = "AutoModelForCausalLM"
    request_fields = ("prompts",)
    hf_task = "text-generation"
    default_model = "smollm2"
    text_keys = ("data.text_column",)
    owns = ("data.packing",)
    onnx = False

    def check_config(self, cfg: Any) -> None:
        defaults = type(cfg.data).model_fields
        given = [f"data.{k}" for k in ("label_column", "text_pair_column")
                 if getattr(cfg.data, k) != defaults[k].default]
        if given or cfg.model.classifier_dropout is not None:
            raise ValueError(f"{', '.join(given or ['model.classifier_dropout'])}: task 'causal_lm' learns "
                             "from data.text_column alone; it has no labels (or text pairs) and no classifier")

    def input_settings(self, cfg: Any) -> dict[str, Any]:
        return {**super().input_settings(cfg), "text_pair_column": None}

    def fit(self, train_ds: Any, cfg: Any, held_out: Any = None) -> dict[str, Any]:
        return {}  # nothing to learn from labels: there are none

    def encode_batch(self, batch: dict[str, list], tokenizer: Any, meta: dict[str, Any]) -> dict[str, list]:
        """Token ids per text, eos appended when the text fits in max_length, and labels = the ids."""
        ready_tokenizer(tokenizer)
        max_length, eos = meta["max_length"], tokenizer.eos_token_id
        enc = tokenize_texts(batch, tokenizer, meta["text_column"], None, max_length)
        features: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "length": []}
        for ids, mask in zip(enc["input_ids"], enc["attention_mask"]):
            ids, mask = list(ids), list(mask)
            if eos is not None and len(ids) < max_length and (not ids or ids[-1] != eos):
                ids, mask = ids + [eos], mask + [1]
            for key, value in (("input_ids", ids), ("attention_mask", mask), ("labels", ids), ("length", len(ids))):
                features[key].append(value)
        if "_row" in batch:
            features["_row"] = batch["_row"]
        return features

    def collator(self, tokenizer: Any, model: Any = None) -> DataCollatorForSeq2Seq:
        """Pads input_ids with the pad id and labels with -100 to each batch's longest text."""
        return DataCollatorForSeq2Seq(ready_tokenizer(tokenizer), padding=True, label_pad_token_id=IGNORE)

    def loss_units(self, labels: torch.Tensor) -> int:
        """The number of target tokens (not the number of texts)."""
        return int((labels[:, 1:] != IGNORE).sum())

    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        return next_token_loss_sum(logits, labels)

    def make_loss(self, train_cfg: Any, train_labels: list[Any], meta: dict[str, Any]) -> LossFn:
        """The same loss, computing the head only at the positions that predict a target (models/lm_head.py)."""
        return NextTokenLoss()

    def make_metrics(self, meta: dict[str, Any]) -> MetricCollection:
        """Perplexity streamed as a sum of log-probabilities and a token count: exp(loss per token)."""
        return MetricCollection({"perplexity": Perplexity(ignore_index=IGNORE)})

    def update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
        metrics.update(*shifted(logits, labels))
