"""THE training loop. Read it top to bottom: for each optimizer step,

    forward -> loss -> backward (for each piece of the step) -> clip -> optimizer step -> scheduler step -> zero_grad

which is gradient descent, theta <- theta - lr * grad J(theta), with the optimizer deciding how the
gradient becomes a step. `train.gd_mode` decides how many examples one step sees: batch_size
(mini-batch), one (stochastic) or all of them (batch). The gradient of a step is computed by
step.py's `train_step`; the bookkeeping around the step (logging, evaluation, the best model,
early stopping, checkpoints) is in bookkeeping.py. `accelerate` only places tensors on devices
and syncs processes.
"""

from __future__ import annotations

import math
import time

from gradtune.tracking.console import progress_bar
from gradtune.tracking.trackers import tracker_objects
from gradtune.training.bookkeeping import Bookkeeper, Progress, due
from gradtune.training.distributed import engine
from gradtune.training.interrupt import StopOnInterrupt
from gradtune.training.optim import build_optimizer, build_scheduler, step_plan
from gradtune.training.prepare import Job
from gradtune.training.step import check_split, make_accelerator, pieces, train_step, update_groups


def fit(job: Job) -> Progress:
    cfg = job.cfg.train
    # train.compile: torch.compile is applied in accelerator.prepare, after the strategy
    accelerator = make_accelerator(cfg.precision, tracker_objects(cfg.trackers, job.run_dir), engine(job.cfg),
                                   compile=cfg.compile)
    if cfg.precision == "fp64":
        job.model.double()
    plan = step_plan(cfg)  # examples per loader batch, per micro-batch, loader batches per step
    if accelerator.num_processes > 1:  # each process takes its share of every batch
        check_split(plan.loader_batch, job.val_loader.batch_sampler.batch_size if job.val_loader else None,
                    accelerator.num_processes)
    optimizer = build_optimizer(job.model, cfg, accelerator.device.type)  # fused Adam on a GPU
    model, optimizer, train_loader = accelerator.prepare(job.model, optimizer, job.train_loader)
    val_loader = accelerator.prepare(job.val_loader) if job.val_loader is not None else None
    steps_per_epoch = plan.updates_per_epoch(len(train_loader))
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
    mode = cfg.metric_mode if cfg.metric_mode != "auto" else job.task.metric_mode(cfg.metric)
    # stepped here once per optimizer step (accelerate would step it once per process)
    scheduler = build_scheduler(optimizer, cfg, total_steps, mode)
    books = Bookkeeper(job, accelerator, model, optimizer, scheduler, steps_per_epoch, mode)
    progress = books.progress  # where a resumed run starts
    if accelerator.num_processes > 1:
        n = accelerator.num_processes
        books.say(f"{n} processes: each step's batch of {plan.loader_batch} is shared, {plan.loader_batch // n} "
                  "examples per process")

    model.train()
    # books.ending(): metrics.jsonl's end record (finished / interrupted / failed) and the trackers' end
    with (books.ending(), StopOnInterrupt() as interrupt,
          progress_bar(cfg.progress and accelerator.is_main_process) as bar):
        task_bar = bar.add_task("train", total=total_steps, completed=progress.step, status="")
        while progress.step < total_steps and not progress.finished and not books.stop_requested(interrupt):
            job.train_loader.batch_sampler.set_epoch(progress.epoch)  # this epoch's shuffle, the same on resume
            batches = accelerator.skip_first_batches(train_loader, progress.batch_in_epoch)
            for group in update_groups(batches, plan.accumulate):
                started = time.perf_counter()
                micro = [piece for batch in group for piece in pieces(batch, plan.micro_batch)]

                # forward -> loss -> backward for each piece, then clip (step.py)
                step = train_step(model, micro, job.loss_fn, job.task.loss_units, accelerator, cfg.max_grad_norm,
                                  cfg.clip_value)
                books.before_update()
                if step.finite:
                    # step: theta <- theta - lr * (the optimizer's view of) grad J(theta)
                    optimizer.step()
                elif cfg.on_nonfinite == "stop":
                    raise books.non_finite(step, group)
                else:
                    books.skipped(step)
                scheduler.step()  # the learning rate of the next step
                optimizer.zero_grad(set_to_none=True)

                done = progress.step + 1 >= total_steps
                end_of_epoch = books.after_update(step, len(train_loader), group, time.perf_counter() - started, done)
                bar.update(task_bar, completed=progress.step, status=books.status)  # loss, tokens/s, MFU
                stop_early = False
                if val_loader is not None and (due(cfg.eval_every, progress.step, end_of_epoch) or done):
                    stop_early = books.evaluate(val_loader)
                progress.finished = done or stop_early
                stop = books.stop_requested(interrupt)  # every process stops at the same step
                if due(cfg.save_every, progress.step, end_of_epoch) or progress.finished or stop:
                    books.checkpoint()
                if progress.finished or stop:
                    break

        if books.stop_requested(interrupt) and not progress.finished:
            books.say(f"Checkpoint saved at step {progress.step}; continue with --resume")
            raise KeyboardInterrupt
        if progress.skipped_steps:
            books.say(f"{progress.skipped_steps} step(s) skipped for a non-finite loss or gradient", style="yellow")
        if val_loader is None:
            books.save_model()  # nothing to choose by: the final weights are the model
    return progress
