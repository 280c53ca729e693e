"""An onnxruntime session over a run's ONNX export (`gradtune export RUN --format onnx`), mapping
named inputs to logits. onnxruntime is an optional extra: `pip install 'gradtune[onnx]'`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from gradtune.errors import GradtuneError

INSTALL = "pip install 'gradtune[onnx]'"


def require(module: str) -> Any:
    """An optional ONNX package, or an error that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GradtuneError(f"ONNX needs the {module} package, which is not installed: {INSTALL}") from None


class OnnxModel:
    """An onnxruntime session that maps named inputs to logits."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
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
