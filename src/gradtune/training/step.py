"""One training step's gradient, the same for the loop, the learning-rate finder and the gradient
check:

    for each piece of the step:   forward -> loss (this piece's share of the step's mean) -> backward
    then:                         clip the gradient (its norm is measured first)

The step's examples arrive as loader batches (`update_groups`: one step's worth) cut into
micro-batches (`pieces`) that bound memory. Every piece's loss is divided by the units of the
WHOLE step (examples; causal_lm: target tokens), so the summed gradients are exactly those of one
big batch, however the step is cut.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from accelerate import Accelerator, DataLoaderConfiguration

from gradtune.data.batching import ENCODER_INPUTS, logits_of, model_inputs
from gradtune.errors import GradtuneError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mixed_precision(choice: str) -> str:
    """bf16 only where the hardware does it fast: on a CPU without AMX it is ~400x slower."""
    if choice in ("fp32", "fp64") or (choice == "auto" and not torch.cuda.is_available()):
        return "no"
    if choice == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return choice


def make_accelerator(precision: str, log_with: list | None = None, engine: dict | None = None) -> Accelerator:
    """`log_with`: accelerate tracker objects (tracking.trackers.tracker_objects); `engine`: the
    fsdp / deepspeed plugin (distributed.plugin). Under several processes, train.batch_size stays
    the batch of one optimizer step: the loader yields it whole and each process takes its share
    (split_batches), so the same config takes the same steps on 1 or N processes."""
    # cpu=True on a machine without a GPU: only then does accelerate see torchrun's processes (MULTI_CPU)
    return Accelerator(mixed_precision=mixed_precision(precision), cpu=not torch.cuda.is_available(),
                       log_with=log_with or None, dataloader_config=DataLoaderConfiguration(split_batches=True),
                       **(engine or {}))


def check_split(train_batch: int, eval_batch: int | None, processes: int) -> None:
    """Each process takes an equal share of every batch: the batches must divide evenly."""
    for key, size in (("train.batch_size", train_batch), ("train.eval_batch_size", eval_batch)):
        if size is not None and size % processes:
            hint = ("gd_mode stochastic takes one example per step and can't be shared" if size == 1 else
                    f"use a multiple of {processes}, e.g. {key}={max(processes, size - size % processes)}")
            raise GradtuneError(f"{key} is {size}, which {processes} processes can't share equally: {hint}")


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
        if "attention_mask" in piece:  # the encoder's side only: a decoder's inputs have their own length
            width = int(piece["attention_mask"].sum(dim=1).max())
            piece = {k: v[:, :width] if k in ENCODER_INPUTS and v.dim() == 2 else v for k, v in piece.items()}
        yield piece


def piece_loss(model: torch.nn.Module, piece: dict[str, torch.Tensor], loss_fn: LossFn,
               step_units: float) -> torch.Tensor:
    """forward -> loss: this piece's share of the mean loss of the step."""
    logits = logits_of(model(**model_inputs(piece)))
    return loss_fn(logits, piece["labels"]) / step_units


def mean_over_processes(accelerator: Accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return value
    return float(accelerator.reduce(torch.tensor(value), "mean"))


@dataclass
class StepResult:
    loss: float  # the step's mean loss (over every process)
    grad_norm: float  # the global gradient norm, before clipping
    examples: int  # examples this process saw

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)


def train_step(
    model: torch.nn.Module, micro: list[dict[str, torch.Tensor]], loss_fn: LossFn,
    loss_units: Callable[[torch.Tensor], int], accelerator: Accelerator, max_grad_norm: float | None,
    clip_value: float | None,
) -> StepResult:
    """Fill every trainable parameter's .grad with the gradient of the step's mean loss; clip it."""
    examples = sum(len(piece["labels"]) for piece in micro)
    step_units: float = sum(loss_units(piece["labels"]) for piece in micro)
    if accelerator.num_processes > 1:
        # DDP averages the processes' gradients: dividing by the mean count per process makes that
        # average the gradient of the loss over every example (token) of the step
        step_units = mean_over_processes(accelerator, float(step_units))
    step_loss = 0.0
    for i, piece in enumerate(micro):
        # DDP: sync gradients across processes once per step, on the last piece
        last = i == len(micro) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            loss = piece_loss(model, piece, loss_fn, step_units)  # forward -> loss
            # backward: autograd applies the chain rule from the loss back to every weight and adds into .grad
            accelerator.backward(loss)
        step_loss += float(loss.detach())
    # several processes: the step's loss over all of them, so that a NaN on one stops every one
    step_loss = mean_over_processes(accelerator, step_loss)
    # clip: the global norm is measured (and logged) before clipping
    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_grad_norm or math.inf))
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_(model.parameters(), clip_value)
    return StepResult(step_loss, grad_norm, examples)
