"""`gradtune predict RUN (--text T ... | --input FILE --output FILE) [--backend onnx [--quantize int8]]`."""

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
    pair: list[str] | None = typer.Option(None, "--pair", help="the second text of each --text, in order: a "
                                          "sentence-pair model's second sentence, qa's context"),
    input: Path | None = typer.Option(None, "--input", help="file of texts (same text column as training)"),
    output: Path | None = typer.Option(None, "--output", help=".csv or .jsonl for --input's predictions"),
    backend: str = typer.Option("torch", "--backend", help="torch, or onnx: onnxruntime on RUN/onnx"),
    quantize: str | None = typer.Option(None, "--quantize", help="int8: with --backend onnx, the int8 model "
                                        "(RUN/onnx/model.int8.onnx, from export --quantize int8)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="texts per forward pass (batched longest first)"),
    on_empty: str = typer.Option("error", "--on-empty", help="an empty text: error (the default), or skip it"),
    num_beams: int | None = typer.Option(None, "--num-beams", help="seq2seq: beams of the beam search "
                                         "(default: the run's train.num_beams)"),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="seq2seq: the longest target "
                                              "(default: the run's train.max_new_tokens)"),
) -> None:
    """Predict labels with probabilities (classification, multilabel), values (regression), answer
    spans (qa: --text QUESTION --pair CONTEXT) or written targets (seq2seq)."""
    from gradtune.api import load, predict_file
    from gradtune.errors import GradtuneError

    if bool(text) == bool(input):
        raise GradtuneError("give either --text (one or more) or --input FILE --output FILE")
    if input:
        if output is None:
            raise GradtuneError("--input needs --output FILE (.csv or .jsonl)")
        n = predict_file(run, input, output, backend=backend, on_empty=on_empty, num_beams=num_beams,
                         max_new_tokens=max_new_tokens, quantize=quantize, batch_size=batch_size)
        out.print(f"Wrote {n} predictions to {output}")
        return
    if pair and len(pair) != len(text):
        raise GradtuneError(f"give one --pair per --text ({len(text)} --text, {len(pair)} --pair)")
    predictor = load(run, backend=backend, num_beams=num_beams, max_new_tokens=max_new_tokens, quantize=quantize)
    if predictor.task.name == "qa" and not pair:
        raise GradtuneError("a qa model answers a question from a context: give each --text QUESTION a "
                            "--pair CONTEXT (or --input FILE with question and context columns)")
    results = predictor.predict(list(text), pairs=list(pair) if pair else None, on_empty=on_empty,
                                batch_size=batch_size)
    for i, (t, result) in enumerate(zip(text, results)):
        given = {"question": t, "context": pair[i]} if predictor.task.name == "qa" else {"text": t}
        if pair and predictor.task.name != "qa":
            given["pair"] = pair[i]
        print(json.dumps({**given, **(result or {"skipped": "empty text"})}, ensure_ascii=False))  # one per line
