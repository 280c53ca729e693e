"""The Python API that the CLI and users call: train, evaluate, load, predict_file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradtune.config import Config, as_config
from gradtune.errors import GradtuneError
from gradtune.folders import FolderLock, writable_file
from gradtune.inference.predictor import Predictor
from gradtune.rundir import RunDir, start_training
from gradtune.tracking.console import console, log


@dataclass
class Run:
    """What `train` returns: where the run lives and how it went."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)  # the last validation result
    test_metrics: dict[str, Any] = field(default_factory=dict)  # the best model on data.test
    best_metric: float | None = None
    best_step: int | None = None
    steps: int = 0
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    report: Path | None = None  # RUN/report/index.html (None: report=false, or it failed)

    def predictor(self) -> Predictor:
        return Predictor(self.run_dir)


def train(
    config: Config | dict | str | Path, overrides: list[str] | None = None, *, resume: bool = False,
    overwrite: bool = False, on_eval: Callable[[int, dict[str, Any]], str | None] | None = None,
) -> Run:
    """Train from a config (object, dict or YAML path) plus `key=value` overrides. `on_eval(step,
    metrics)` is called after each evaluation; a reason it returns stops training there (as a
    sweep's pruner does)."""
    cfg = as_config(config, overrides)
    run = RunDir(Path(cfg.output_dir))
    # one live run per folder (under torchrun the main process owns it); this also checks, before any
    # work, that output_dir can be written
    owner = FolderLock(run.path, "output_dir", log.warning) if os.environ.get("RANK", "0") == "0" else nullcontext()
    with owner:
        resume_from, changed = start_training(run, cfg.model_dump(mode="json"), resume, overwrite)
        if changed:
            log.warning(f"Resuming with a config that differs from the run's in: {', '.join(changed)}")
        progress = _train(cfg, run, resume_from, on_eval)
        test_metrics = {}
        if cfg.data.test:
            test_metrics = evaluate(run.path, cfg.data.test, cfg.train.eval_batch_size or 2 * cfg.train.batch_size)
            run.test_metrics.write_text(json.dumps(test_metrics, indent=1))
        report = _report(run) if cfg.report and os.environ.get("RANK", "0") == "0" else None
    return Run(
        run_dir=run.path, metrics=progress.last_eval, test_metrics=test_metrics, best_metric=progress.best_metric,
        best_step=progress.best_step, steps=progress.step, train_seconds=progress.train_seconds,
        samples_per_second=progress.samples / max(progress.train_seconds, 1e-9), report=report,
    )


def _report(run: RunDir) -> Path | None:
    """RUN/report/ at the end of training. A failure warns: the trained run stays complete."""
    from gradtune.report import write_report

    try:
        page = write_report(run.path)
    except Exception as e:  # the report is a view of the run; never lose the run over it
        log.warning(f"The report could not be written ({type(e).__name__}: {e}); the run itself is complete. "
                    f"Try again with `gradtune report {run.path}`")
        return None
    console.print(f"Report: {page}")
    return page


def _train(cfg: Config, run: RunDir, resume_from: Path | None, on_eval: Callable | None = None) -> Any:
    """Prepare the job, record the config, say what trains, and run the loop."""
    from gradtune.training.loop import fit
    from gradtune.training.prepare import prepare

    job = prepare(cfg, run.path)
    job.resume_from, job.on_eval = resume_from, on_eval
    run.path.mkdir(parents=True, exist_ok=True)
    run.config.write_text(cfg.to_yaml())
    counts = job.metadata["parameters"]  # of the whole model (the loop may run only its head)
    labels = job.metadata.get("labels")
    what = f"{len(labels)} labels" if labels else cfg.task
    examples, rows = job.metadata.get("train_examples", len(job.train_loader.dataset)), len(job.train_loader.dataset)
    kind = "packed rows" if cfg.data.packing else "features"
    packed = f" ({rows} {kind})" if rows != examples else ""
    say = console.print if os.environ.get("RANK", "0") == "0" else (lambda *a, **k: None)  # once, not per process
    say(f"Training {cfg.model.name} ({counts['total'] / 1e6:.1f}M parameters) on {examples} "
        f"examples{packed}, {what} -> {run.path}")
    say(f"Strategy {cfg.strategy.method}: {counts['trainable']:,} of {counts['total']:,} parameters "
        f"train ({counts['percent']:.3g}%)")
    return fit(job)


def load(run: str | Path, backend: str = "torch", num_beams: int | None = None,
         max_new_tokens: int | None = None, quantize: str | None = None) -> Predictor:
    """The trained model of a run directory, with `.predict(texts)` (causal_lm: `.generate(prompt)`);
    backend="onnx" predicts with onnxruntime from the run's ONNX export
    (`gradtune export RUN --format onnx --output RUN/onnx`), quantize="int8" with its int8 model
    (`export ... --quantize int8`). seq2seq: `num_beams` and `max_new_tokens` replace the decoding
    the run was trained with."""
    return Predictor(run, backend=backend, num_beams=num_beams, max_new_tokens=max_new_tokens, quantize=quantize)


def evaluate(run: str | Path, data: str | Path, batch_size: int = 64, num_beams: int | None = None,
             max_new_tokens: int | None = None, backend: str = "torch", quantize: str | None = None) -> dict[str, Any]:
    """Metrics of a trained run on a labelled file (same columns as in training), read chunk by chunk
    (memory stays flat as the file grows; the metrics are the task's streamed counts and sums, the
    same as in one piece). backend="onnx" (quantize="int8") scores the ONNX export; seq2seq writes the
    targets with `num_beams` / `max_new_tokens` when given."""
    import torch
    from accelerate import Accelerator

    from gradtune.data.files import read_table, require_columns
    from gradtune.inference.streaming import StreamedBatches

    predictor = Predictor(run, backend=backend, quantize=quantize, num_beams=num_beams, max_new_tokens=max_new_tokens)
    task, meta = predictor.task, predictor.metadata
    model = predictor.model
    if predictor.onnx is not None:
        from gradtune.inference.onnx_runtime import OnnxModule

        model = OnnxModule(predictor.onnx)
    collator = task.collator(predictor.tokenizer, predictor.model)
    if task.name == "qa":  # its evaluate reads every window (offsets, context, answers) from loader.dataset
        from gradtune.data.batching import make_loader
        from gradtune.data.rows import load_split

        ds, _ = load_split(data, task.columns(meta, labelled=task.labelled), task.text_keys, skip_hint="")
        ds = task.encode(ds, data, predictor.tokenizer, meta, labelled=task.labelled)
        loader = make_loader(ds, predictor.tokenizer, batch_size, seed=0, shuffle=False, collator=collator)
    else:
        ds = read_table(data)
        require_columns(ds, data, task.columns(meta, labelled=task.labelled))
        loader = StreamedBatches(ds, data, task, predictor.tokenizer, meta, batch_size, collator)
    accelerator = Accelerator(cpu=predictor.device.type == "cpu")
    with torch.inference_mode():
        result = task.evaluate(model, loader, accelerator, meta)
    # rows, not features (a long qa context gives several windows)
    result["examples"] = loader.rows if isinstance(loader, StreamedBatches) else len(set(ds["_row"]))
    return result


def predict_file(run: str | Path, input_path: str | Path, output_path: str | Path, backend: str = "torch",
                 on_empty: str = "error", num_beams: int | None = None, max_new_tokens: int | None = None,
                 quantize: str | None = None, batch_size: int | None = None) -> int:
    """Predict every row of a file; write CSV (the text, or a tabular model's input columns, then the
    task's columns: label(s) and one probability per label, or value) or JSON lines, chosen by the
    output's extension. The file is read and written chunk by chunk, so memory stays flat as it grows.
    A row with an empty text is an error naming its line, as in training; with on_empty="skip" it is
    left out of the output (and the count reported). Returns the rows written."""
    from gradtune.data.files import read_table, require_columns
    from gradtune.inference.predictor import BATCH_SIZE
    from gradtune.inference.streaming import PredictionWriter, chunks, release_freed_memory, without_empty

    if on_empty not in ("error", "skip"):
        raise GradtuneError(f"on_empty={on_empty!r}: use 'error' or 'skip'")
    output_path = writable_file(output_path, "--output", (".csv", ".jsonl", ".json"))
    predictor = Predictor(run, backend=backend, num_beams=num_beams, max_new_tokens=max_new_tokens, quantize=quantize)
    task, meta = predictor.task, predictor.metadata
    ds = read_table(input_path)
    require_columns(ds, input_path, task.columns(meta, labelled=False))
    skipped = 0
    with PredictionWriter(output_path, task, meta) as writer:
        for chunk in chunks(ds):
            chunk, dropped = without_empty(chunk, input_path, task.text_columns(meta), on_empty, "pass --on-empty skip")
            skipped += dropped
            if len(chunk):
                rows = task.file_rows(chunk, input_path, meta)
                writer.write(task.shown_inputs(rows, meta), predictor.predict_rows(rows, batch_size or BATCH_SIZE))
            release_freed_memory()
    if skipped:
        log.warning(f"Skipped {skipped} row(s) of {input_path} with empty text (--on-empty skip)")
    return writer.count


__all__ = ["Run", "train", "load", "evaluate", "predict_file"]
