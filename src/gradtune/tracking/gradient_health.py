"""Gradient health: per-layer gradient norms and update-to-weight ratios for metrics.jsonl, and a
plain-words warning (once) when gradients explode or vanish."""

from __future__ import annotations

from typing import Any

import torch


def module_group(name: str) -> str:
    """The module a parameter belongs to, at the grain of a layer: 'bert.encoder.layer.3',
    'bert.embeddings', 'classifier'."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[: max(1, min(2, len(parts) - 1))])


class GradientHealth:
    """Per-layer gradient norms and update-to-weight ratios, and a plain-words warning (once)
    when gradients explode (norm > 25x its running median) or vanish."""

    def __init__(self, model: torch.nn.Module, say: Any):
        """`say(message)` reports a warning (the loop prints it in yellow, on the main process only)."""
        self.groups: dict[str, list[torch.nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                self.groups.setdefault(module_group(name), []).append(param)
        self.say, self.norms, self.warned = say, [], set()

    def grad_norms(self) -> dict[str, float]:
        return {g: _norm([p.grad for p in ps if p.grad is not None]) for g, ps in self.groups.items()}

    def snapshot(self) -> dict[str, list[torch.Tensor]]:
        return {g: [p.detach().clone() for p in ps] for g, ps in self.groups.items()}

    def update_ratios(self, before: dict[str, list[torch.Tensor]]) -> dict[str, float]:
        """||delta theta|| / ||theta|| per layer: about 1e-3 is healthy; far above, the step is too big."""
        out = {}
        for g, ps in self.groups.items():
            delta = _norm([p.detach() - b for p, b in zip(ps, before[g])])
            out[g] = delta / max(_norm([b for b in before[g]]), 1e-12)
        return out

    def check(self, step: int, global_norm: float, layer_norms: dict[str, float] | None) -> None:
        self.norms.append(global_norm)
        recent = sorted(self.norms[-200:-1])
        if len(recent) >= 20 and "explode" not in self.warned:
            median = recent[len(recent) // 2]
            if global_norm > 25 * median:  # fine-tuning norms swing ~10x on their own
                self.warned.add("explode")
                self.say(f"Warning: at step {step} the gradient norm jumped to {global_norm:.3g}, "
                         f"{global_norm / max(median, 1e-12):.0f}x its running median ({median:.3g}). Gradients "
                         "are exploding: lower train.lr or set train.max_grad_norm.")
        if layer_norms and "vanish" not in self.warned and len(layer_norms) >= 3:
            first, head = next(iter(layer_norms.values())), list(layer_norms.values())[-1]
            if head > 1e-6 and first < 1e-4 * head:
                self.warned.add("vanish")
                early = next(iter(layer_norms))
                self.say(f"Warning: at step {step} the gradients reaching the first layers ({early}: "
                         f"{first:.2g}) are vanishing next to the head's ({head:.2g}): the early layers "
                         "barely learn. Try a higher train.lr, a shorter or residual model, or LSTM/GRU over RNN.")


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors))) if tensors else 0.0
