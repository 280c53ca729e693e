"""Checkpoints that survive a crash, and an exact resume.

A checkpoint is a folder `checkpoints/step-000120/` holding the weights (safetensors), the
optimizer / scheduler / RNG state (`torch.save`, read back with `weights_only=True`, so loading
never unpickles arbitrary objects) and `progress.json`. It is written under a temporary name and
renamed when complete, so a crash mid-save never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from gradtune.errors import GradtuneError
from gradtune.folders import recover
from gradtune.rundir import RunDir, atomic_dir


def save_checkpoint(run: RunDir, model: torch.nn.Module, optimizer: Any, scheduler: Any, progress: dict,
                    keep: int, process_rngs: torch.Tensor | None = None) -> Path:
    """Write the checkpoint of `progress['step']`, then drop all but the newest `keep`. Under several
    processes `process_rngs` holds each one's torch RNG state (a row per process): their dropout
    masks differ, so each resumes its own."""

    def write(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                **({"process_rngs": process_rngs} if process_rngs is not None else {}),
            },
            tmp / "trainer_state.pt",
        )
        (tmp / "progress.json").write_text(json.dumps(progress, indent=1))

    folder = atomic_dir(run.checkpoint(progress["step"]), write)
    for stale in run.list_checkpoints()[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                    process: int = 0, processes: int = 1) -> dict:
    """Restore weights, optimizer, scheduler and RNG in place (process `process` of `processes`: its
    own RNG when the checkpoint was written by as many); return the progress record."""
    if (folder / "accelerate").is_dir():
        raise GradtuneError(f"{folder} holds a sharded run's checkpoint (distributed.strategy fsdp or deepspeed): "
                            "resume it under the same strategy")
    load_model(model, str(folder / "model.safetensors"))
    state = torch.load(folder / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rngs = state.get("process_rngs")
    torch.set_rng_state(rngs[process].clone() if rngs is not None and len(rngs) == processes else state["torch_rng"])
    if state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return json.loads((folder / "progress.json").read_text())


def save_sharded_checkpoint(run: RunDir, accelerator: Any, scheduler: Any, progress: dict, keep: int) -> None:
    """Under fsdp / deepspeed no process holds the whole model or optimizer state: every process
    writes its shard with accelerate's `save_state` into a staging folder, then the main process
    makes it a checkpoint the same way as above (atomically, with the scheduler and progress)."""
    final = run.checkpoint(progress["step"])
    staging = final.with_name(final.name + ".shards")
    if accelerator.is_main_process:
        recover(final)
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        def write(tmp: Path) -> None:
            staging.rename(tmp / "accelerate")
            torch.save({"scheduler": scheduler.state_dict()}, tmp / "trainer_state.pt")
            (tmp / "progress.json").write_text(json.dumps(progress, indent=1))

        atomic_dir(final, write)
        for stale in run.list_checkpoints()[:-keep]:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_sharded_checkpoint(folder: Path, accelerator: Any, scheduler: Any) -> dict:
    """Every process reads its shard back (model, optimizer, RNG) with accelerate's `load_state`."""
    if not (folder / "accelerate").is_dir():
        raise GradtuneError(f"{folder} was written by one process or under distributed.strategy ddp: resume it "
                            "the same way (distributed.strategy=ddp)")
    accelerator.load_state(str(folder / "accelerate"))
    scheduler.load_state_dict(torch.load(folder / "trainer_state.pt", weights_only=True)["scheduler"])
    return json.loads((folder / "progress.json").read_text())
