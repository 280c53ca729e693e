"""The run directory: what `train` writes, and the only place that knows where each thing lives.
Everything after training (eval, predict, generate, export, compare) reads a run through here.

    RUN/
      config.yaml            the resolved config (`--resume` compares the new one against it)
      metrics.jsonl          one JSON record per logged step, per evaluation, and the setup
      checkpoints/step-0000120/   resumable state (weights, optimizer, progress); newest K kept
      model/                 the best (or final) model: weights (safetensors), tokenizer,
                             gradtune.json (task, labels, inputs, strategy), label_map.json
      test_metrics.json      data.test scored with the best model
      report/                index.html (one self-contained page) and its PNGs: `gradtune report RUN`
      onnx/                  `gradtune export RUN --format onnx --output RUN/onnx`
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradtune.errors import GradtuneError
from gradtune.folders import atomic_dir, recover

METADATA = "gradtune.json"  # in model/ (and an export): what the task and the inputs were
LABEL_MAP = "label_map.json"
ONNX_MODEL = "model.onnx"
CHECKPOINT_PREFIX = "step-"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def test_metrics(self) -> Path:
        return self.path / "test_metrics.json"

    @property
    def report(self) -> Path:
        return self.path / "report"

    @property
    def onnx(self) -> Path:
        return self.path / "onnx"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{step:07d}"

    def list_checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (unfinished `.tmp` folders are ignored)."""
        if not self.checkpoints.is_dir():
            return []
        n = len(CHECKPOINT_PREFIX)
        found = [p for p in self.checkpoints.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and p.name[n:].isdigit()]
        return sorted(found, key=lambda p: int(p.name[n:]))

    def holds_a_run(self) -> bool:
        """Whether a run wrote here: any of its files (a run that failed before its first checkpoint
        still has its log and config)."""
        return any(p.exists() for p in (self.config, self.metrics, self.checkpoints, self.model)) or any(
            self.path.glob("model.*"))

    def clear(self) -> None:
        """Remove what a training run writes (for --overwrite); anything else in the folder stays."""
        leftovers = list(self.path.glob("model.*"))  # an interrupted replacement of model/
        for target in (self.checkpoints, self.model, self.metrics, self.config, self.test_metrics, self.report,
                       *leftovers):
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def model_dir(run: str | Path) -> Path:
    """The model folder of a run: accepts the run directory or its model/ folder (or an export).
    While training replaces model/ (or after a crash in the middle of it), the complete new or old
    folder beside it is read instead; only the run's owner moves folders (rundir.start_training)."""
    run = Path(run)
    model = RunDir(run).model
    for candidate in (model, model.with_name("model.new"), model.with_name("model.old"), run):
        if (candidate / METADATA).is_file():
            return candidate
    raise GradtuneError(
        f"{run}: not a gradtune run (no model/{METADATA}); pass the output_dir of a finished `gradtune train`"
    )


def onnx_dir(run: str | Path) -> Path:
    """The ONNX export of a run: RUN/onnx (also when given RUN/model), or an exported folder itself."""
    run = Path(run)
    candidates = [run, RunDir(run).onnx] + ([RunDir(run.parent).onnx] if run.name == "model" else [])
    for folder in candidates:
        if (folder / ONNX_MODEL).is_file() and (folder / METADATA).is_file():
            return folder
    raise GradtuneError(
        f"{run}: no ONNX export (looked for {RunDir(run).onnx / ONNX_MODEL}); create it with "
        f"`gradtune export {run} --format onnx --output {RunDir(run).onnx}`"
    )


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """A model folder's gradtune.json."""
    return json.loads((Path(folder) / METADATA).read_text())


def write_model_dir(folder: Path, save_weights: Callable[[Path], None], tokenizer: Any, metadata: dict) -> Path:
    """A model folder, written atomically: the weights (`save_weights(tmp)`, safetensors), the
    tokenizer (none for a model that reads numbers), gradtune.json and the label map."""

    def write(tmp: Path) -> None:
        save_weights(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / METADATA).write_text(json.dumps(metadata, indent=1, ensure_ascii=False))
        labels = metadata.get("labels")
        if labels is not None:
            (tmp / LABEL_MAP).write_text(
                json.dumps({str(i): name for i, name in enumerate(labels)}, indent=1, ensure_ascii=False))

    return atomic_dir(Path(folder), write)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def start_training(run: RunDir, config: dict[str, Any], resume: bool, overwrite: bool) -> tuple[Path | None, list[str]]:
    """Decide where training starts: the newest checkpoint (resume), or a clean directory. Returns
    the checkpoint to resume from (None: a fresh start) and, on resume, the config keys that differ
    from the run's saved config.yaml."""
    import yaml

    recover(run.model)  # a model/ replacement that a crash interrupted: finish or undo it
    if resume:
        checkpoints = run.list_checkpoints()
        if not checkpoints:
            raise GradtuneError(f"{run.checkpoints}: no checkpoint to resume from; start without --resume "
                                "(Python: resume=False), with --overwrite (overwrite=True) if the folder holds a run")
        changed: list[str] = []
        if run.config.is_file():
            old, new = _flatten(yaml.safe_load(run.config.read_text())), _flatten(config)
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        return checkpoints[-1], changed
    if run.holds_a_run():
        if not overwrite:
            raise GradtuneError(
                f"output_dir {run.path} already holds a run; continue it with --resume (Python: resume=True), "
                "replace it with --overwrite (overwrite=True), or choose another output_dir=..."
            )
        if os.environ.get("RANK", "0") == "0":  # torchrun: the main process clears the folder
            run.clear()
    return None, []
