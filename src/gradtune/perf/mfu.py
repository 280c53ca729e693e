"""Tokens/s and model FLOPs utilisation (MFU) of a training run, for metrics.jsonl's train records
and the progress bar:

    MFU = achieved FLOP/s / peak FLOP/s,  achieved = sum over steps of tokens x FLOPs per token / step time

FLOPs per token come from the model as built (flops.py), the peak from a matmul measured once on
this machine in the dtype training computes in (peak.py). Tokens are the real (non-padding) tokens
of the step's batches, from their attention masks; packed rows (no mask) count all their tokens;
a batch without tokens (tabular features, cached head features) counts examples. Under several
processes the processes' tokens and FLOPs add up (the global rate) against the peak of one process
times the number of processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gradtune.models.lm_head import IGNORE
from gradtune.perf.flops import FlopCount, count_training_flops
from gradtune.perf.peak import peak_flops


def training_dtype(precision: str) -> torch.dtype:
    """The dtype the matmuls of training run in, for train.precision (autocast where it is used)."""
    from gradtune.training.step import mixed_precision

    if precision == "fp64":
        return torch.float64
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision(precision), torch.float32)


def batch_tokens(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(tokens, examples) of one batch, without another pass over the data: a sum of its mask."""
    examples = len(batch["labels"])
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum()), examples
    if "input_ids" in batch:  # packed rows: every position is a token of some example
        return batch["input_ids"].numel(), examples
    return examples, examples


@dataclass
class MfuMeter:
    """Counts the tokens and FLOPs of the steps since the last train record."""

    count: FlopCount
    peak: float  # FLOP/s of every process together
    targets_only: bool = False  # a language model's output layer runs only where a target is predicted
    tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0

    def add(self, group: list[dict[str, torch.Tensor]], seconds: float) -> None:
        for batch in group:
            tokens, examples = batch_tokens(batch)
            if tokens:  # attention spans the batch's mean length
                share = 1.0
                if self.targets_only:
                    share = min(float((batch["labels"][:, 1:] != IGNORE).sum()) / tokens, 1.0)
                self.tokens += tokens
                self.flops += tokens * self.count.per_token(round(tokens / examples), share)
        self.seconds += seconds

    def take(self, total: Callable[[list[float]], list[float]] = lambda values: values) -> dict[str, float]:
        """tokens_per_s and mfu since the last call (`total`: sums the values over the processes)."""
        tokens, flops = total([float(self.tokens), self.flops])
        seconds = max(self.seconds, 1e-9)
        self.tokens, self.flops, self.seconds = 0, 0.0, 0.0
        return {"tokens_per_s": tokens / seconds, "mfu": flops / seconds / self.peak}


def mfu_meter(model: torch.nn.Module, precision: str, device: torch.device | str, processes: int = 1,
              loss_fn: object = None, running: torch.nn.Module | None = None) -> MfuMeter:
    """A meter for `model` as built (its strategy applied: what trains is read from requires_grad);
    `running`: the model the loop calls (DDP / compiled wrapper), if another object. The peak comes
    from the cache or is measured now (about a second), before any timed step."""
    from gradtune.models.lm_head import NextTokenLoss, keeps_logits  # peft, accelerate: loaded when training

    peak = peak_flops(training_dtype(precision), torch.device(device).type)
    targets_only = isinstance(loss_fn, NextTokenLoss) and keeps_logits(model if running is None else running)
    return MfuMeter(count_training_flops(model), peak * processes, targets_only)
