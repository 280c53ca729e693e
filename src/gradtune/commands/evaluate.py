"""`gradtune eval RUN --data FILE [--output METRICS.json]`."""

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
    num_beams: int | None = typer.Option(None, "--num-beams", help="seq2seq: beams of the beam search "
                                         "(default: the run's train.num_beams)"),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="seq2seq: the longest target "
                                              "(default: the run's train.max_new_tokens)"),
) -> None:
    """Evaluate a trained run on a labelled file."""
    from gradtune.api import evaluate
    from gradtune.folders import writable_file

    if output:  # checked before the work, not after it
        writable_file(output, "--output", (".json",))
    metrics = evaluate(run, data, num_beams=num_beams, max_new_tokens=max_new_tokens)
    out.print(metrics_table(f"{data}", metrics))
    if output:
        output.write_text(json.dumps(metrics, indent=1))
        out.print(f"Wrote {output}")
