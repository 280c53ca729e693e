"""Strategies that train a subset of the model's own weights (requires_grad on, the rest off):
full (everything), head (the task head on a frozen feature extractor), top_k (the last k blocks and
what follows them), bitfit (the bias terms and the head)."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from torch import nn

from gradtune.errors import GradtuneError
from gradtune.training.strategies.heads import head_name, language_model_output


def _train_only(model: nn.Module, trains: Callable[[str], bool]) -> nn.Module:
    for name, param in model.named_parameters():
        param.requires_grad_(trains(name))
    return model


def _in_task_head(model: nn.Module) -> Callable[[str], bool]:
    """Whether a parameter is in the task head (always trained); a causal LM has none."""
    head = None if language_model_output(model) else head_name(model)
    return lambda name: head is not None and name.split(".")[0] == head


def full(model: nn.Module, s: Any) -> nn.Module:
    return model


def head_only(model: nn.Module, s: Any) -> nn.Module:
    """The head alone. The frozen body is a feature extractor, so it stays in eval mode (no dropout)
    even while the loop calls model.train(); only the head's own modules follow train()."""
    head = head_name(model)
    plain_train = model.train

    def train(self: nn.Module, mode: bool = True) -> nn.Module:
        plain_train(mode)
        for name, child in self.named_children():
            if name != head:
                child.eval()
        return self

    model.train = types.MethodType(train, model)
    model.train(model.training)
    return _train_only(model, lambda name: name.split(".")[0] == head)


def bitfit(model: nn.Module, s: Any) -> nn.Module:
    in_head = _in_task_head(model)
    if not any(n.endswith("bias") and not in_head(n) for n, _ in model.named_parameters()):
        raise GradtuneError(f"strategy.method bitfit: {type(model).__name__} has no bias terms outside its head")
    return _train_only(model, lambda name: in_head(name) or name.endswith("bias"))


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The longest ModuleList of the model (BERT's encoder.layer, Llama's model.layers)."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise GradtuneError(f"strategy.method top_k: {type(model).__name__} has no list of transformer blocks; "
                            "use full, head or bitfit")
    return max(lists, key=lambda item: len(item[1]))


def top_k(model: nn.Module, s: Any) -> nn.Module:
    """The last k blocks and everything registered after them (pooler, final norm, head); a causal
    LM's output layer stays frozen."""
    lm_output = language_model_output(model)
    prefix, blocks = transformer_blocks(model)
    if s.layers > len(blocks):
        raise GradtuneError(f"strategy.layers={s.layers}, but {type(model).__name__} has {len(blocks)} blocks "
                            f"({prefix}); choose 1 to {len(blocks)}")
    names = [n for n, _ in model.named_parameters()]
    first_trained = f"{prefix}.{len(blocks) - s.layers}."
    start = next(i for i, n in enumerate(names) if n.startswith(first_trained))
    trained = {n for n in names[start:] if n.split(".")[0] != lm_output}
    return _train_only(model, lambda name: name in trained)
