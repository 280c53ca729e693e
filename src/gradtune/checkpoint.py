"""Checkpoints that survive a crash, and an exact resume.

A checkpoint is a folder `checkpoints/step-000120/` holding the weights (safetensors), the
optimizer / scheduler / RNG state (`torch.save`, read back with `weights_only=True`, so loading
never unpickles arbitrary objects) and `progress.json`. It is written under a temporary name and
renamed when complete, so a crash mid-save never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

PREFIX = "step-"


def _atomic_dir(final: Path, write: Any) -> Path:
    """Call `write(tmp_dir)`, then move `tmp_dir` into place in one rename."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def save_checkpoint(
    run_dir: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, progress: dict, keep: int
) -> Path:
    folder = Path(run_dir) / "checkpoints" / f"{PREFIX}{progress['step']:07d}"

    def write(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            tmp / "trainer_state.pt",
        )
        (tmp / "progress.json").write_text(json.dumps(progress, indent=1))

    _atomic_dir(folder, write)
    for stale in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (unfinished `.tmp` folders are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict:
    """Restore weights, optimizer, scheduler and RNG in place; return the progress record."""
    load_model(model, str(folder / "model.safetensors"))
    state = torch.load(folder / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return json.loads((folder / "progress.json").read_text())


def save_model_dir(folder: Path, model: Any, tokenizer: Any, metadata: dict) -> Path:
    """The run's model/ folder: HF format (safetensors), tokenizer, label map, task metadata."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)  # a peft model: only its adapter and head
        if hasattr(model, "peft_config") and not metadata.get("base_model_path"):
            from gradtune.strategies import save_base  # a from-scratch base exists nowhere else

            save_base(model, tmp / "base")
        if tokenizer is not None:  # a tabular model reads numbers, not text
            tokenizer.save_pretrained(tmp)
        (tmp / "gradtune.json").write_text(json.dumps(metadata, indent=1, ensure_ascii=False))
        labels = metadata.get("labels")
        if labels is not None:
            (tmp / "label_map.json").write_text(
                json.dumps({str(i): name for i, name in enumerate(labels)}, indent=1, ensure_ascii=False)
            )

    return _atomic_dir(Path(folder), write)
