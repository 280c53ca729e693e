"""THE training loop. Read it top to bottom: for each optimizer step,

    forward -> loss -> backward (for each piece of the step) -> clip -> optimizer step -> scheduler step -> zero_grad

which is gradient descent, theta <- theta - lr * grad J(theta), with the optimizer deciding how the
gradient becomes a step. `train.gd_mode` decides how many examples one step sees: batch_size
(mini-batch), one (stochastic) or all of them (batch). Around it: evaluation, best-model keeping,
early stopping, checkpoints, gradient health. `accelerate` only places tensors on devices and
syncs processes; every step is written out here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from gradtune.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, save_model_dir
from gradtune.data import row_location
from gradtune.errors import GradtuneError
from gradtune.monitor import GradientHealth, MetricsLog, StopOnInterrupt, console, progress_bar
from gradtune.optim import build_optimizer, build_scheduler, step_plan


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resume continues exactly here."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    skipped_steps: int = 0
    finished: bool = False
    last_eval: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """Everything the loop needs, built by `gradtune.api.prepare`."""

    cfg: Any  # gradtune.config.Config
    task: ModuleType
    model: torch.nn.Module
    tokenizer: Any
    train_loader: DataLoader
    val_loader: DataLoader | None
    run_dir: Path
    metadata: dict[str, Any]
    resume_from: Path | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # summed loss


def mixed_precision(choice: str) -> str:
    """bf16 only where the hardware does it fast: on a CPU without AMX it is ~400x slower."""
    if choice in ("fp32", "fp64") or (choice == "auto" and not torch.cuda.is_available()):
        return "no"
    if choice == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return choice


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k not in ("labels", "_row")}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader: DataLoader, task: ModuleType, accelerator: Accelerator, meta: dict
) -> dict:
    """Streamed evaluation: per batch, update the task's metrics and a loss sum; never keep the
    logits. `meta` is the run's gradtune.json (label names, target scale)."""
    was_training = model.training
    model.eval()
    metrics = task.make_metrics(meta).to(accelerator.device)
    units = task.loss_units
    loss_total, examples = 0.0, 0  # examples: what the loss is averaged over (causal_lm: tokens)
    for batch in loader:
        logits = model(**model_inputs(batch)).logits
        logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
        loss_total += float(task.eval_loss_sum(logits, labels, meta))
        examples += units(labels)
        task.update_metrics(metrics, logits, labels, meta)
    model.train(was_training)
    result = task.finish_metrics(metrics.compute())
    result["loss"] = round(loss_total / max(examples, 1), 6)
    return result


def update_groups(batches: Iterable[dict], accumulate: int | None) -> Iterator[list[dict]]:
    """Loader batches grouped into optimizer steps (None: the whole epoch is one step)."""
    group: list[dict] = []
    for batch in batches:
        group.append(batch)
        if accumulate is not None and len(group) == accumulate:
            yield group
            group = []
    if group:
        yield group


def pieces(batch: dict[str, torch.Tensor], size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Cut a batch into micro-batches of `size` examples, trimming padding each no longer needs."""
    n = len(batch["labels"])
    for start in range(0, n, size):
        piece = {k: v[start : start + size] for k, v in batch.items()}
        if "attention_mask" in piece:
            width = int(piece["attention_mask"].sum(dim=1).max())
            piece = {k: v[:, :width] if v.dim() == 2 and k != "labels" else v for k, v in piece.items()}
        yield piece


def _due(every: int | str, step: int, end_of_epoch: bool) -> bool:
    return end_of_epoch if every == "epoch" else step % int(every) == 0


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    return best is None or (value > best + min_delta if mode == "max" else value < best - min_delta)


def fit(job: Job) -> Progress:
    cfg = job.cfg.train
    # cpu=True on a machine without a GPU: only then does accelerate see torchrun's processes (MULTI_CPU)
    accelerator = Accelerator(mixed_precision=mixed_precision(cfg.precision), cpu=not torch.cuda.is_available())
    say = console.print if accelerator.is_main_process else (lambda *a, **k: None)
    if cfg.precision == "fp64":
        job.model.double()
    sampler = job.train_loader.batch_sampler  # ours: reshuffled per epoch by set_epoch()
    loss_fn = job.loss_fn or job.task.loss_sum
    units = job.task.loss_units
    plan = step_plan(cfg)
    optimizer = build_optimizer(job.model, cfg)
    model, optimizer, train_loader = accelerator.prepare(job.model, optimizer, job.train_loader)
    val_loader = accelerator.prepare(job.val_loader) if job.val_loader is not None else None
    loader_batches = len(train_loader)
    steps_per_epoch = plan.updates_per_epoch(loader_batches)
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
    mode = cfg.metric_mode if cfg.metric_mode != "auto" else job.task.metric_mode(cfg.metric)
    # stepped by us once per optimizer step (not handed to accelerate, which would step it
    # once per process)
    scheduler = build_scheduler(optimizer, cfg, total_steps, mode)
    health = GradientHealth(accelerator.unwrap_model(model), say)

    progress = Progress()
    if job.resume_from is not None:
        saved = load_checkpoint(job.resume_from, accelerator.unwrap_model(model), optimizer, scheduler)
        progress = Progress(**saved)
        say(f"Resuming from {job.resume_from} (step {progress.step}, epoch {progress.epoch})")
    log = MetricsLog(job.run_dir / "metrics.jsonl", progress.step if job.resume_from else None,
                     enabled=accelerator.is_main_process)
    if job.resume_from is None and "parameters" in job.metadata:  # what trains: the strategy's share
        log.write({"kind": "setup", "step": 0, "strategy": job.cfg.strategy.method, **job.metadata["parameters"]})

    def mean_over_processes(value: float) -> float:
        if accelerator.num_processes == 1:
            return value
        return float(accelerator.reduce(torch.tensor(value), "mean"))

    def checkpoint() -> None:
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            save_checkpoint(job.run_dir, unwrapped, optimizer, scheduler, asdict(progress), cfg.keep_checkpoints)
        accelerator.wait_for_everyone()

    def save_best() -> None:
        if accelerator.is_main_process:
            meta = {**job.metadata, "step": progress.step, "metrics": progress.last_eval}
            save_model_dir(job.run_dir / "model", accelerator.unwrap_model(model), job.tokenizer, meta)
        accelerator.wait_for_everyone()

    def run_evaluation() -> bool:
        """Evaluate, keep the best model, and say whether early stopping should end training."""
        result = evaluate(model, val_loader, job.task, accelerator, job.metadata)
        progress.last_eval = result
        value = result[cfg.metric]
        if hasattr(scheduler, "observe"):  # the plateau schedule reacts to the validation metric
            scheduler.observe(value)
        best = _improved(value, progress.best_metric, mode, cfg.early_stopping_min_delta)
        log.write({"kind": "eval", "step": progress.step, "epoch": round(progress.step / steps_per_epoch, 4),
                   "elapsed": round(progress.train_seconds, 3),
                   **{k: v for k, v in result.items() if k != "confusion_matrix"}})
        shown = "  ".join(f"{k} {result[k]:.4f}" for k in dict.fromkeys([cfg.metric, *job.task.SHOWN_METRICS])
                          if k in result)  # tabular shows regression's or classification's
        say(f"step {progress.step}: {shown}" + ("  [green](best)" if best else ""))
        if best:
            progress.best_metric, progress.best_step = value, progress.step
            progress.evals_without_improvement = 0
            save_best()
            return False
        progress.evals_without_improvement += 1
        patience = cfg.early_stopping_patience
        return patience is not None and progress.evals_without_improvement >= patience

    def non_finite(what: str, group: list[dict]) -> None:
        rows = sorted(int(r) for batch in group for r in batch["_row"])
        where = ", ".join(row_location(job.cfg.data.train, r) for r in rows[:8]) + (" ..." if len(rows) > 8 else "")
        last = list_checkpoints(job.run_dir)
        raise GradtuneError(
            f"non-finite {what} at step {progress.step + 1} (lr {scheduler.get_last_lr()[0]:.3g}); the batch holds "
            f"{job.cfg.data.train} {where}. Training stopped; the last good checkpoint is "
            f"{last[-1] if last else 'none (no checkpoint was saved yet)'}. Lower train.lr, set "
            "train.max_grad_norm, check those rows, or set train.on_nonfinite=skip."
        )

    model.train()
    window = {"loss": 0.0, "steps": 0, "samples": 0, "start": time.perf_counter()}
    with StopOnInterrupt() as interrupt, progress_bar(cfg.progress and accelerator.is_main_process) as bar:
        task_bar = bar.add_task("train", total=total_steps, completed=progress.step, status="")
        while progress.step < total_steps and not progress.finished and not interrupt.requested:
            sampler.set_epoch(progress.epoch)
            batches = accelerator.skip_first_batches(train_loader, progress.batch_in_epoch)
            for group in update_groups(batches, plan.accumulate):
                started = time.perf_counter()
                micro = [piece for batch in group for piece in pieces(batch, plan.micro_batch)]
                # normalise by every example (causal_lm: target token) of the step, not per piece:
                # the summed pieces then give exactly the gradient of one big batch
                examples = sum(len(piece["labels"]) for piece in micro)
                step_units = sum(units(piece["labels"]) for piece in micro)
                if accelerator.num_processes > 1:
                    # DDP averages the processes' gradients: dividing by the mean count per process
                    # makes that average the gradient of the loss over every example (token) of the step
                    step_units = float(accelerator.reduce(torch.tensor(float(step_units)), "mean"))
                step_loss = 0.0
                for i, piece in enumerate(micro):
                    # DDP: sync gradients across processes once per step, on the last piece
                    last = i == len(micro) - 1
                    with contextlib.nullcontext() if last else accelerator.no_sync(model):
                        # forward
                        logits = model(**model_inputs(piece)).logits
                        # loss: this piece's share of the mean loss of the step
                        loss = loss_fn(logits, piece["labels"]) / step_units
                        # backward: autograd applies the chain rule from the loss back to every
                        # weight and adds into .grad
                        accelerator.backward(loss)
                    step_loss += float(loss.detach())
                # several processes: the step's loss over all of them, so a NaN on one stops every one
                step_loss = mean_over_processes(step_loss)

                # clip: the global norm is measured (and logged) before clipping
                grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or math.inf))
                if cfg.clip_value is not None:
                    torch.nn.utils.clip_grad_value_(model.parameters(), cfg.clip_value)
                logging_now = (progress.step + 1) % cfg.log_every == 0
                layer_norms = health.grad_norms() if logging_now else None
                before = health.snapshot() if logging_now else None

                if math.isfinite(step_loss) and math.isfinite(grad_norm):
                    # step: theta <- theta - lr * (the optimizer's view of) grad J(theta)
                    optimizer.step()
                elif cfg.on_nonfinite == "stop":
                    non_finite("loss" if not math.isfinite(step_loss) else "gradient", group)
                else:
                    progress.skipped_steps += 1
                    log.write({"kind": "skip", "step": progress.step + 1, "loss": step_loss, "grad_norm": grad_norm})
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                progress.step += 1
                progress.batch_in_epoch += len(group)
                progress.samples += examples * accelerator.num_processes
                progress.train_seconds += time.perf_counter() - started
                if math.isfinite(step_loss):
                    window["loss"] += step_loss
                    window["steps"] += 1
                window["samples"] += examples * accelerator.num_processes
                health.check(progress.step, grad_norm, layer_norms)
                end_of_epoch = progress.batch_in_epoch == loader_batches
                if end_of_epoch:
                    progress.epoch += 1
                    progress.batch_in_epoch = 0
                done = progress.step >= total_steps

                if logging_now or done:
                    elapsed = time.perf_counter() - window["start"]
                    record = {"kind": "train", "step": progress.step,
                              "epoch": round(progress.step / steps_per_epoch, 4),
                              "elapsed": round(progress.train_seconds, 3),
                              "loss": window["loss"] / max(window["steps"], 1),
                              "lr": scheduler.get_last_lr()[0],
                              "grad_norm": grad_norm, "samples_per_s": window["samples"] / max(elapsed, 1e-9)}
                    if layer_norms is not None:
                        record["layer_grad_norm"] = layer_norms
                        record["update_ratio"] = health.update_ratios(before)
                    log.write(record)
                    bar.update(task_bar, status=f"loss {record['loss']:.4f}")
                    window = {"loss": 0.0, "steps": 0, "samples": 0, "start": time.perf_counter()}
                bar.update(task_bar, completed=progress.step)

                stop_early = False
                if val_loader is not None and (_due(cfg.eval_every, progress.step, end_of_epoch) or done):
                    stop_early = run_evaluation()
                    if stop_early:
                        say(f"Early stopping: no improvement in {cfg.metric} for "
                            f"{cfg.early_stopping_patience} evaluations")
                progress.finished = done or stop_early
                if _due(cfg.save_every, progress.step, end_of_epoch) or progress.finished or interrupt.requested:
                    checkpoint()
                if progress.finished or interrupt.requested:
                    break

    if interrupt.requested and not progress.finished:
        say(f"Checkpoint saved at step {progress.step}; continue with --resume")
        raise KeyboardInterrupt
    if progress.skipped_steps:
        say(f"[yellow]{progress.skipped_steps} step(s) skipped for a non-finite loss or gradient")
    if val_loader is None:
        save_best()  # nothing to choose by: the final weights are the model
    return progress
