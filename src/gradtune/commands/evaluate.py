"""`gradtune eval RUN --data FILE [--output METRICS.json] [--backend onnx [--quantize int8]]`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors, out
from gradtune.commands.tables import metrics_table


@app.command("eval")
@friendly_errors
def eval_command(
    run: Path = typer.Argument(..., help="run directory (the output_dir of a training run)"),
    data: Path = typer.Option(..., "--data", help="labelled file with the training columns"),
    output: Path | None = typer.Option(None, "--output", help="write the metrics as JSON"),
    backend: str = typer.Option("torch", "--backend", help="torch, or onnx: onnxruntime on RUN/onnx"),
    quantize: str | None = typer.Option(None, "--quantize", help="int8: with --backend onnx, the int8 model "
                                        "(RUN/onnx/model.int8.onnx, from export --quantize int8)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="examples per forward pass"),
    num_beams: int | None = typer.Option(None, "--num-beams", help="seq2seq: beams of the beam search "
                                         "(default: the run's train.num_beams)"),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="seq2seq: the longest target "
                                              "(default: the run's train.max_new_tokens)"),
) -> None:
    """Evaluate a trained run on a labelled file (read chunk by chunk: memory stays flat as it grows)."""
    from gradtune.api import evaluate
    from gradtune.folders import writable_file

    if output:  # checked before the work, not after it
        writable_file(output, "--output", (".json",))
    metrics = evaluate(run, data, batch_size=batch_size, num_beams=num_beams, max_new_tokens=max_new_tokens,
                       backend=backend, quantize=quantize)
    out.print(metrics_table(f"{data}", metrics))
    if output:
        output.write_text(json.dumps(metrics, indent=1))
        out.print(f"Wrote {output}")
