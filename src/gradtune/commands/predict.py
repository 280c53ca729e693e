"""`gradtune predict RUN (--text T ... | --input FILE --output FILE) [--backend onnx]`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors, out


@app.command()
@friendly_errors
def predict(
    run: Path = typer.Argument(..., help="run directory"),
    text: list[str] | None = typer.Option(None, "--text", help="a text to predict for (repeatable)"),
    input: Path | None = typer.Option(None, "--input", help="file of texts (same text column as training)"),
    output: Path | None = typer.Option(None, "--output", help=".csv or .jsonl for --input's predictions"),
    backend: str = typer.Option("torch", "--backend", help="torch, or onnx: onnxruntime on RUN/onnx"),
    on_empty: str = typer.Option("error", "--on-empty", help="an empty text: error (the default), or skip it"),
) -> None:
    """Predict labels with probabilities (classification, multilabel) or values (regression)."""
    from gradtune.api import load, predict_file
    from gradtune.errors import GradtuneError

    if bool(text) == bool(input):
        raise GradtuneError("give either --text (one or more) or --input FILE --output FILE")
    if input:
        if output is None:
            raise GradtuneError("--input needs --output FILE (.csv or .jsonl)")
        n = predict_file(run, input, output, backend=backend, on_empty=on_empty)
        out.print(f"Wrote {n} predictions to {output}")
        return
    for t, result in zip(text, load(run, backend=backend).predict(list(text), on_empty=on_empty)):
        print(json.dumps({"text": t, **(result or {"skipped": "empty text"})}, ensure_ascii=False))  # one per line
