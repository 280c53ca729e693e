"""`gradtune export`: a trained run as a folder that stands on its own, in one of two formats:
a Hugging Face model folder (hf.py; --merge folds a lora/dora/ia3 adapter into the base weights) or
an ONNX model checked against PyTorch (onnx.py; needs the `onnx` extra)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gradtune.errors import GradtuneError

FORMATS = ("hf", "onnx")


@dataclass
class Exported:
    """What `export` wrote."""

    folder: Path
    format: str
    merged: bool = False
    inputs: list[str] = field(default_factory=list)  # onnx: the graph's inputs
    max_abs_diff: float | None = None  # onnx: |onnxruntime - torch| on the check batch


def export(run: str | Path, output: str | Path, merge: bool = False, format: str = "hf") -> Exported:
    """Export the run's model to `output` in `format`."""
    if format not in FORMATS:
        raise GradtuneError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if format == "onnx":
        if merge:
            raise GradtuneError("--merge applies to --format hf; an ONNX export always holds the whole model")
        from gradtune.export.onnx import export_onnx

        result = export_onnx(run, output)
        return Exported(result.folder, format, inputs=result.inputs, max_abs_diff=result.max_abs_diff)
    from gradtune.export.hf import export_copy, export_merged

    return Exported(export_merged(run, output) if merge else export_copy(run, output), format, merged=merge)
