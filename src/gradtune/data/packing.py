"""Packing (`data.packing: true`): short language-model examples concatenated into rows of up to
data.max_length tokens, so that a batch holds text instead of padding.

Each example keeps to itself: its position ids restart at 0, and the model reads the restarts as
example boundaries (transformers builds a block-diagonal causal mask from them when no attention
mask is given; gradtune's gpt does the same), so attention never crosses from one example to the
next. The first token of every example is never a target, so no token is predicted from the end of
the example before it. Per-example losses are then exactly those of the unpacked examples (tested).
"""

from __future__ import annotations

import bisect
from typing import Any

import datasets
import torch

IGNORE = -100


def pack(ds: datasets.Dataset, max_length: int) -> datasets.Dataset:
    """Rows of whole examples, first-fit by decreasing length (deterministic: ties keep file order)."""
    lengths = ds["length"]
    order = sorted(range(len(ds)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []  # example indices per row
    room: list[tuple[int, int]] = []  # (free tokens, row), sorted: the fullest row that still fits comes first
    for i in order:
        at = bisect.bisect_left(room, (lengths[i], -1))
        if at < len(room):
            free, row = room.pop(at)
            rows[row].append(i)
            bisect.insort(room, (free - lengths[i], row))
        else:
            rows.append([i])
            bisect.insort(room, (max_length - lengths[i], len(rows) - 1))
    ids, labels, examples = ds["input_ids"], ds["labels"], ds["_row"]
    packed: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": [], "length": [], "_row": []}
    for members in rows:
        row_ids, row_labels, positions = [], [], []
        for i in members:
            row_ids += ids[i]
            row_labels += [IGNORE, *labels[i][1:]]  # nothing predicts an example's first token
            positions += list(range(len(ids[i])))
        for key, value in (("input_ids", row_ids), ("labels", row_labels), ("position_ids", positions),
                           ("length", len(row_ids)), ("_row", examples[members[0]])):
            packed[key].append(value)
    return datasets.Dataset.from_dict(packed)


class PackedCollator:
    """Packed rows into a batch: padded at the end (pad id, label IGNORE, positions running on),
    and no attention mask, so that the model takes the example boundaries from the position ids."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        batch: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": [], "_row": []}
        for r in rows:
            extra = width - len(r["input_ids"])
            batch["input_ids"].append(list(r["input_ids"]) + [self.pad] * extra)
            batch["labels"].append(list(r["labels"]) + [IGNORE] * extra)
            last = r["position_ids"][-1] if len(r["position_ids"]) else -1
            batch["position_ids"].append(list(r["position_ids"]) + list(range(last + 1, last + 1 + extra)))
            batch["_row"].append(int(r["_row"]))
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
