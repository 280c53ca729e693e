"""Gradient checking: the proof that backpropagation is right. Autograd's gradient of the training
loss is compared, entry by entry, with the central difference of the loss itself,

    dJ/dθ_i ≈ (J(θ + ε e_i) − J(θ − ε e_i)) / 2ε,

which needs nothing but forward passes. The two agree to about 1e-9 in float64 when backward is
right; a wrong backward (a missing factor, a dropped term) shows up as an error of order 1.

J is the loss exactly as the training step computes it (training/step.py's `piece_loss`):
`loss_fn(logits, labels) / n` on one small batch of the training loader (n its examples; causal_lm:
its target tokens). The model is a
fresh copy built by `prepare` (nothing of the user's run is read or written), converted to float64
and put in eval mode: dropout off, so J is a deterministic function of the weights.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gradtune.config import Config, as_config
from gradtune.errors import GradtuneError
from gradtune.training.prepare import prepare
from gradtune.training.step import piece_loss, pieces

# both |autograd| and |numeric| below this: the entry's gradient is zero (an unused weight, a dead
# relu unit) and the difference quotient is zero up to round-off; nothing to compare, a pass
ZERO = 1e-10
# the floor of the relative error's denominator: without it an entry whose true gradient is ~0
# gives 0/0, or divides round-off noise (~1e-10 for eps 1e-6) by ~0 and reports a huge "error"
FLOOR = 1e-8
# the finite difference's own noise: J(θ±ε) each carry a round-off of a few units in the last place
# of |J| (u = 2^-52 relative), and dividing their difference by 2ε magnifies it: with eps 1e-6 and
# J ~ 1 about 1e-10. A tensor whose gradients are ~1e-8 (common at BERT's small init) can then not be
# checked to a relative 1e-5, however right backward is; an entry whose |autograd − numeric| is
# within this resolution is reported (its relative error stays in the table) but not failed. A
# wrong backward is still caught on every entry whose gradient is above the resolution.
ROUNDOFF_ULPS = 16
NON_SMOOTH = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.PReLU)


@dataclass
class GradcheckRow:
    tensor: str  # the parameter's name, e.g. bert.encoder.layer.0.attention.self.query.weight
    shape: tuple[int, ...]
    checked: int  # entries compared
    worst_rel_error: float
    ok: bool
    roundoff_limited: bool = False  # worst error above tol, but within the finite difference's noise
    worst_entry: tuple[int, ...] = ()  # where the worst error is (index into the tensor)
    autograd: float = 0.0  # the two gradients at that entry
    numeric: float = 0.0


@dataclass
class GradcheckReport:
    rows: list[GradcheckRow]
    passed: bool
    tol: float
    eps: float
    examples: int  # the batch's size
    loss: float  # J(θ)
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> GradcheckRow:
        return max(self.rows, key=lambda r: r.worst_rel_error)


def rel_error(a: float, n: float) -> float:
    """|a − n| / max(|a|, |n|, FLOOR), 0 when both are zero up to round-off (see ZERO)."""
    if abs(a) < ZERO and abs(n) < ZERO:
        return 0.0
    return abs(a - n) / max(abs(a), abs(n), FLOOR)


def check_gradients(
    config: Config | dict | str | Path, overrides: list[str] | None = None, *, params_per_tensor: int = 5,
    batch_size: int = 4, eps: float = 1e-6, tol: float = 1e-5, seed: int = 0,
) -> GradcheckReport:
    """Compare autograd's gradient with central differences on up to `params_per_tensor` seeded
    entries of every trainable tensor; pass when every relative error is at most `tol`."""
    if params_per_tensor < 1:
        raise GradtuneError(f"--params must be at least 1 (got {params_per_tensor})")
    if batch_size < 1:
        raise GradtuneError(f"--batch must be at least 1 (got {batch_size})")
    if not (eps > 0 and math.isfinite(eps)):
        raise GradtuneError(f"--eps must be > 0 (got {eps:g})")
    if not (tol > 0 and math.isfinite(tol)):
        raise GradtuneError(f"--tol must be > 0 (got {tol:g})")
    cfg = as_config(config, overrides)
    with tempfile.TemporaryDirectory(prefix="gradtune-gradcheck-") as scratch:
        job = prepare(cfg, Path(scratch))  # a throw-away run dir: nothing reaches cfg.output_dir
    model = job.model.double().eval()
    batch = next(pieces(next(iter(job.train_loader)), batch_size))  # padding trimmed to the piece
    n, units = len(batch["labels"]), job.task.loss_units(batch["labels"])

    def loss() -> torch.Tensor:
        # J(θ) as the training step computes it for one step of n examples (causal_lm: over their target tokens)
        return piece_loss(model, batch, job.loss_fn, units)

    # the rows of each embedding matrix the batch looks up: the others get exactly zero gradient
    # by construction (a word not in the batch), so sampling them would compare 0 with 0 and
    # prove nothing; entries of the used rows are what backward really computes
    used: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            def record(mod: nn.Module, args: tuple, key: str = f"{name}.weight" if name else "weight") -> None:
                rows = args[0].detach().reshape(-1).unique()
                used[key] = rows if key not in used else torch.cat([used[key], rows]).unique()
            hooks.append(module.register_forward_pre_hook(record))
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise GradtuneError("the model has no trainable parameters: nothing to check")
    value = loss()
    for hook in hooks:
        hook.remove()
    if not torch.isfinite(value):
        raise GradtuneError(f"the loss on the first batch is {float(value)}: check the data and the model")
    grads = torch.autograd.grad(value, [p for _, p in params], allow_unused=True)

    generator = torch.Generator().manual_seed(seed)
    rows = []
    with torch.no_grad():
        for (name, p), grad in zip(params, grads):
            grad = torch.zeros_like(p) if grad is None else grad
            candidates = torch.arange(p.numel())
            if name in used and p.dim() == 2:
                width = p.shape[1]
                candidates = (used[name][:, None] * width + torch.arange(width)).reshape(-1)
            k = min(params_per_tensor, len(candidates))
            chosen = candidates[torch.randperm(len(candidates), generator=generator)[:k]]
            flat, flat_grad = p.data.view(-1), grad.reshape(-1)
            worst = (-1.0, 0, 0.0, 0.0)
            failed = limited = False
            for index in chosen.tolist():
                original = flat[index].item()
                flat[index] = original + eps
                plus = float(loss())
                flat[index] = original - eps
                minus = float(loss())
                flat[index] = original  # restored exactly, not by adding eps back
                numeric = (plus - minus) / (2 * eps)
                analytic = float(flat_grad[index])
                error = rel_error(analytic, numeric)
                if not math.isfinite(error):
                    error = math.inf
                resolution = ROUNDOFF_ULPS * 2.0**-52 * max(abs(plus), abs(minus)) / (2 * eps)
                if error > tol:
                    if abs(analytic - numeric) <= resolution:
                        limited = True
                    else:
                        failed = True
                if error > worst[0]:
                    worst = (error, index, analytic, numeric)
            error, index, analytic, numeric = worst
            where = tuple(int(i) for i in torch.unravel_index(torch.tensor(index), p.shape)) if p.dim() else ()
            rows.append(GradcheckRow(name, tuple(p.shape), k, error, not failed, limited and not failed,
                                     where, analytic, numeric))

    passed = all(r.ok for r in rows)
    notes = []
    if any(r.roundoff_limited for r in rows):
        notes.append("ok (round-off): the gradient there is so small that the finite difference's round-off "
                     "(~1e-10 at eps 1e-6) is above tol relative to it; autograd and the difference agree "
                     "within that noise")
    if not passed and any(isinstance(m, NON_SMOOTH) for m in model.modules()):
        notes.append("the model has non-smooth activations (relu): an entry whose ±eps step crosses a "
                     "kink gives a difference quotient that disagrees with the one-sided gradient. "
                     "If only a few entries fail, rerun with another --eps; errors of order 1 on many "
                     "entries are a real backward bug")
    return GradcheckReport(rows, passed, tol, eps, n, value.item(), notes)
