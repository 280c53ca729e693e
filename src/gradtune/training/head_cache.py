"""Cached features for `strategy.method: head`. The body of the model is frozen and runs in eval
mode, so what it hands the head is the same every epoch: compute it once per example, then train
the head alone on those vectors, with the unchanged loop (a batch is {"features", "labels",
"_row"}, as for the tabular task) and the same batches in the same order as an uncached run.

`HeadOnly` shares the real head module, so training it trains the full model's head; it saves
(save_pretrained) as the full model, so model/ is an ordinary complete model folder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate
from transformers.modeling_outputs import SequenceClassifierOutput

from gradtune.data.batching import LengthGroupedBatchSampler, logits_of, model_inputs


class HeadOnly(nn.Module):
    """Runs only the head of `full` on precomputed head inputs."""

    def __init__(self, full: nn.Module, head: str):
        super().__init__()
        self.head = getattr(full, head)
        self._full = [full]  # in a list: not a submodule, so its frozen weights aren't ours to train or checkpoint
        self.config = full.config

    @property
    def full_model(self) -> nn.Module:
        return self._full[0]

    def forward(self, features: torch.Tensor, **_: Any) -> SequenceClassifierOutput:
        weight = next(self.head.parameters())
        return SequenceClassifierOutput(logits=self.head(features.to(weight.device, weight.dtype)))

    def save_pretrained(self, folder: Any, **kwargs: Any) -> None:
        self.full_model.save_pretrained(folder, **kwargs)


class FeatureSet(Dataset):
    def __init__(self, features: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor):
        self.features, self.labels, self.rows = features, labels, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[i], "labels": self.labels[i], "_row": self.rows[i]}


@torch.no_grad()
def head_inputs(model: nn.Module, head: nn.Module, loader: DataLoader, batch_size: int) -> torch.Tensor | None:
    """What the head receives for each example of `loader`'s dataset, in dataset order, or None
    when the head's input is not one vector per example whose head output is the model's logits
    (a decoder's `score` runs on every token and the logits are picked afterwards)."""
    dataset, collate = loader.dataset, loader.collate_fn
    # longest first, as evaluation does: similar lengths share a batch, so little padding is computed
    order = LengthGroupedBatchSampler(loader.batch_sampler.lengths, batch_size, 0, shuffle=False)
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    try:
        for indices in order:
            batch = collate([dataset[i] for i in indices])
            seen.clear()
            logits = logits_of(model(**model_inputs(batch)))
            x = seen[0] if len(seen) == 1 else None
            if x is None or x.dim() != 2 or len(x) != len(logits) or not torch.equal(head(x), logits):
                return None
            if out is None:
                out = torch.empty(len(dataset), x.shape[1])
            out[indices] = x.detach().float().cpu()
    finally:
        hook.remove()
        model.train(was_training)
    return out


def _labels(loader: DataLoader) -> torch.Tensor:
    # the tokenizer's collator turns labels into int64 (class ids) or float32 (values, multi-hot)
    labels = loader.dataset["labels"]
    return torch.tensor(labels, dtype=torch.long if isinstance(labels[0], int) else torch.float32)


def feature_loader(loader: DataLoader, features: torch.Tensor) -> DataLoader:
    """A loader over cached features that yields the same batches, in the same order, as `loader`."""
    old: LengthGroupedBatchSampler = loader.batch_sampler
    rows = torch.tensor(loader.dataset["_row"], dtype=torch.long)
    return DataLoader(
        FeatureSet(features, _labels(loader), rows),
        batch_sampler=LengthGroupedBatchSampler(old.lengths, old.batch_size, old.seed, old.shuffle),
        collate_fn=default_collate, generator=torch.Generator().manual_seed(old.seed),
    )


def cache_head(
    model: nn.Module, head: str, train_loader: DataLoader, val_loader: DataLoader | None, batch_size: int
) -> tuple[HeadOnly, DataLoader, DataLoader | None] | None:
    """(the head alone, loaders of cached features) or None if this architecture's head can't be
    fed cached vectors (training then runs the frozen body every step)."""
    module = getattr(model, head)
    train = head_inputs(model, module, train_loader, batch_size)
    if train is None:
        return None
    val = None
    if val_loader is not None:
        val_features = head_inputs(model, module, val_loader, batch_size)
        if val_features is None:
            return None
        val = feature_loader(val_loader, val_features)
    return HeadOnly(model, head), feature_loader(train_loader, train), val
