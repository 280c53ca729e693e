"""Batching: examples into batches of similar length (so a short sentence is never padded to
max_length), deterministic in (seed, epoch) so that a resumed run sees the batches the
uninterrupted run would have seen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding

# what a batch may hold: the model's inputs (`features`: a task without a tokenizer, tabular; the
# decoder's side of an encoder-decoder), the targets, `_row` (the example's row in its file), which
# rides along so that an error can name the rows of a bad batch, and `_feature` / `_context` (a
# question-answering window: its index, and where the context's tokens are)
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
MODEL_INPUTS = (*ENCODER_INPUTS, "decoder_input_ids", "decoder_attention_mask", "features", "labels", "_row",
                "_feature", "_context")
NOT_INPUTS = ("labels", "_row", "_feature", "_context")


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the model's forward reads of a batch: all but the targets and the bookkeeping."""
    return {k: v for k, v in batch.items() if k not in NOT_INPUTS}


def logits_of(output: Any) -> torch.Tensor:
    """A model's scores as one tensor: `.logits`, or a question-answering model's start and end
    scores stacked on the last axis ([batch, tokens, 2])."""
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    return torch.stack([output.start_logits, output.end_logits], dim=-1)


def tokenize_texts(
    batch: dict[str, list], tokenizer: Any, text_column: str, pair_column: str | None, max_length: int
) -> dict[str, list]:
    """Token ids (and attention mask, token types) of a batch of rows, truncated to max_length,
    with each example's `length` for the length-grouped batches."""
    texts = [str(t) for t in batch[text_column]]
    pairs = [str(t) for t in batch[pair_column]] if pair_column else None
    enc = dict(tokenizer(texts, pairs, truncation=True, max_length=max_length))
    enc["length"] = [len(ids) for ids in enc["input_ids"]]
    return enc


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar length: shuffle, cut into mega-chunks of 50 batches, sort each
    chunk by length, split into batches, shuffle the batch order. Deterministic in (seed, epoch),
    so a resumed run sees exactly the batches the uninterrupted run would have seen."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, shuffle: bool = True):
        self.lengths, self.batch_size, self.seed, self.shuffle = lengths, batch_size, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n, size = len(self.lengths), self.batch_size
        if not self.shuffle:  # evaluation: longest first, order only matters for speed
            order = sorted(range(n), key=lambda i: -self.lengths[i])
            yield from (order[s : s + size] for s in range(0, n, size))
            return
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(n, generator=g).tolist()
        mega = size * 50
        batches: list[list[int]] = []
        for s in range(0, n, mega):
            chunk = sorted(perm[s : s + mega], key=lambda i: -self.lengths[i])
            batches += [chunk[j : j + size] for j in range(0, len(chunk), size)]
        for b in torch.randperm(len(batches), generator=g).tolist():
            yield batches[b]


def stack_collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The collator when there is no tokenizer: every example has the same shape, so stack them
    (features and labels as float32, `_row` as int64)."""
    batch = {}
    for key in rows[0]:
        dtype = torch.long if key == "_row" else torch.float32
        batch[key] = torch.tensor([row[key] for row in rows], dtype=dtype)
    return batch


def collate_fn(tokenizer: Any, collator: Any = None) -> Any:
    """A task's own collator, or: pad a tokenizer's inputs to the batch's longest (labels
    stacked), or stack fixed-width features."""
    if collator is not None:
        return collator
    return DataCollatorWithPadding(tokenizer) if tokenizer is not None else stack_collate


def make_loader(
    ds: datasets.Dataset, tokenizer: Any, batch_size: int, seed: int, shuffle: bool, collator: Any = None
) -> DataLoader:
    """A DataLoader that pads each batch only to its own longest sequence. Examples without a
    `length` (tabular features) all count as length 1: the same seeded sampler, stacked batches."""
    columns = [c for c in MODEL_INPUTS if c in ds.column_names]
    lengths = ds["length"] if "length" in ds.column_names else [1] * len(ds)
    sampler = LengthGroupedBatchSampler(lengths, batch_size, seed, shuffle)
    return DataLoader(
        ds.with_format(columns=columns),
        batch_sampler=sampler,
        collate_fn=collate_fn(tokenizer, collator),
        # its own generator: starting an epoch must not draw from the global RNG, which
        # dropout uses and a checkpoint restores (else a resumed run drifts from the original)
        generator=torch.Generator().manual_seed(seed),
        # with a GPU, batches wait in page-locked memory, so the copy to the GPU overlaps the step
        pin_memory=torch.cuda.is_available(),
    )
