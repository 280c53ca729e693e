"""`gradtune export`: a trained run as a folder that stands on its own, in one of two formats:
a Hugging Face model folder (hf.py; --merge folds a lora/dora/ia3 adapter into the base weights) or
an ONNX model checked against PyTorch (onnx.py; needs the `onnx` extra)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    quantized: Path | None = None  # onnx --quantize int8: model.int8.onnx beside model.onnx
    quant_check: Any = None  # export.quantize.QuantCheck: int8 vs float32 on the run's validation file


def export(run: str | Path, output: str | Path, merge: bool = False, format: str = "hf",
           quantize: str | None = None) -> Exported:
    """Export the run's model to `output` in `format`; with quantize="int8" (onnx) also its int8 twin,
    and the accuracy change measured on the run's validation file."""
    if format not in FORMATS:
        raise GradtuneError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if quantize is not None and (format != "onnx" or quantize != "int8"):
        raise GradtuneError(f"--quantize {quantize}: the one quantization is int8, of an ONNX export (--format onnx)")
    if format == "onnx":
        if merge:
            raise GradtuneError("--merge applies to --format hf; an ONNX export always holds the whole model")
        from gradtune.export.onnx import export_onnx

        result = export_onnx(run, output)
        exported = Exported(result.folder, format, inputs=result.inputs, max_abs_diff=result.max_abs_diff)
        if quantize:
            from gradtune.export.quantize import compare_int8, quantize_int8

            exported.quantized = quantize_int8(result.folder)
            exported.quant_check = compare_int8(run, result.folder)
        return exported
    from gradtune.export.hf import export_copy, export_merged

    return Exported(export_merged(run, output) if merge else export_copy(run, output), format, merged=merge)
