"""The learning-rate range test (Leslie Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017; fastai's `lr_find`): train a throw-away copy of the model for a few steps while
the learning rate grows exponentially from tiny to huge, and watch the loss. It first stays flat
(lr too small to move), then falls (lr useful), then blows up (lr too large). A good peak lr is
where the loss falls fastest.

Nothing of the user's run is touched: the model is loaded fresh by `prepare`, and only
`lr_find.csv` and `lr_find.png` are written (to `<output_dir>/lr_find/` unless told otherwise).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradtune.config import Config, as_config
from gradtune.errors import GradtuneError
from gradtune.folders import FolderLock
from gradtune.tracking.console import log, progress_bar
from gradtune.training.optim import build_optimizer, step_plan
from gradtune.training.prepare import Job, prepare
from gradtune.training.step import make_accelerator, pieces, train_step

BETA = 0.98  # loss smoothing: one step's loss is too noisy to compare learning rates
DIVERGE = 4.0  # stop once the smoothed loss is this many times its best: the lr is far too large


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # raw loss of each step
    smoothed: list[float]  # exponentially smoothed, bias-corrected
    suggestion: float
    csv_path: Path
    png_path: Path


def find_lr(
    config: Config | dict | str | Path, overrides: list[str] | None = None, *, start_lr: float = 1e-7,
    end_lr: float = 10.0, steps: int = 100, output: str | Path | None = None,
) -> LRFindResult:
    """Run the range test on a fresh copy of the config's model; write the csv and the plot."""
    if not (start_lr > 0 and end_lr > 0):
        raise GradtuneError(f"--start-lr and --end-lr must be > 0 (got {start_lr:g} and {end_lr:g})")
    if start_lr >= end_lr:
        raise GradtuneError(f"--start-lr ({start_lr:g}) must be smaller than --end-lr ({end_lr:g})")
    if steps < 10:
        raise GradtuneError(f"--steps must be at least 10 (got {steps}): fewer points cannot show a trend")
    cfg = as_config(config, overrides)
    out_dir = Path(output) if output is not None else Path(cfg.output_dir) / "lr_find"
    with FolderLock(out_dir, "--output", log.warning):  # one lr-find per folder; checks it can be written
        job = prepare(cfg, out_dir)  # nothing is saved from this job: only the files below
        lrs, losses, smoothed = range_test(job, start_lr, end_lr, steps)
        return _write(out_dir, lrs, losses, smoothed)


def _write(out_dir: Path, lrs: list[float], losses: list[float], smoothed: list[float]) -> LRFindResult:
    """The suggestion, lr_find.csv and lr_find.png."""
    suggestion = suggest_lr(lrs, smoothed)
    # no real descent (< 5%): no lr of the range trained the model, and the suggestion is noise
    counted = [v for v in smoothed if math.isfinite(v)][len(smoothed) // 10 :]
    if min(counted) > 0.95 * counted[0]:
        log.warning("The loss hardly fell during the test, so the suggestion is a guess: "
                    "try more --steps or a narrower --start-lr/--end-lr range")
    csv_path, png_path = out_dir / "lr_find.csv", out_dir / "lr_find.png"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lr", "loss", "smoothed_loss"])
        writer.writerows(zip(lrs, losses, smoothed))
    plot(png_path, lrs, smoothed, suggestion)
    return LRFindResult(lrs, losses, smoothed, suggestion, csv_path, png_path)


def cycle(loader: Any, sampler: Any) -> Iterator[dict]:
    """Loader batches without end: a small data set is gone through again, reshuffled."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def range_test(job: Job, start_lr: float, end_lr: float, steps: int) -> tuple[list[float], ...]:
    """One optimizer update per learning rate, made as `loop.fit` makes it (the same `train_step`:
    optimizer, loss, accumulation, micro-batches and clipping) but with the lr set by us: no
    schedule and no warmup, the test itself is the schedule."""
    cfg = job.cfg.train
    accelerator = make_accelerator(cfg.precision)
    if cfg.precision == "fp64":
        job.model.double()
    plan = step_plan(cfg)
    sampler = job.train_loader.batch_sampler
    optimizer = build_optimizer(job.model, cfg)  # the config's optimizer: its best lr is what we want
    model, optimizer, loader = accelerator.prepare(job.model, optimizer, job.train_loader)
    per_step = plan.accumulate or len(loader)  # loader batches per update (gd_mode=batch: all)
    batches = cycle(loader, sampler)
    model.train()
    lrs, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    with progress_bar(cfg.progress and accelerator.is_main_process) as bar:
        task = bar.add_task("lr-find", total=steps, status="")
        for i in range(steps):
            lr = start_lr * (end_lr / start_lr) ** (i / (steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            micro = [piece for _ in range(per_step) for piece in pieces(next(batches), plan.micro_batch)]
            step = train_step(model, micro, job.loss_fn, job.task.loss_units, accelerator, cfg.max_grad_norm,
                              cfg.clip_value)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            average = BETA * average + (1 - BETA) * step.loss
            smooth = average / (1 - BETA ** (i + 1))  # bias correction: the average starts at 0
            lrs.append(lr)
            losses.append(step.loss)
            smoothed.append(smooth)
            bar.update(task, completed=i + 1, status=f"lr {lr:.1e}  loss {smooth:.4f}")
            if not math.isfinite(smooth) or smooth > DIVERGE * best:
                break  # diverged: larger learning rates only say the same, slower
            best = min(best, smooth)
    return lrs, losses, smoothed


def suggest_lr(lrs: list[float], smoothed: list[float]) -> float:
    """Steepest descent (fastai's "steep"): the lr where the smoothed loss falls fastest per
    decade of lr, i.e. the most negative slope of the loss against log10(lr)."""
    finite = [(lr, s) for lr, s in zip(lrs, smoothed) if math.isfinite(s)]
    if not finite:
        raise GradtuneError(f"the loss was not finite even at lr {lrs[0]:g}: check the data and the model")
    points = finite[len(finite) // 10 :]  # the first points are noisy: few losses averaged yet
    # the descent ends at the lowest loss: past it the lr already hurts, and the loss swings
    # there would give the steepest (meaningless) slopes
    bottom = min(range(len(points)), key=lambda i: points[i][1])
    if bottom < 3:  # too short a descent to take a slope: a decade below the minimum (fastai's old rule)
        return max(points[bottom][0] / 10, lrs[0])
    slope = np.gradient([s for _, s in points], [math.log10(lr) for lr, _ in points])
    return float(points[int(np.argmin(slope[:bottom]))][0])


def plot(path: Path, lrs: list[float], smoothed: list[float], suggestion: float) -> None:
    # Figure + Agg canvas, not pyplot: no global backend switch, no window, works headless
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax: Any = fig.add_subplot()
    ax.plot(lrs, smoothed)
    ax.set_xscale("log")
    finite = [(math.log10(lr), s) for lr, s in zip(lrs, smoothed) if math.isfinite(s)]
    at = float(np.interp(math.log10(suggestion), *zip(*finite)))  # the curve's height there
    ax.plot([suggestion], [at], "o", color="red", label=f"suggestion {suggestion:.1e}")
    ax.legend()
    # the blow-up at the end would squash the part that matters: cap at twice the starting loss
    losses = [s for _, s in finite]
    ax.set_ylim(min(losses) - 0.05 * abs(min(losses)), min(max(losses), 2 * losses[0]) * 1.02)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title("learning-rate range test")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
