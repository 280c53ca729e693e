"""`gradtune plan`: what a run will cost, found before it starts by doing a little of it.

The config is prepared exactly as `gradtune train` prepares it (the same data, tokenizer, length
grouping, packing, model and strategy), then:

- the shapes are counted, not estimated: every loader batch of every epoch is laid out from the
  examples' token counts and the real batch sampler, cut into the loop's micro-batches, so tokens,
  padding and steps are those training will see;
- the cost is measured: a few real optimizer steps (train_step, optimizer, scheduler) run on real
  batches picked across the batch sizes in padded tokens (the smallest, the median, the largest
  ...), after a warm-up; the seconds of every batch of the run are read off the line through those
  points (`Curve`); evaluation batches are timed the same way with the task's own `evaluate`;
  one real checkpoint and one model/ folder are written to a temporary folder, timed and sized;
- the memory is the plan process's own peak RSS, which has gone through the largest batch, an
  evaluation and a checkpoint, as the training process will.

Alternatives (budget.py) reuse the measured costs through `estimate` with other settings.
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

MB = 1024 * 1024


@dataclass
class Curve:
    """Seconds of one batch by its padded tokens: straight lines through the measured points (sorted,
    non-decreasing); outside them, the line through the first and the last point continues (below the
    first point never under proportional to it)."""

    points: list[tuple[float, float]]

    def __call__(self, x: float) -> float:
        pts = self.points
        (x0, y0), (xn, yn) = pts[0], pts[-1]
        slope = (yn - y0) / (xn - x0) if xn > x0 else 0.0
        if x <= x0:
            return max(y0 - slope * (x0 - x), y0 * x / max(x0, 1e-9), 0.0)
        if x >= xn:
            return yn + slope * (x - xn)
        i = next(k for k in range(1, len(pts)) if x <= pts[k][0])
        (xa, ya), (xb, yb) = pts[i - 1], pts[i]
        return ya + (yb - ya) * (x - xa) / (xb - xa)


@dataclass
class Layout:
    """What the data looks like to the loop: token counts of the training and evaluation examples and
    how the loop batches them."""

    train_lengths: list[int]
    val_lengths: list[int] | None
    batch_size: int  # examples per loader batch
    micro_batch: int
    accumulate: int | None  # loader batches per update (None: the whole epoch)
    eval_batch: int
    seed: int
    trim: bool  # pieces are cut to their own longest example (an attention mask is present)


def loader_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    """The index lists the real sampler yields for this epoch."""
    from gradtune.data.batching import LengthGroupedBatchSampler

    sampler = LengthGroupedBatchSampler(lengths, batch_size, seed, shuffle)
    sampler.set_epoch(epoch)
    return list(sampler)


def piece_tokens(lengths: list[int], batch: list[int], micro: int, trim: bool, cut: int | None = None) -> list[int]:
    """Tokens the model computes (padding included) for each piece of one loader batch, as
    step.pieces cuts it: `micro` examples, each piece padded to its own longest when `trim` (else to
    the batch's longest); `cut`: lengths truncated to this many tokens."""
    ls = [min(lengths[i], cut) if cut else lengths[i] for i in batch]
    width = max(ls)
    return [len(ls[s : s + micro]) * (max(ls[s : s + micro]) if trim else width) for s in range(0, len(ls), micro)]


def padded_tokens(lengths: list[int], batch: list[int], micro: int, trim: bool, cut: int | None = None) -> int:
    """Tokens the model computes for one loader batch, padding included."""
    return sum(piece_tokens(lengths, batch, micro, trim, cut))


@dataclass
class Measured:
    """What was timed and weighed on this machine (seconds, MB)."""

    train: Curve  # forward + backward + clip of one loader batch
    update: float  # optimizer.step + scheduler.step + zero_grad, per update
    probe: float  # the gradient-health probe of a logged step (per-layer norms, weight snapshot)
    first_step_extra: float  # the first step's one-time cost (allocation, kernel selection)
    eval: Curve | None  # task.evaluate on one batch
    setup_seconds: float  # prepare(): read, tokenize, build the model
    checkpoint_seconds: float
    model_save_seconds: float
    checkpoint_mb: float
    model_mb: float
    peak_mb: float  # this process's peak RSS at the end
    train_peak_mb: float  # ... after the training steps
    before_steps_mb: float  # RSS before the first step
    largest_piece: int  # padded tokens of the largest piece timed (one forward/backward)
    state_mb: float  # gradients + optimizer state
    timed_steps: int
    timed_eval_batches: int


@dataclass
class Estimate:
    """A run's cost under some settings (seconds unless named)."""

    steps_per_epoch: int
    total_steps: int
    tokens_per_epoch: int
    padded_tokens_per_epoch: int
    seconds_per_step: float
    epoch_seconds: float
    train_seconds: float
    evaluations: int
    eval_seconds: float  # all evaluations
    checkpoints: int
    run_seconds: float  # setup + training + evaluations + checkpoints + model saves
    peak_memory_mb: float


def count_due(every: int | str, total_steps: int, steps_per_epoch: int) -> int:
    """How many of the run's steps evaluate (or checkpoint): due by step count or epoch, and the last."""
    return sum(1 for s in range(1, total_steps + 1)
               if (s % steps_per_epoch == 0 if every == "epoch" else s % int(every) == 0) or s == total_steps)


def estimate(layout: Layout, m: Measured, t: Any, *, epochs: float | None = None, max_length: int | None = None,
             batch_size: int | None = None, micro_batch: int | None = None, rows: float = 1.0,
             train_factor: float = 1.0, update_factor: float = 1.0, saved_mb: float = 0.0) -> Estimate:
    """The run's cost from the measured costs, under the config's settings (`t`: its train section) or
    other ones: `max_length` truncates the examples, `rows` keeps that fraction of the training rows,
    `train_factor` / `update_factor` scale a step's compute / optimizer time (another strategy),
    `saved_mb` is memory another strategy saves (gradients, optimizer state)."""
    epochs = t.epochs if epochs is None else epochs
    bs = batch_size or layout.batch_size
    # the config's micro-batches, if it has any, else the whole batch at once; another micro-batch size
    # changes the memory (the activations of one piece), not the time, which is taken as it is now
    micro = min(layout.micro_batch, bs) if layout.micro_batch < layout.batch_size else bs
    memory_micro = min(micro_batch, bs) if micro_batch else micro
    lengths = layout.train_lengths
    if rows < 1.0:
        lengths = lengths[: max(1, int(len(lengths) * rows))]
    n_epochs = max(1, math.ceil(epochs))
    per_epoch: list[list[float]] = []  # each epoch's batches, in padded tokens (a few epochs, then repeated)
    largest_piece = 0  # the most tokens one forward/backward holds: what the activations scale with
    for e in range(min(n_epochs, 3)):
        epoch_batches = loader_batches(lengths, bs, layout.seed, e)
        per_epoch.append([padded_tokens(lengths, b, micro, layout.trim, max_length) for b in epoch_batches])
        largest_piece = max([largest_piece, *(max(piece_tokens(lengths, b, memory_micro, layout.trim, max_length))
                                              for b in epoch_batches)])
    batches = len(per_epoch[0])
    acc = layout.accumulate
    steps_per_epoch = 1 if acc is None else math.ceil(batches / acc)
    total = t.max_steps or math.ceil(epochs * steps_per_epoch)
    train_seconds, step = m.first_step_extra, 0
    for e in range(n_epochs):
        xs = per_epoch[e % len(per_epoch)]
        groups = [xs] if acc is None else [xs[i : i + acc] for i in range(0, len(xs), acc)]
        for group in groups:
            if step >= total:
                break
            train_seconds += train_factor * sum(m.train(x) for x in group) + update_factor * m.update
            step += 1
    train_seconds += (total // t.log_every) * m.probe * update_factor
    evaluations = count_due(t.eval_every, total, steps_per_epoch) if layout.val_lengths is not None else 0
    one_eval = 0.0
    if layout.val_lengths is not None and m.eval is not None:
        eval_batches = loader_batches(layout.val_lengths, layout.eval_batch, layout.seed, 0, shuffle=False)
        one_eval = sum(m.eval(padded_tokens(layout.val_lengths, b, len(b), False, max_length)) for b in eval_batches)
    checkpoints = count_due(t.save_every, total, steps_per_epoch)
    model_saves = max(evaluations, 1)  # at most one per evaluation (a new best); one at the end without any
    run_seconds = (m.setup_seconds + train_seconds + evaluations * one_eval + checkpoints * m.checkpoint_seconds
                   + model_saves * m.model_save_seconds)
    activations = max(0.0, m.train_peak_mb - m.before_steps_mb - m.state_mb)
    train_peak = m.train_peak_mb - activations * max(0.0, 1 - largest_piece / m.largest_piece) - saved_mb
    peak = max(train_peak, m.peak_mb - saved_mb) if m.peak_mb > m.train_peak_mb else train_peak
    tokens = sum(min(x, max_length) if max_length else x for x in lengths)
    return Estimate(
        steps_per_epoch=steps_per_epoch, total_steps=total, tokens_per_epoch=tokens,
        padded_tokens_per_epoch=int(sum(per_epoch[0])), seconds_per_step=train_seconds / max(total, 1),
        epoch_seconds=train_seconds * steps_per_epoch / max(total, 1), train_seconds=train_seconds,
        evaluations=evaluations, eval_seconds=evaluations * one_eval, checkpoints=checkpoints,
        run_seconds=run_seconds, peak_memory_mb=peak,
    )


@dataclass
class Plan:
    """A prepared config's measured costs and its estimate, with what alternatives need."""

    cfg: Any
    layout: Layout
    measured: Measured
    estimate: Estimate
    parameters: dict[str, Any]
    model_info: dict[str, Any] = field(default_factory=dict)  # what budget.py's strategy estimates read

    def as_dict(self) -> dict[str, Any]:
        e, m = self.estimate, self.measured
        padding = 1 - e.tokens_per_epoch / max(e.padded_tokens_per_epoch, 1)
        return {
            "train_seconds": round(e.train_seconds, 2), "tokens_per_epoch": e.tokens_per_epoch,
            "peak_memory_mb": round(e.peak_memory_mb, 1),
            "padded_tokens_per_epoch": e.padded_tokens_per_epoch, "padding_percent": round(100 * padding, 1),
            "examples": len(self.layout.train_lengths), "epochs": self.cfg.train.epochs,
            "steps_per_epoch": e.steps_per_epoch, "total_steps": e.total_steps,
            "seconds_per_step": round(e.seconds_per_step, 4), "epoch_seconds": round(e.epoch_seconds, 2),
            "evaluations": e.evaluations, "eval_seconds": round(e.eval_seconds, 2), "checkpoints": e.checkpoints,
            "setup_seconds": round(m.setup_seconds, 2), "run_seconds": round(e.run_seconds, 2),
            "checkpoint_mb": round(m.checkpoint_mb, 2), "model_mb": round(m.model_mb, 2),
            "parameters": self.parameters["total"], "trainable_parameters": self.parameters["trainable"],
            "measured": {"timed_steps": m.timed_steps, "timed_eval_batches": m.timed_eval_batches,
                         "train_batch_seconds": [[x, round(y, 5)] for x, y in m.train.points],
                         "update_seconds": round(m.update, 5), "checkpoint_seconds": round(m.checkpoint_seconds, 3),
                         "model_save_seconds": round(m.model_save_seconds, 3)},
        }


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def rss_mb() -> float:
    import psutil  # accelerate's dependency

    return psutil.Process().memory_info().rss / MB


def timed(fn: Any, min_seconds: float, max_reps: int = 5) -> float:
    """Seconds of one call: repeated until `min_seconds` were spent (at most `max_reps`); the first
    call of a new shape pays one-time costs, so with repeats it is left out."""
    times: list[float] = []
    while not times or (sum(times) < min_seconds and len(times) < max_reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:] if len(times) > 1 else times)


def spread(items: list[Any], key: Any, count: int) -> list[Any]:
    """`count` items across the range of key(item): the smallest, the largest, and between."""
    ranked = sorted(items, key=key)
    picks = sorted({round(i * (len(ranked) - 1) / max(count - 1, 1)) for i in range(count)})
    return [ranked[i] for i in picks]


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / MB


def make_plan(config: Any, overrides: list[str] | None = None, *, samples: int = 5,
              min_seconds: float = 0.3) -> Plan:
    """Prepare the config as training does, time a few steps, evaluations and one checkpoint, and
    estimate the whole run. Nothing is written outside a temporary folder."""
    from gradtune.config import as_config
    from gradtune.training.prepare import prepare

    cfg = as_config(config, overrides)
    with tempfile.TemporaryDirectory(prefix="gradtune-plan-") as tmp:
        started = time.perf_counter()
        job = prepare(cfg, Path(tmp) / "run")
        setup = time.perf_counter() - started
        return _measure(job, setup, Path(tmp), samples, min_seconds)


def _measure(job: Any, setup: float, tmp: Path, samples: int, min_seconds: float) -> Plan:
    from gradtune.rundir import RunDir, write_model_dir
    from gradtune.tracking.gradient_health import GradientHealth
    from gradtune.training.checkpoint import save_checkpoint
    from gradtune.training.optim import build_optimizer, build_scheduler, step_plan
    from gradtune.training.step import make_accelerator, pieces, train_step
    from gradtune.training.strategies.adapters import save_model

    cfg, t = job.cfg, job.cfg.train
    plan = step_plan(t)
    accelerator = make_accelerator(t.precision, compile=t.compile)  # as loop.fit makes it
    if t.precision == "fp64":
        job.model.double()
    optimizer = build_optimizer(job.model, t, accelerator.device.type)
    model, optimizer = accelerator.prepare(job.model, optimizer)
    scheduler = build_scheduler(optimizer, t, 10**6)
    loader: DataLoader = job.train_loader
    lengths = list(loader.batch_sampler.lengths)

    def collate(source: DataLoader, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = source.collate_fn([source.dataset[i] for i in indices])
        return {k: v.to(accelerator.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    first = collate(loader, loader_batches(lengths, plan.loader_batch, t.seed, 0)[0])
    trim = "attention_mask" in first
    val = job.val_loader
    layout = Layout(lengths, list(val.batch_sampler.lengths) if val is not None else None, plan.loader_batch,
                    plan.micro_batch, plan.accumulate, val.batch_sampler.batch_size if val is not None else 1,
                    t.seed, trim)
    epoch0 = loader_batches(lengths, plan.loader_batch, t.seed, 0)
    sized = [(padded_tokens(lengths, b, plan.micro_batch, trim), b) for b in epoch0]

    def fwd_bwd(batch: dict[str, torch.Tensor]) -> None:
        train_step(model, list(pieces(batch, plan.micro_batch)), job.loss_fn, job.task.loss_units, accelerator,
                   t.max_grad_norm, t.clip_value)

    def update() -> None:
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    before = rss_mb()
    # warm-up: the largest batch first (its memory, the optimizer state), then the median one
    picks = spread(sized, key=lambda s: s[0], count=samples)
    largest, median = picks[-1], picks[len(picks) // 2]
    batch = collate(loader, largest[1])
    start = time.perf_counter()
    fwd_bwd(batch)
    update()
    first_step = time.perf_counter() - start
    fwd_bwd(collate(loader, median[1]))
    update()
    points, updates = [], []
    for x, indices in picks:
        batch = collate(loader, indices)
        seconds = timed(lambda: fwd_bwd(batch), min_seconds)  # noqa: B023 (called right here)
        start = time.perf_counter()
        update()
        updates.append(time.perf_counter() - start)
        points.append((float(x), seconds))
    train_curve = Curve(_merge(points))
    update_seconds = statistics.median(updates)
    first_extra = max(0.0, first_step - train_curve(largest[0]) - update_seconds)
    fwd_bwd(collate(loader, median[1]))  # gradients present, as when the loop probes
    health = GradientHealth(accelerator.unwrap_model(model), lambda message: None)
    probe = timed(lambda: (health.grad_norms(), health.snapshot()), min_seconds / 3)
    optimizer.zero_grad(set_to_none=True)
    train_peak = peak_rss_mb()
    state = _state_mb(model, optimizer)

    eval_curve, eval_count = None, 0
    if val is not None:
        eval_batches = loader_batches(layout.val_lengths, layout.eval_batch, t.seed, 0, shuffle=False)
        eval_sized = [(padded_tokens(layout.val_lengths, b, len(b), False), b) for b in eval_batches]
        eval_points = []
        for x, indices in spread(eval_sized, key=lambda s: s[0], count=min(samples, 3)):
            one = DataLoader(val.dataset, batch_sampler=[indices], collate_fn=val.collate_fn)
            eval_points.append((float(x), timed(lambda: job.task.evaluate(model, one, accelerator, job.metadata),  # noqa: B023
                                                min_seconds)))
        eval_curve, eval_count = Curve(_merge(eval_points)), len(eval_points)

    run = RunDir(tmp / "run")
    start = time.perf_counter()
    folder = save_checkpoint(run, accelerator.unwrap_model(model), optimizer, scheduler, {"step": 1}, 1)
    checkpoint_seconds = time.perf_counter() - start
    unwrapped = accelerator.unwrap_model(model)
    start = time.perf_counter()
    write_model_dir(run.model, lambda f: save_model(unwrapped, f, job.metadata), job.tokenizer, job.metadata)
    model_seconds = time.perf_counter() - start
    measured = Measured(
        train=train_curve, update=update_seconds, probe=probe, first_step_extra=first_extra, eval=eval_curve,
        setup_seconds=setup, checkpoint_seconds=checkpoint_seconds, model_save_seconds=model_seconds,
        checkpoint_mb=folder_mb(folder), model_mb=folder_mb(run.model), peak_mb=peak_rss_mb(),
        train_peak_mb=train_peak, before_steps_mb=before, state_mb=state,
        largest_piece=max(max(piece_tokens(lengths, b, plan.micro_batch, trim)) for _, b in picks),
        timed_steps=len(points), timed_eval_batches=eval_count)
    return Plan(cfg, layout, measured, estimate(layout, measured, t), job.metadata["parameters"],
                _model_info(job, unwrapped))


def _merge(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points sorted by x, one per x (the median of its times), made non-decreasing: a batch of more
    tokens never costs less, so timing noise that says so is pooled with its neighbours (isotonic
    regression, pool adjacent violators)."""
    by_x: dict[float, list[float]] = {}
    for x, y in points:
        by_x.setdefault(x, []).append(y)
    blocks: list[list[float]] = []  # [sum of y, count, first index]
    xs = sorted(by_x)
    for i, x in enumerate(xs):
        blocks.append([statistics.median(by_x[x]), 1, i])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count, _ = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    ys: list[float] = []
    for total, count, _ in blocks:
        ys += [total / count] * int(count)
    return list(zip(xs, ys))


def _state_mb(model: torch.nn.Module, optimizer: Any) -> float:
    """Gradients (one per trainable weight) and the optimizer's state tensors, in MB."""
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    state = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                if isinstance(v, torch.Tensor))
    return (grads + state) / MB


def _model_info(job: Any, model: torch.nn.Module) -> dict[str, Any]:
    """What budget.py needs to estimate other strategies: whether the model is pretrained (a
    from-scratch family has no LoRA or head-only alternative worth suggesting), the trainable bytes."""
    from gradtune import models

    return {"scratch": models.family(job.cfg.model.name) is not None, "task": job.cfg.task,
            "trainable_mb": sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad) / MB,
            "model": model}


__all__ = ["Plan", "Measured", "Estimate", "Layout", "Curve", "make_plan", "estimate"]
