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
from gradtune.models.lm_head import NextTokenLoss
from gradtune.tracking.console import log

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cpu_has_fast_bf16() -> bool:
    """A CPU with bf16 matrix instructions (AVX512-BF16 or AMX): measured on one with AVX512-BF16, a
    bf16 matrix product runs at ~890 GFLOP/s against ~205 for fp32; without them bf16 is emulated and
    hundreds of times slower (0.3 GFLOP/s on an AVX2 laptop)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def mixed_precision(choice: str, gpu: bool | None = None) -> str:
    """train.precision -> accelerate's mixed_precision. auto: bf16 on a GPU that has it, else fp16;
    fp32 on a CPU, even one with bf16 instructions, where bf16 autocast trains 1.4-1.9x faster but
    raises a language model's loss (measured: docs/training.md, "Precision"): there bf16 is the
    user's choice."""
    gpu = torch.cuda.is_available() if gpu is None else gpu
    if choice in ("fp32", "fp64") or (choice == "auto" and not gpu):
        return "no"
    if choice == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if not gpu and not cpu_has_fast_bf16():
        log.warning(f"train.precision={choice}: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so "
                    "half precision is emulated and far slower than fp32; train.precision=fp32 is faster here")
    return choice


def accelerator_options(precision: str, compile: bool = False, gpu: bool | None = None) -> dict:
    """The Accelerator's settings for this hardware. Under several processes, train.batch_size stays
    the batch of one optimizer step: the loader yields it whole and each process takes its share
    (split_batches), so the same config takes the same steps on 1 or N processes. With a GPU, batches
    are copied from pinned memory without waiting (non_blocking; the loaders pin, data/batching.py).
    train.compile: accelerate applies torch.compile to the model after the strategy, wrapping last."""
    gpu = torch.cuda.is_available() if gpu is None else gpu
    # cpu=True on a machine without a GPU: only then does accelerate see torchrun's processes (MULTI_CPU)
    return {"mixed_precision": mixed_precision(precision, gpu), "cpu": not gpu,
            "dataloader_config": DataLoaderConfiguration(split_batches=True, non_blocking=gpu),
            "dynamo_backend": "inductor" if compile else "no"}


def make_accelerator(precision: str, log_with: list | None = None, engine: dict | None = None,
                     compile: bool = False) -> Accelerator:
    """`log_with`: accelerate tracker objects (tracking.trackers.tracker_objects); `engine`: the
    fsdp / deepspeed plugin (distributed.plugin)."""
    return Accelerator(**accelerator_options(precision, compile), log_with=log_with or None, **(engine or {}))


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
    if isinstance(loss_fn, NextTokenLoss):  # a language model: the head only where a token is predicted
        return loss_fn.of_model(model, model_inputs(piece), piece["labels"]) / step_units
    logits = logits_of(model(**model_inputs(piece)))
    return loss_fn(logits, piece["labels"]) / step_units


@contextlib.contextmanager
def compile_errors_explained() -> Iterator[None]:
    """train.compile: torch.compile compiles at the first forward and backward (and again for a new
    shape); a failure there becomes an error that says which setting to turn off."""
    try:
        yield
    except torch._dynamo.exc.TorchDynamoException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GradtuneError(f"train.compile: torch.compile could not compile the model ({first[:300]}); "
                            "train without it: train.compile=false") from err


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
        with contextlib.nullcontext() if last else accelerator.no_sync(model), compile_errors_explained():
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
