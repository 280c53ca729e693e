"""A trained model read back from its run directory, ready to predict (or, for a language model,
to write text). Inputs are encoded by the run's task exactly as in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoTokenizer

from gradtune import models
from gradtune.data.batching import MODEL_INPUTS, NOT_INPUTS, collate_fn, model_inputs
from gradtune.errors import GradtuneError
from gradtune.inference.generation import generate
from gradtune.rundir import ONNX_MODEL, model_dir, onnx_dir, read_metadata
from gradtune.tasks import get_task


def load_model(path: Path, metadata: dict[str, Any]) -> Any:
    """The model of a model folder: a peft adapter on its base, or a whole model. trust_remote_code
    stays off: a run folder holds only our own safetensors weights."""
    models.register()  # the Auto classes then know the from-scratch families
    if (path / "adapter_config.json").is_file():
        from gradtune.training.strategies.adapters import load_adapter_model

        return load_adapter_model(path, metadata)
    return getattr(transformers, get_task(metadata["task"]).auto_model).from_pretrained(path)


class Predictor:
    """`Predictor(run_dir).predict(["great film", ...])` -> [{"label", "probabilities"}, ...] for
    classification, [{"labels", "probabilities"}, ...] for multilabel, [{"value"}, ...] for regression (in
    the units of the training targets). A tabular model takes rows of feature values:
    `.predict([[120.0, 3], {"area": 80, "rooms": 2}])` -> [{"value"}, ...]. With backend="onnx" the
    logits come from onnxruntime on the run's ONNX export (RUN/onnx, see export/onnx.py); the
    decoding is the same. A causal language model (task causal_lm) writes text instead:
    `.generate("Once upon a time", max_new_tokens=40)`."""

    def __init__(self, run: str | Path, device: str | None = None, backend: str = "torch"):
        if backend not in ("torch", "onnx"):
            raise GradtuneError(f"backend={backend!r}: use 'torch' or 'onnx'")
        self.onnx = None  # backend "onnx": the logits come from onnxruntime, reading RUN/onnx only
        if backend == "onnx":
            from gradtune.inference.onnx_runtime import OnnxModel

            self.path = onnx_dir(run)
            self.onnx = OnnxModel(self.path / ONNX_MODEL)
        else:
            self.path = model_dir(run)
        self.metadata: dict[str, Any] = read_metadata(self.path)
        self.task = get_task(self.metadata["task"])
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() and not self.onnx else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.path) if self.task.uses_tokenizer else None
        self.model = None if self.onnx else load_model(self.path, self.metadata).to(self.device).eval()
        self.num_labels = (self.onnx.num_labels or len(self.labels) or 1) if self.onnx else self.model.config.num_labels
        self.collate = collate_fn(self.tokenizer, self.task.collator(self.tokenizer))

    @property
    def labels(self) -> list[str]:
        """The label names of a classifier or multi-label model ([] for regression)."""
        return list(self.metadata.get("labels", []))

    @torch.no_grad()
    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The logits of one batch of model inputs, from PyTorch or onnxruntime."""
        if self.onnx is not None:
            return torch.from_numpy(self.onnx.logits({k: v.numpy() for k, v in inputs.items()})).float()
        return self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits.float().cpu()

    def _logits(self, features: dict[str, list], batch_size: int) -> torch.Tensor:
        """The logits of encoded features, in order, `batch_size` at a time."""
        names = [k for k in MODEL_INPUTS if k in features and k not in NOT_INPUTS]
        n = len(features[names[0]]) if names else 0
        out = []
        for start in range(0, n, batch_size):
            items = [{k: features[k][i] for k in names} for i in range(start, min(n, start + batch_size))]
            out.append(self.forward(model_inputs(self.collate(items))))
        return torch.cat(out) if out else torch.empty(0, self.num_labels)

    def _refuse_if_writer(self) -> None:
        if self.task.writes_text:
            raise GradtuneError(f"{self.path}: a causal language model writes text; use generate "
                                "(`gradtune generate RUN --prompt ...`), not predict")

    def logits(self, inputs: Any, pairs: list[str] | None = None, batch_size: int = 32) -> torch.Tensor:
        """The model's raw outputs for `inputs` (as predict takes them), one row per input."""
        self._refuse_if_writer()
        rows = self.task.prediction_rows(inputs, pairs, self.metadata)
        return self._logits(self.task.encode_batch(rows, self.tokenizer, self.metadata), batch_size)

    def predict(self, inputs: Any, pairs: list[str] | None = None, batch_size: int = 32) -> list[dict[str, Any]]:
        """Texts (or text pairs); for a tabular model, rows of feature values: a list of numbers in
        feature_columns order or a dict by column name, one row or a list of them."""
        self._refuse_if_writer()
        return self.predict_rows(self.task.prediction_rows(inputs, pairs, self.metadata), batch_size)

    def predict_rows(self, rows: dict[str, list], batch_size: int = 32) -> list[dict[str, Any]]:
        """Results for rows of input columns (column -> values), one per row."""
        features = self.task.encode_batch(rows, self.tokenizer, self.metadata)
        return self.task.decode(self._logits(features, batch_size), features, self.metadata)

    def generate(self, prompt: str, max_new_tokens: int = 50, temperature: float = 1.0, top_p: float = 1.0,
                 greedy: bool = False, seed: int | None = None) -> str:
        """Continue `prompt` (task causal_lm); see inference/generation.py."""
        if not self.task.writes_text:
            raise GradtuneError(f"{self.path}: a {self.metadata['task']} model predicts, it does not write text; "
                                "use predict (generate is for runs of task causal_lm)")
        return generate(self.model, self.tokenizer, prompt, max_new_tokens, temperature, top_p, greedy, seed)
