"""`gradtune export RUN --output DIR [--format hf|onnx] [--merge] [--quantize int8]`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gradtune.commands.app import app, friendly_errors, out


@app.command()
@friendly_errors
def export(
    run: Path = typer.Argument(..., help="run directory"),
    output: Path = typer.Option(..., "--output", help="folder to write, e.g. RUN/onnx"),
    merge: bool = typer.Option(False, "--merge", help="merge adapters into the base weights (format hf)"),
    format: str = typer.Option("hf", "--format", help="hf (a Hugging Face model folder) or onnx"),
    quantize: str | None = typer.Option(None, "--quantize", help="int8 (format onnx): also write model.int8.onnx "
                                        "(int8 weights) and measure its accuracy change on data.validation"),
) -> None:
    """Export a trained run: a Hugging Face folder (--format hf; --merge folds a lora/dora/ia3 adapter
    into the base weights) or an ONNX model (--format onnx; --quantize int8 adds an int8 model)."""
    from gradtune.errors import GradtuneError
    from gradtune.export import export as export_run
    from gradtune.rundir import onnx_dir

    result = export_run(run, output, merge=merge, format=format, quantize=quantize)
    if result.format == "hf":
        out.print(f"Wrote {result.folder}" + (" (adapter merged into the base weights)" if merge else ""))
        return
    axes = "" if result.inputs == ["features"] else " and sequence"
    out.print(f"Wrote {result.folder}/model.onnx (inputs: {', '.join(result.inputs)}; dynamic batch{axes} axes) "
              f"with its tokenizer and gradtune.json; onnxruntime matches PyTorch to {result.max_abs_diff:.1e}",
              highlight=False)
    try:
        where = run if onnx_dir(run).resolve() == output.resolve() else output
    except GradtuneError:  # exported somewhere that `predict RUN` does not look
        where = output
    if result.quantized is not None:
        say_int8(result)
    flag = " --quantize int8" if result.quantized is not None else ""
    out.print(f"Predict with it: gradtune predict {where} --backend onnx{flag} --text \"...\"", highlight=False)


def say_int8(result: Any) -> None:
    """The int8 model's size and what it changed on the validation file."""
    size = result.quantized.stat().st_size / 1e6
    full = (result.folder / "model.onnx").stat().st_size / 1e6
    out.print(f"Wrote {result.quantized} (int8 weights: {size:.1f} MB, float32 {full:.1f} MB)", highlight=False)
    check = result.quant_check
    if check.reason:
        out.print(f"The int8 accuracy change is not measured: {check.reason}. Measure it with gradtune eval RUN "
                  "--data FILE --backend onnx --quantize int8", highlight=False)
        return
    agree = f"same prediction for {check.same} of {check.rows} rows ({100 * check.same / max(check.rows, 1):.2f}%)"
    if check.largest_value_change is not None:
        agree = f"largest change of a value {check.largest_value_change:.3g}"
    changes = ", ".join(f"{m} {check.before[m]:.4f} -> {check.after[m]:.4f} ({check.after[m] - check.before[m]:+.4f})"
                        for m in check.metrics)
    out.print(f"int8 vs float32 on data.validation ({check.data}): {agree}; {changes}", highlight=False)
