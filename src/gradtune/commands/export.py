"""`gradtune export RUN --output DIR [--format hf|onnx] [--merge]`."""

from __future__ import annotations

from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors, out


@app.command()
@friendly_errors
def export(
    run: Path = typer.Argument(..., help="run directory"),
    output: Path = typer.Option(..., "--output", help="folder to write, e.g. RUN/onnx"),
    merge: bool = typer.Option(False, "--merge", help="merge adapters into the base weights (format hf)"),
    format: str = typer.Option("hf", "--format", help="hf (a Hugging Face model folder) or onnx"),
) -> None:
    """Export a trained run: a Hugging Face folder (--format hf; --merge folds a lora/dora/ia3 adapter
    into the base weights) or an ONNX model (--format onnx)."""
    from gradtune.errors import GradtuneError
    from gradtune.export import export as export_run
    from gradtune.rundir import onnx_dir

    result = export_run(run, output, merge=merge, format=format)
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
    out.print(f"Predict with it: gradtune predict {where} --backend onnx --text \"...\"", highlight=False)
