"""Causal language modelling: learn to predict each next token of the texts in data.text_column
(no labels), with next-token cross-entropy; evaluated as loss per token and perplexity.

An example is one tokenized text (truncated to data.max_length, ended by the tokenizer's eos token
when it fits, so the model learns where a text stops). Its labels are the tokens themselves: the
logits at position i are scored against the token at i + 1, and padding (-100) is never a target.

The loss is summed over target tokens, and the loop divides by the target tokens of the whole
optimizer step (`loss_units`), not by the number of texts: a step is then the mean over its tokens
however the texts fall into micro-batches, so accumulated pieces give exactly the gradient of one
big batch, and a long text weighs in proportion to its length.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.text import Perplexity
from transformers import DataCollatorForSeq2Seq

from gradtune.data import tokenize as tokenize_texts
from gradtune.errors import GradtuneError

IGNORE = -100  # a label that is not a target (padding), as in PyTorch's cross_entropy
LABELS = False  # the data has no label column: the text is its own target
AUTO_MODEL = "AutoModelForCausalLM"  # the head a pretrained model.name is loaded with
LOSSES = ("cross_entropy",)
METRICS = ("perplexity", "loss")
DEFAULT_METRIC = "perplexity"  # train.metric when the config leaves it null
SHOWN_METRICS = ("perplexity", "loss")  # printed after each evaluation


def metric_mode(metric: str) -> str:
    """Both metrics are better when smaller."""
    return "min"


def label_metadata(train_ds: Any, cfg: Any, held_out: Any = None) -> dict[str, Any]:
    return {}  # nothing to learn from labels: there are none


def label_encoder(meta: dict[str, Any]) -> Any:
    raise GradtuneError("task 'causal_lm' has no labels to encode")


def model_kwargs(meta: dict[str, Any]) -> dict[str, Any]:
    return {}  # the language-model head is the vocabulary itself


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


def tokenize(
    ds: datasets.Dataset, tokenizer: Any, text_column: str, pair_column: str | None, max_length: int
) -> datasets.Dataset:
    """Token ids per text, eos appended when the text fits in max_length, and labels = the ids."""
    ready_tokenizer(tokenizer)
    ds = tokenize_texts(ds, tokenizer, text_column, None, max_length)
    eos = tokenizer.eos_token_id

    def finish(row: dict[str, Any]) -> dict[str, Any]:
        ids, mask = list(row["input_ids"]), list(row["attention_mask"])
        if eos is not None and len(ids) < max_length and (not ids or ids[-1] != eos):
            ids, mask = ids + [eos], mask + [1]
        return {"input_ids": ids, "attention_mask": mask, "labels": ids, "length": len(ids)}

    return ds.map(finish, desc="adding labels")


def collator(tokenizer: Any) -> DataCollatorForSeq2Seq:
    """Pads input_ids with the pad id and labels with -100 to each batch's longest text."""
    return DataCollatorForSeq2Seq(ready_tokenizer(tokenizer), padding=True, label_pad_token_id=IGNORE)


def _shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at positions 0..t-2 and the tokens they predict (1..t-1). The loop trims a micro-
    batch's inputs to its longest text but not its labels; the columns cut off are all padding."""
    labels = labels[:, : logits.shape[1]]
    return logits[:, :-1], labels[:, 1:]


def loss_units(labels: torch.Tensor) -> int:
    """What the summed loss is divided by: the number of target tokens (not the number of texts)."""
    return int((labels[:, 1:] != IGNORE).sum())


def loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy summed over the target tokens."""
    logits, targets = _shifted(logits, labels)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")


def make_loss(train_cfg: Any, train_labels: Any, num_labels: int) -> Any:
    return loss_sum


def eval_loss_sum(logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> torch.Tensor:
    return loss_sum(logits, labels)


def make_metrics(meta: dict[str, Any]) -> MetricCollection:
    """Perplexity streamed as a sum of log-probabilities and a token count: exp(loss per token)."""
    return MetricCollection({"perplexity": Perplexity(ignore_index=IGNORE)})


def update_metrics(metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    logits, targets = _shifted(logits, labels)
    metrics.update(logits, targets)


def finish_metrics(values: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {name: round(float(value), 6) for name, value in values.items()}


def decode(logits: torch.Tensor, meta: dict[str, Any]) -> list[dict[str, Any]]:
    raise GradtuneError("a causal language model writes text: use `gradtune generate RUN --prompt ...` "
                        "(Python: gradtune.load(run).generate(prompt)), not predict")


def csv_row(result: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, str]:
    return {"text": result["text"]}
