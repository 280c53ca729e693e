"""An onnxruntime session over a run's ONNX export (`gradtune export RUN --format onnx`), mapping
named inputs to logits, with the graph optimizations on and torch's thread count. onnxruntime is an
optional extra: `pip install 'gradtune[onnx]'`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from gradtune.errors import GradtuneError
from gradtune.rundir import ONNX_MODEL

INSTALL = "pip install 'gradtune[onnx]'"
# the models an export folder may hold: float32 `model.onnx`, and what `export --quantize` adds beside it
QUANTIZED = {"int8": "model.int8.onnx"}


def require(module: str) -> Any:
    """An optional ONNX package, or an error that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GradtuneError(f"ONNX needs the {module} package, which is not installed: {INSTALL}") from None


def onnx_file(folder: Path, quantize: str | None = None) -> Path:
    """The model file of an export folder: model.onnx, or its quantized twin."""
    if quantize is None:
        return folder / ONNX_MODEL
    if quantize not in QUANTIZED:
        raise GradtuneError(f"quantize={quantize!r}: choose one of {', '.join(QUANTIZED)}")
    path = folder / QUANTIZED[quantize]
    if not path.is_file():
        run = folder.parent if folder.name == "onnx" else folder
        raise GradtuneError(f"{folder}: no {quantize} model (looked for {path}); create it with "
                            f"`gradtune export {run} --format onnx --quantize {quantize} --output {folder}`")
    return path


class OnnxModel:
    """An onnxruntime session that maps named inputs to logits. All graph optimizations are on
    (fused attention, GELU and layer norm: measured in benchmarks/predict_vs_pipeline.py); `threads`
    sets the intra-op threads (the predictor passes torch's, so both backends use the cores alike)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1  # one graph at a time: a second pool would only compete for the cores
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        width = self.session.get_outputs()[0].shape[-1]
        self.num_labels = width if isinstance(width, int) else None

    def logits(self, inputs: dict[str, Any]) -> np.ndarray:
        """`inputs` may hold more than the graph reads (a tokenizer's token_type_ids for a model
        that has none); the graph's own inputs must all be there."""
        missing = [n for n in self.inputs if n not in inputs]
        if missing:
            raise GradtuneError(f"the ONNX model needs the inputs {', '.join(missing)}, which were not given")
        feed = {n: np.asarray(inputs[n]) for n in self.inputs}
        return self.session.run(["logits"], feed)[0]


class OnnxModule(torch.nn.Module):
    """An ONNX model where a task's evaluation expects a PyTorch one: `module(**batch).logits`, so
    `gradtune eval --backend onnx` scores the export with the task's own streamed metrics."""

    def __init__(self, model: OnnxModel):
        super().__init__()
        self.onnx = model

    def forward(self, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=torch.from_numpy(self.onnx.logits(
            {k: v.cpu().numpy() for k, v in inputs.items()})).float())
