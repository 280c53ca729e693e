"""int8 ONNX: onnxruntime's dynamic quantization of an export (`gradtune export RUN --format onnx
--quantize int8`), and what it costs in accuracy, measured on the run's validation file.

`quantize_int8(folder)` writes `model.int8.onnx` beside `model.onnx`: the weights of every MatMul
(and Gemm, LSTM, ...) as int8 with one scale per tensor, the activations quantized on the fly per batch.
`compare_int8(run, folder)` predicts and scores the run's data.validation with both models and says how
often they agree and how the metrics moved, or why it cannot (no validation file, or not readable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gradtune.errors import GradtuneError
from gradtune.inference.onnx_runtime import QUANTIZED, OnnxModel, require
from gradtune.rundir import ONNX_MODEL, RunDir


def quantize_int8(folder: Path) -> Path:
    """`folder/model.onnx` -> `folder/model.int8.onnx` (int8 weights, QInt8), checked to load."""
    quantization = require("onnxruntime.quantization")
    source, target = folder / ONNX_MODEL, folder / QUANTIZED["int8"]
    try:
        quantization.quantize_dynamic(source, target, weight_type=quantization.QuantType.QInt8)
        OnnxModel(target)
    except Exception as e:  # onnxruntime raises many types; the first line says what failed
        target.unlink(missing_ok=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GradtuneError(f"{source} could not be quantized to int8: {first}") from None
    return target


@dataclass
class QuantCheck:
    """float32 vs int8 on the run's validation file; `reason` says why nothing was measured."""

    data: Path | None = None
    rows: int = 0
    same: int = 0  # rows whose label(s) (qa: answer) are the same with both models
    largest_value_change: float | None = None  # regression: the largest |int8 - float32| of a value
    before: dict[str, Any] = field(default_factory=dict)  # metrics with model.onnx
    after: dict[str, Any] = field(default_factory=dict)  # with model.int8.onnx
    metrics: tuple[str, ...] = ()  # the ones to show, the run's train.metric first
    reason: str | None = None


def validation_file(run: Path) -> tuple[Path | None, str | None, str | None]:
    """The run's data.validation and train.metric, or why there is no file to measure on."""
    config = RunDir(run).config
    if not config.is_file():
        return None, None, f"{run} has no config.yaml to find data.validation in"
    settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    data, metric = settings.get("data") or {}, (settings.get("train") or {}).get("metric")
    path = data.get("validation")
    if not path:
        how = "data.validation_split of its training file, which export does not rebuild" \
            if data.get("validation_split") else "no validation data"
        return None, metric, f"the run's config has no data.validation file (it used {how})"
    path = Path(path)
    if not path.is_file():
        return None, metric, (f"data.validation {path} is not readable from here (a relative path is read from "
                              f"{Path.cwd()})")
    return path, metric, None


def compare_int8(run: str | Path, folder: Path, batch_size: int = 64) -> QuantCheck:
    """Predict and score data.validation with model.onnx and model.int8.onnx."""
    from gradtune.api import evaluate
    from gradtune.data.files import read_table
    from gradtune.inference.predictor import Predictor
    from gradtune.inference.streaming import chunks, without_empty

    path, metric, reason = validation_file(Path(run))
    if path is None:
        return QuantCheck(reason=reason)
    check = QuantCheck(data=path)
    results: dict[str | None, list[dict[str, Any]]] = {}
    for quantize in (None, "int8"):
        predictor = Predictor(folder, backend="onnx", quantize=quantize)
        task, meta = predictor.task, predictor.metadata
        out = results.setdefault(quantize, [])
        for chunk in chunks(read_table(path)):
            chunk, _ = without_empty(chunk, path, task.text_columns(meta), "skip", "")
            if len(chunk):
                out += predictor.predict_rows(task.file_rows(chunk, path, meta), batch_size)
        scores = evaluate(folder, path, batch_size, backend="onnx", quantize=quantize)
        if quantize is None:
            check.before = scores
        else:
            check.after = scores
    shown = [m for m in (metric, *task.shown_metrics) if m and isinstance(check.before.get(m), (int, float))]
    check.metrics = tuple(dict.fromkeys(shown))
    a, b = results[None], results["int8"]
    check.rows = len(a)
    keys = [k for k in ("label", "labels", "answer", "generated_text") if a and k in a[0]]
    check.same = sum(all(x[k] == y[k] for k in keys) for x, y in zip(a, b)) if keys else 0
    if a and "value" in a[0]:
        check.largest_value_change = max(abs(x["value"] - y["value"]) for x, y in zip(a, b))
    return check
