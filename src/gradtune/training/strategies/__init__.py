"""Fine-tuning strategies: which parameters train. Each strategy is a function
`apply(model, s) -> model` (s: the strategy config) in a file of this folder, registered by one line
here with the strategy.* keys it reads:

- freezing.py: full, head, top_k, bitfit (requires_grad on a subset of the model's own weights);
- adapters.py: lora, dora, ia3, prompt_tuning, prefix_tuning (a peft adapter around the model).

The task head (heads.py) always trains: a freshly initialised head on a frozen model predicts nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Strategy:
    apply: str  # "module:function", called as function(model, strategy_config) -> model
    keys: tuple[str, ...] = ()  # the strategy.* keys it reads (any other that is set is a config error)
    adapter: bool = False  # model/ saves only an adapter (+ head) and names its base model
    mergeable: bool = False  # `export --merge` folds the adapter into the base weights


_FREEZE, _PEFT = "gradtune.training.strategies.freezing", "gradtune.training.strategies.adapters:wrap"
_LORA = ("r", "alpha", "dropout", "target_modules")
STRATEGIES: dict[str, Strategy] = {
    "full": Strategy(f"{_FREEZE}:full"),
    "head": Strategy(f"{_FREEZE}:head_only", ("cache_features",)),
    "top_k": Strategy(f"{_FREEZE}:top_k", ("layers",)),
    "bitfit": Strategy(f"{_FREEZE}:bitfit"),
    "lora": Strategy(_PEFT, _LORA, adapter=True, mergeable=True),
    "dora": Strategy(_PEFT, _LORA, adapter=True, mergeable=True),
    "ia3": Strategy(_PEFT, ("target_modules", "feedforward_modules"), adapter=True, mergeable=True),
    "prompt_tuning": Strategy(_PEFT, ("num_virtual_tokens",), adapter=True),
    "prefix_tuning": Strategy(_PEFT, ("num_virtual_tokens",), adapter=True),
}


def apply_strategy(model: Any, s: Any) -> Any:
    """Freeze what strategy.method leaves alone, or wrap the model with a peft adapter."""
    module, function = STRATEGIES[s.method].apply.split(":")
    return getattr(importlib.import_module(module), function)(model, s)


def parameter_counts(model: Any) -> dict[str, Any]:
    """Trainable and total parameters (a peft model's own count: base + adapter)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "percent": round(100 * trainable / max(total, 1), 4)}
