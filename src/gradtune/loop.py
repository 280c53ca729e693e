"""THE training loop. Read it top to bottom: for each batch,

    forward -> loss -> backward -> clip gradients -> optimizer step -> scheduler step -> zero_grad

which is gradient descent, theta <- theta - lr * grad J(theta), with the optimizer deciding how the
gradient becomes a step. Around it: evaluation, best-model keeping, early stopping, checkpoints.
`accelerate` only places tensors on devices and syncs processes; every step is written out here.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from gradtune.checkpoint import load_checkpoint, save_checkpoint, save_model_dir
from gradtune.monitor import MetricsLog, StopOnInterrupt, console, progress_bar
from gradtune.optim import build_optimizer, build_scheduler


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
    finished: bool = False
    last_eval: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """Everything the loop needs, built by `gradtune.api.train`."""

    cfg: Any  # gradtune.config.Config
    task: ModuleType
    model: torch.nn.Module
    tokenizer: Any
    train_loader: DataLoader
    val_loader: DataLoader | None
    run_dir: Path
    metadata: dict[str, Any]
    resume_from: Path | None = None


def mixed_precision(choice: str) -> str:
    """bf16 only where the hardware does it fast: on a CPU without AMX it is ~400x slower."""
    if choice == "fp32" or (choice == "auto" and not torch.cuda.is_available()):
        return "no"
    if choice == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return choice


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, task: ModuleType, accelerator: Accelerator) -> dict:
    """Streamed evaluation: per batch, update counts and a loss sum; never keep the logits."""
    was_training = model.training
    model.eval()
    num_labels = accelerator.unwrap_model(model).config.num_labels
    metrics = task.make_metrics(num_labels).to(accelerator.device)
    loss_total, examples = 0.0, 0
    for batch in loader:
        logits = model(**model_inputs(batch)).logits
        logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
        loss_total += float(task.loss_sum(logits, labels))
        examples += len(labels)
        metrics.update(logits.argmax(dim=-1), labels)
    model.train(was_training)
    result = task.finish_metrics(metrics.compute())
    result["loss"] = round(loss_total / max(examples, 1), 6)
    return result


def _due(every: int | str, step: int, end_of_epoch: bool) -> bool:
    return end_of_epoch if every == "epoch" else step % int(every) == 0


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def fit(job: Job) -> Progress:
    cfg = job.cfg.train
    accelerator = Accelerator(mixed_precision=mixed_precision(cfg.precision))
    say = console.print if accelerator.is_main_process else (lambda *a, **k: None)
    sampler = job.train_loader.batch_sampler  # ours: reshuffled per epoch by set_epoch()
    optimizer = build_optimizer(job.model, cfg)
    model, optimizer, train_loader = accelerator.prepare(job.model, optimizer, job.train_loader)
    val_loader = accelerator.prepare(job.val_loader) if job.val_loader is not None else None
    steps_per_epoch = len(train_loader)
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
    # stepped by us once per optimizer step (not handed to accelerate, which would step it
    # once per process)
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    mode = cfg.metric_mode if cfg.metric_mode != "auto" else job.task.metric_mode(cfg.metric)

    progress = Progress()
    if job.resume_from is not None:
        saved = load_checkpoint(job.resume_from, accelerator.unwrap_model(model), optimizer, scheduler)
        progress = Progress(**saved)
        say(f"Resuming from {job.resume_from} (step {progress.step}, epoch {progress.epoch})")
    log = MetricsLog(job.run_dir / "metrics.jsonl", progress.step if job.resume_from else None)

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
        result = evaluate(model, val_loader, job.task, accelerator)
        progress.last_eval = result
        value = result[cfg.metric]
        best = _improved(value, progress.best_metric, mode)
        log.write({"kind": "eval", "step": progress.step, "epoch": round(progress.step / steps_per_epoch, 4),
                   "elapsed": round(progress.train_seconds, 3),
                   **{k: v for k, v in result.items() if k != "confusion_matrix"}})
        shown = "  ".join(f"{k} {result[k]:.4f}" for k in dict.fromkeys([cfg.metric, "accuracy", "f1_macro", "loss"]))
        say(f"step {progress.step}: {shown}" + ("  [green](best)" if best else ""))
        if best:
            progress.best_metric, progress.best_step = value, progress.step
            progress.evals_without_improvement = 0
            save_best()
            return False
        progress.evals_without_improvement += 1
        patience = cfg.early_stopping_patience
        return patience is not None and progress.evals_without_improvement >= patience

    model.train()
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    with StopOnInterrupt() as interrupt, progress_bar(cfg.progress and accelerator.is_main_process) as bar:
        task_bar = bar.add_task("train", total=total_steps, completed=progress.step, status="")
        while progress.step < total_steps and not progress.finished and not interrupt.requested:
            sampler.set_epoch(progress.epoch)
            batches = accelerator.skip_first_batches(train_loader, progress.batch_in_epoch)
            for batch in batches:
                started = time.perf_counter()
                # forward
                logits = model(**model_inputs(batch)).logits
                # loss: the mean over this step's examples
                loss = job.task.loss_sum(logits, batch["labels"]) / len(batch["labels"])
                # backward: autograd applies the chain rule from the loss back to every weight
                accelerator.backward(loss)
                grad_norm = None
                if cfg.max_grad_norm is not None:
                    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
                # step: theta <- theta - lr * (the optimizer's view of) grad J(theta)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                progress.step += 1
                progress.batch_in_epoch += 1
                progress.samples += len(batch["labels"]) * accelerator.num_processes
                progress.train_seconds += time.perf_counter() - started
                window_loss += float(loss.detach())
                window_steps += 1
                end_of_epoch = progress.batch_in_epoch == steps_per_epoch
                if end_of_epoch:
                    progress.epoch += 1
                    progress.batch_in_epoch = 0
                done = progress.step >= total_steps

                if progress.step % cfg.log_every == 0 or done:
                    elapsed = time.perf_counter() - window_start
                    record = {"kind": "train", "step": progress.step,
                              "epoch": round(progress.step / steps_per_epoch, 4),
                              "elapsed": round(progress.train_seconds, 3),
                              "loss": window_loss / window_steps, "lr": scheduler.get_last_lr()[0],
                              "grad_norm": grad_norm,
                              "samples_per_s": window_steps * len(batch["labels"]) / max(elapsed, 1e-9)}
                    log.write(record)
                    bar.update(task_bar, status=f"loss {record['loss']:.4f}")
                    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
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
    if val_loader is None:
        save_best()  # nothing to choose by: the final weights are the model
    return progress
