"""Budgets for `gradtune plan --time 10m --memory 4GB`: parsing them, and the changes to the config
that the plan estimates to fit when the run as configured does not.

Every suggestion is estimated from the plan's measured costs (plan.estimate): other epochs, rows,
max_length, batch or micro-batch sizes re-lay the real examples into batches and read the measured
seconds per batch; another strategy scales the measured step by its FLOPs (perf.flops) and drops
the gradients and optimizer state it no longer keeps. None of them is measured itself.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from typing import Any

from gradtune.errors import GradtuneError
from gradtune.perf.plan import Estimate, Plan, estimate, loader_batches, padded_tokens

DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(gb|gib|g|mb|mib|m)")
MAX_LENGTHS = (1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32, 24, 16)


def parse_duration(text: str) -> float:
    """'10m', '1h30m', '90s', '1.5h' -> seconds."""
    match = DURATION.fullmatch(text.strip().lower().replace(" ", ""))
    if not text.strip() or match is None or not any(match.groups()):
        raise GradtuneError(f"--time {text!r} is not a duration: write hours, minutes and seconds as in 10m, "
                            "1h30m, 90s or 1.5h")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    if h * 3600 + m * 60 + s <= 0:
        raise GradtuneError(f"--time {text!r} must be longer than zero, e.g. 10m")
    return h * 3600 + m * 60 + s


def parse_size(text: str) -> float:
    """'4GB', '512MB', '1.5G' -> MB (1 GB = 1024 MB)."""
    match = SIZE.fullmatch(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise GradtuneError(f"--memory {text!r} is not a memory size: write it as in 4GB, 512MB or 1.5GB")
    value = float(match.group(1))
    return value * 1024 if match.group(2).startswith("g") else value


@dataclass
class Suggestion:
    overrides: list[str]  # key=value, as `gradtune train CONFIG key=value` takes them
    run_seconds: float
    peak_memory_mb: float
    note: str = ""


def suggest(plan: Plan, time_budget: float | None, memory_budget: float | None) -> list[Suggestion]:
    """Changes that fit both budgets by the plan's estimates (empty when the run fits as it is)."""
    e = plan.estimate
    if (time_budget is None or e.run_seconds <= time_budget) and (memory_budget is None or
                                                                  e.peak_memory_mb <= memory_budget):
        return []
    fits = lambda s: ((time_budget is None or s.run_seconds <= time_budget)  # noqa: E731
                      and (memory_budget is None or s.peak_memory_mb <= memory_budget))
    return first_per_key([s for s in candidates(plan, time_budget) if fits(s)])


def _of(overrides: list[str], est: Estimate, note: str = "") -> Suggestion:
    return Suggestion(overrides, est.run_seconds, est.peak_memory_mb, note)


def candidates(plan: Plan, time_budget: float | None) -> list[Suggestion]:
    """Changes to try, each kind mildest first (suggest keeps the first of each kind that fits)."""
    layout, m, t, d = plan.layout, plan.measured, plan.cfg.train, plan.cfg.data
    e = plan.estimate
    out: list[Suggestion] = []
    scratch, method = plan.model_info["scratch"], plan.cfg.strategy.method
    if not scratch and method in ("full", "top_k", "bitfit"):  # a pretrained model that trains its weights
        out += [s for s in (_lora(plan), _head(plan)) if s is not None]
    if method in ("lora", "dora") and plan.cfg.strategy.r > 1:
        for r in (plan.cfg.strategy.r // 2, plan.cfg.strategy.r // 4, 1):
            if r >= 1:
                est = estimate(layout, m, t, saved_mb=m.state_mb * (1 - r / plan.cfg.strategy.r))
                out.append(_of([f"strategy.r={r}"], est, "gradients and optimizer state shrink with the rank"))
    longest = max(layout.train_lengths)
    if plan.cfg.task != "tabular" and not d.packing:
        out += [_of([f"data.max_length={n}"], estimate(layout, m, t, max_length=n)) for n in MAX_LENGTHS
                if n < longest]
    micro = layout.micro_batch
    for size in (micro // 2, micro // 4, micro // 8):
        if 1 <= size < micro:
            out.append(_of([f"train.micro_batch_size={size}"], estimate(layout, m, t, micro_batch=size),
                           f"the same steps of {layout.batch_size} examples, computed {size} at a time "
                           "(time taken as now)"))
    for size in (layout.batch_size // 2, layout.batch_size // 4):
        if size >= 1:
            out.append(_of([f"train.batch_size={size}"], estimate(layout, m, t, batch_size=size)))
    if time_budget is not None and e.run_seconds > time_budget:
        # fewer epochs (or steps) or rows: the training shrinks in proportion, setup and evaluation less;
        # start from the proportional share and shrink until the estimate fits
        share = max(0.001, (time_budget - m.setup_seconds) / max(e.run_seconds - m.setup_seconds, 1e-9))
        for k in range(12):
            f = share * 0.85**k
            if t.max_steps:
                steps = max(1, int(e.total_steps * f))
                change, est = f"train.max_steps={steps}", estimate(layout, m, _with(t, max_steps=steps))
            else:
                epochs = _round_down(t.epochs * f)
                if epochs <= 0:
                    break
                change, est = f"train.epochs={epochs:g}", estimate(layout, m, t, epochs=epochs)
            if est.run_seconds <= time_budget:
                out.append(_of([change], est))
                break
        for k in range(12):
            f = share * 0.85**k
            rows = int(len(layout.train_lengths) * f)
            if rows < 1:
                break
            est = estimate(layout, m, t, rows=f)
            if est.run_seconds <= time_budget:
                out.append(_of([f"data.max_train_rows={rows}"], est, "a seeded sample of the rows"))
                break
    return out


def first_per_key(suggestions: list[Suggestion]) -> list[Suggestion]:
    """Candidates come mildest first within each key (data.max_length 128, then 96, ...): keep the first."""
    seen, out = set(), []
    for s in suggestions:
        key = s.overrides[0].split("=")[0]
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def _round_down(value: float) -> float:
    """Two significant digits, rounded down (so that the estimate stays within the budget)."""
    if value <= 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(value)) - 1)
    return math.floor(value / scale) * scale


def _with(t: Any, **changes: Any) -> Any:
    return t.model_copy(update=changes)


def _lora(plan: Plan) -> Suggestion | None:
    """LoRA on the same model: the measured step's compute scaled by the FLOPs of training an adapter
    (counted on a LoRA-wrapped copy of the model: no weight gradients for the frozen matrices), the
    optimizer's update of the adapter only (about 2% of the time of the full update, taken as such),
    and the gradients and optimizer state of the frozen weights gone."""
    import copy

    from gradtune.perf.flops import train_flops_per_token
    from gradtune.training.strategies import apply_strategy

    model, m, layout = plan.model_info["model"], plan.measured, plan.layout
    seq = max(1, round(statistics.median(layout.train_lengths)))
    try:
        adapted = apply_strategy(copy.deepcopy(model), plan.cfg.strategy.model_copy(update={"method": "lora"}))
    except Exception:  # noqa: BLE001 - a model peft cannot wrap simply gets no LoRA suggestion
        return None
    now, lora = train_flops_per_token(model, seq, "full"), train_flops_per_token(adapted, seq, "lora")
    del adapted
    if not now or not lora:
        return None
    est = estimate(layout, m, plan.cfg.train, train_factor=lora / now, update_factor=0.02, saved_mb=m.state_mb)
    return _of(["strategy.method=lora"], est, f"compute x{lora / now:.2f} by FLOPs; no optimizer state for the "
               "frozen weights")


def _head(plan: Plan) -> Suggestion | None:
    """The head alone on cached features: one forward pass over the training rows (at the measured
    evaluation speed), then training a linear layer, which costs next to nothing."""
    m, layout = plan.measured, plan.layout
    if plan.cfg.task not in ("classification", "regression", "multilabel") or m.eval is None:
        return None
    batches = loader_batches(layout.train_lengths, layout.eval_batch, layout.seed, 0, shuffle=False)
    cache = sum(m.eval(padded_tokens(layout.train_lengths, b, len(b), False)) for b in batches)
    val = [] if layout.val_lengths is None else loader_batches(layout.val_lengths, layout.eval_batch, layout.seed, 0,
                                                               shuffle=False)
    cache += sum(m.eval(padded_tokens(layout.val_lengths, b, len(b), False)) for b in val)
    hidden = getattr(plan.model_info["model"].config, "hidden_size", 0) or 0
    features_mb = (len(layout.train_lengths) + len(layout.val_lengths or [])) * hidden * 4 / 2**20
    run = m.setup_seconds + cache
    peak = m.before_steps_mb + features_mb
    return Suggestion(["strategy.method=head", "strategy.cache_features=true"], run, peak,
                      "one forward pass over the data, then the head alone")
