"""The bookkeeping around the training loop: where training stands (Progress, saved in every
checkpoint), metrics.jsonl, evaluation with best-model keeping and early stopping, checkpoints,
gradient health, and the error for a non-finite step. Under several processes only the main one
writes; all of them wait for it."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from rich.text import Text

from gradtune.data.files import row_location
from gradtune.errors import GradtuneError
from gradtune.perf.mfu import mfu_meter
from gradtune.report.machine import describe as describe_machine
from gradtune.rundir import RunDir, write_model_dir
from gradtune.tracking.console import console
from gradtune.tracking.gradient_health import GradientHealth
from gradtune.tracking.metrics_log import MetricsLog
from gradtune.tracking.trackers import RunTrackers
from gradtune.training.checkpoint import (
    load_checkpoint,
    load_sharded_checkpoint,
    save_checkpoint,
    save_sharded_checkpoint,
)
from gradtune.training.distributed import sharded
from gradtune.training.prepare import Job
from gradtune.training.step import StepResult
from gradtune.training.strategies.adapters import save_model


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


def due(every: int | str, step: int, end_of_epoch: bool) -> bool:
    """Whether an every-N-steps (or every-'epoch') action falls on this step."""
    return end_of_epoch if every == "epoch" else step % int(every) == 0


def improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    return best is None or (value > best + min_delta if mode == "max" else value < best - min_delta)


class Bookkeeper:
    def __init__(self, job: Job, accelerator: Accelerator, model: Any, optimizer: Any, scheduler: Any,
                 steps_per_epoch: int, mode: str):
        self.job, self.cfg, self.accelerator = job, job.cfg.train, accelerator
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.run, self.steps_per_epoch = RunDir(job.run_dir), steps_per_epoch
        self.say = console.print if accelerator.is_main_process else (lambda *a, **k: None)
        self.mode = mode  # "max" or "min": which way train.metric improves
        self.health = GradientHealth(accelerator.unwrap_model(model), lambda message: self.say(message, style="yellow"))
        self.progress = Progress()
        if job.resume_from is not None:
            saved = (load_sharded_checkpoint(job.resume_from, accelerator, scheduler) if sharded(accelerator) else
                     load_checkpoint(job.resume_from, accelerator.unwrap_model(model), optimizer, scheduler,
                                     accelerator.process_index, accelerator.num_processes))
            self.progress = Progress(**saved)
            self.say(f"Resuming from {job.resume_from} (step {self.progress.step}, epoch {self.progress.epoch})")
        self.log = MetricsLog(self.run.metrics, self.progress.step if job.resume_from else None,
                              enabled=accelerator.is_main_process)
        # tokens/s and MFU: the machine's peak is read from the cache or measured (~1 s) now, outside
        # the timed steps; the main process first, so the processes don't share the cores measuring
        with accelerator.main_process_first():
            self.meter = mfu_meter(accelerator.unwrap_model(model), self.cfg.precision, accelerator.device,
                                   accelerator.num_processes, job.loss_fn, model)
        if job.resume_from is None:  # what trains: the strategy's share, and where (for the report)
            self.log.write({"kind": "setup", "step": 0, "started": round(time.time(), 3),
                            "strategy": job.cfg.strategy.method,
                            **job.metadata["parameters"], "peak_flops": self.meter.peak,
                            "machine": describe_machine(accelerator.device, accelerator.num_processes)})
        # train.trackers: the config as hyper-parameters now, then the records metrics.jsonl gets
        self.trackers = RunTrackers(accelerator, job.cfg.model_dump(mode="json"), job.run_dir,
                                    lambda message: self.say(message, style="yellow"))
        self._window()
        self.probe: tuple[dict[str, float], Any] | None = None
        self.logged_loss: float | None = None  # the last training record's loss, for the progress bar
        self.logged_speed: tuple[float, float] | None = None  # and its tokens/s and MFU
        self.stopped_by: str | None = None  # why job.on_eval stopped training (a sweep's pruner)

    def record(self, record: dict[str, Any]) -> None:
        """A line of metrics.jsonl, and the same scalars for the trackers."""
        self.log.write(record)
        self.trackers.log(record)

    @contextmanager
    def ending(self) -> Iterator[None]:
        """Around the loop: however training ends, metrics.jsonl's last record says how (`gradtune
        runs` reads it): finished, interrupted (Ctrl-C or SIGTERM; the checkpoint resumes) or failed
        (with the error), and the trackers end with that status."""
        status, error = "failed", None
        try:
            yield
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except BaseException as err:
            error = (str(err) if isinstance(err, GradtuneError) else f"{type(err).__name__}: {err}")[:2000]
            raise
        finally:
            p = self.progress
            self.log.write({"kind": "end", "step": p.step, "elapsed": round(p.train_seconds, 3), "status": status,
                            "error": error, "time": round(time.time(), 3),
                            **({"stopped_by": self.stopped_by} if self.stopped_by else {})})
            self.trackers.end(status)

    def stop_requested(self, interrupt: Any) -> bool:
        """Whether Ctrl-C / SIGTERM reached any process: under several processes every one must stop
        at the same step (a process that stopped alone would leave the others waiting for it)."""
        if self.accelerator.num_processes == 1:
            return interrupt.requested
        flag = torch.tensor(float(interrupt.requested), device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "sum") > 0)

    def _window(self) -> None:
        self.window = {"loss": 0.0, "steps": 0, "samples": 0, "start": time.perf_counter()}

    # --- around one step
    def before_update(self) -> None:
        """On a logged step, the per-layer gradient norms and the weights before the update."""
        logging = (self.progress.step + 1) % self.cfg.log_every == 0
        self.probe = (self.health.grad_norms(), self.health.snapshot()) if logging else None

    def skipped(self, step: StepResult) -> None:
        self.progress.skipped_steps += 1
        self.record({"kind": "skip", "step": self.progress.step + 1, "loss": step.loss, "grad_norm": step.grad_norm})

    def after_update(self, step: StepResult, loader_batches: int, group: list[dict], seconds: float,
                     done: bool) -> bool:
        """Count the step (`group`: its loader batches), log it (every train.log_every steps and the
        last), check gradient health. Returns whether this step ended an epoch."""
        p, n = self.progress, self.accelerator.num_processes
        p.step += 1
        p.batch_in_epoch += len(group)
        self.meter.add(group, seconds)
        p.samples += step.examples * n
        p.train_seconds += seconds
        if step.finite:
            self.window["loss"] += step.loss
            self.window["steps"] += 1
        self.window["samples"] += step.examples * n
        layer_norms = self.probe[0] if self.probe else None
        self.health.check(p.step, step.grad_norm, layer_norms)
        end_of_epoch = p.batch_in_epoch == loader_batches
        if end_of_epoch:
            p.epoch += 1
            p.batch_in_epoch = 0
        if self.probe is not None or done:
            elapsed = time.perf_counter() - self.window["start"]
            record = {"kind": "train", "step": p.step, "epoch": round(p.step / self.steps_per_epoch, 4),
                      "elapsed": round(p.train_seconds, 3), "loss": self.window["loss"] / max(self.window["steps"], 1),
                      "lr": self.scheduler.get_last_lr()[0], "grad_norm": step.grad_norm,
                      "samples_per_s": self.window["samples"] / max(elapsed, 1e-9),
                      **self.meter.take(self._sum_over_processes)}
            if self.probe is not None:
                record["layer_grad_norm"] = layer_norms
                record["update_ratio"] = self.health.update_ratios(self.probe[1])
            self.record(record)
            self.logged_loss = record["loss"]
            self.logged_speed = (record["tokens_per_s"], record["mfu"])
            self._window()
        return end_of_epoch

    def _sum_over_processes(self, values: list[float]) -> list[float]:
        if self.accelerator.num_processes == 1:
            return values
        values = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(values, "sum").tolist()

    @property
    def status(self) -> str:
        """The progress bar's text: the last logged loss, tokens/s and MFU."""
        if self.logged_loss is None:
            return ""
        tokens_per_s, mfu = self.logged_speed or (0.0, 0.0)
        return f"loss {self.logged_loss:.4f}  {tokens_per_s:,.0f} tok/s  MFU {100 * mfu:.1f}%"

    def non_finite(self, step: StepResult, group: list[dict]) -> GradtuneError:
        """The error that stops training at a NaN/inf loss or gradient, naming the batch's rows."""
        what = "loss" if not math.isfinite(step.loss) else "gradient"
        rows = sorted(int(r) for batch in group for r in batch["_row"])
        train = self.job.cfg.data.train
        where = ", ".join(row_location(train, r) for r in rows[:8]) + (" ..." if len(rows) > 8 else "")
        last = self.run.list_checkpoints()
        return GradtuneError(
            f"non-finite {what} at step {self.progress.step + 1} (lr {self.scheduler.get_last_lr()[0]:.3g}); the "
            f"batch holds {train} {where}. Training stopped; the last good checkpoint is "
            f"{last[-1] if last else 'none (no checkpoint was saved yet)'}. Lower train.lr, set "
            "train.max_grad_norm, check those rows, or set train.on_nonfinite=skip."
        )

    # --- evaluation, the best model, checkpoints
    def evaluate(self, val_loader: Any) -> bool:
        """Evaluate, keep the best model, and say whether early stopping should end training."""
        p, cfg = self.progress, self.cfg
        result = self.job.task.evaluate(self.model, val_loader, self.accelerator, self.job.metadata)
        p.last_eval = result
        value = result[cfg.metric]
        if hasattr(self.scheduler, "observe"):  # the plateau schedule reacts to the validation metric
            self.scheduler.observe(value)
        best = improved(value, p.best_metric, self.mode, cfg.early_stopping_min_delta)
        self.record({"kind": "eval", "step": p.step, "epoch": round(p.step / self.steps_per_epoch, 4),
                     "elapsed": round(p.train_seconds, 3),
                     **{k: v for k, v in result.items() if k != "confusion_matrix"}})
        shown = "  ".join(f"{k} {result[k]:.4f}" for k in dict.fromkeys([cfg.metric, *self.job.task.shown_metrics])
                          if k in result)  # tabular shows regression's or classification's
        self.say(Text.assemble(f"step {p.step}: {shown}", ("  (best)" if best else "", "green")))
        # a sweep's pruner (job.on_eval) may stop a trial that trails the others; its run says why
        self.stopped_by = self.job.on_eval(p.step, result) if self.job.on_eval else None
        if self.stopped_by:
            self.say(f"Stopped: {self.stopped_by}", style="yellow")
        if best:
            p.best_metric, p.best_step = value, p.step
            p.evals_without_improvement = 0
            self.save_model()
            return bool(self.stopped_by)
        if self.stopped_by:
            return True
        p.evals_without_improvement += 1
        stop = cfg.early_stopping_patience is not None and p.evals_without_improvement >= cfg.early_stopping_patience
        if stop:
            self.say(f"Early stopping: no improvement in {cfg.metric} for {cfg.early_stopping_patience} evaluations")
        return stop

    def save_model(self) -> None:
        """model/: the weights now, with the tokenizer and gradtune.json (this step and its metrics)."""
        # a sharded model is gathered whole, every process taking part
        weights = self.accelerator.get_state_dict(self.model) if sharded(self.accelerator) else None
        if self.accelerator.is_main_process:
            model, meta = self.accelerator.unwrap_model(self.model), {**self.job.metadata, "step": self.progress.step,
                                                                     "metrics": self.progress.last_eval}
            write_model_dir(self.run.model, lambda folder: save_model(model, folder, meta, weights),
                            self.job.tokenizer, meta)
        self.accelerator.wait_for_everyone()

    def checkpoint(self) -> None:
        if sharded(self.accelerator):
            save_sharded_checkpoint(self.run, self.accelerator, self.scheduler, asdict(self.progress),
                                    self.cfg.keep_checkpoints)
            return
        rngs = None
        if self.accelerator.num_processes > 1:  # every process's RNG, for its own dropout after a resume
            rngs = self.accelerator.gather(torch.get_rng_state().unsqueeze(0).to(self.accelerator.device)).cpu()
        if self.accelerator.is_main_process:
            save_checkpoint(self.run, self.accelerator.unwrap_model(self.model), self.optimizer, self.scheduler,
                            asdict(self.progress), self.cfg.keep_checkpoints, rngs)
        self.accelerator.wait_for_everyone()
