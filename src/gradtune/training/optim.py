"""Optimizers, learning-rate schedules, and the gradient-descent mode's plan (how many examples
one forward/backward sees, and how many of those make one update)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import get_scheduler


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only: decaying biases and LayerNorm gains toward zero
    only hurts (they are 1-D, as in nanoGPT's rule)."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# train.optimizer -> the torch.optim class, built from the parameter groups, the train config and
# the implementation for the device (`kernel`)
OPTIMIZERS = {
    "sgd": lambda groups, c, k: torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov),
    # Adam's weight_decay is L2 added to the gradient, AdamW's is decoupled from it
    "adam": lambda groups, c, k: torch.optim.Adam(groups, lr=c.lr, betas=c.betas, eps=c.eps, **k),
    "adamw": lambda groups, c, k: torch.optim.AdamW(groups, lr=c.lr, betas=c.betas, eps=c.eps, **k),
    "rmsprop": lambda groups, c, k: torch.optim.RMSprop(groups, lr=c.lr, alpha=c.alpha, momentum=c.momentum,
                                                        eps=c.eps),
    "adagrad": lambda groups, c, k: torch.optim.Adagrad(groups, lr=c.lr, eps=c.eps),
}


def adam_kernel(device_type: str) -> dict[str, bool]:
    """Adam(W)'s implementation for the device the parameters live on: on a GPU the fused kernel (one
    launch updates every tensor); elsewhere `foreach` (one vectorised op per step over all tensors,
    instead of a Python loop over them). Both compute the same update as the loop, up to rounding."""
    return {"fused": True} if device_type == "cuda" else {"foreach": True}


def build_optimizer(model: torch.nn.Module, cfg: Any, device_type: str = "cpu") -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.optimizer](parameter_groups(model, cfg.weight_decay), cfg, adam_kernel(device_type))


@dataclass
class StepPlan:
    """How gradient descent walks through the data. The loader yields `loader_batch` examples;
    `accumulate` loader batches make one optimizer update (None: every batch of the epoch, i.e.
    full-batch descent); each is cut into pieces of `micro_batch` examples for forward/backward,
    so memory is bounded while the update still uses the gradient of all its examples."""

    loader_batch: int
    micro_batch: int
    accumulate: int | None

    def updates_per_epoch(self, loader_batches: int) -> int:
        return 1 if self.accumulate is None else math.ceil(loader_batches / self.accumulate)


def step_plan(cfg: Any) -> StepPlan:
    if cfg.gd_mode == "stochastic":  # one example per update
        return StepPlan(1, 1, 1)
    if cfg.gd_mode == "batch":  # the gradient of the whole training set, in memory-bounded pieces
        piece = cfg.micro_batch_size or cfg.batch_size
        return StepPlan(piece, piece, None)
    return StepPlan(cfg.batch_size, min(cfg.micro_batch_size or cfg.batch_size, cfg.batch_size),
                    cfg.grad_accum_steps)


def warmup_steps(cfg: Any, total_steps: int) -> int:
    if cfg.warmup_steps is not None:
        return cfg.warmup_steps
    return math.ceil(cfg.warmup_ratio * total_steps)


class PlateauWithWarmup:
    """Linear warmup, then ReduceLROnPlateau on the validation metric (stepped by `observe`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: int, mode: str, factor: float, patience: int):
        self.optimizer, self.warmup, self.steps = optimizer, warmup, 0
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor,
                                                                  patience=patience)
        if warmup:
            self._scale(0.0)

    def _scale(self, fraction: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * fraction

    def step(self) -> None:
        self.steps += 1
        if self.steps <= self.warmup:
            self._scale(self.steps / self.warmup)

    def observe(self, metric: float) -> None:
        if self.steps >= self.warmup:
            self.plateau.step(metric)

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "base_lrs": self.base_lrs, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.base_lrs = state["steps"], state["base_lrs"]
        self.plateau.load_state_dict(state["plateau"])


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, total_steps: int, mode: str = "max") -> Any:
    warmup = warmup_steps(cfg, total_steps)
    if cfg.schedule == "plateau":
        return PlateauWithWarmup(optimizer, warmup, mode, cfg.plateau_factor, cfg.plateau_patience)
    name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine",
            "cosine_restarts": "cosine_with_restarts", "polynomial": "polynomial"}[cfg.schedule]
    extra = {"cosine_restarts": {"num_cycles": cfg.num_cycles},
             "polynomial": {"power": cfg.power, "lr_end": cfg.lr_end}}.get(cfg.schedule)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps,
                         scheduler_specific_kwargs=extra)
