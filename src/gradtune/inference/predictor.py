"""A trained model read back from its run directory, ready to predict (or, for a language model,
to write text). Inputs are encoded by the run's task exactly as in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoTokenizer
from transformers.utils.logging import disable_progress_bar

from gradtune import models
from gradtune.data.batching import MODEL_INPUTS, NOT_INPUTS, collate_fn, logits_of, model_inputs
from gradtune.data.rows import is_empty
from gradtune.errors import GradtuneError
from gradtune.inference.generation import generate
from gradtune.rundir import model_dir, onnx_dir, read_metadata
from gradtune.tasks import get_task
from gradtune.tasks.base import Task
from gradtune.tracking.console import log

disable_progress_bar()  # a "Loading weights" bar before every prediction is noise in piped output


# texts per forward pass: on MiniLM (2 cores) 64 length-sorted texts ran faster than 32, 128 or 256
# (443 vs 411, 345, 266 texts/s with torch; docs/export.md#measured)
BATCH_SIZE = 64


def by_length(features: dict[str, list], n: int) -> list[int]:
    """The order to batch `n` features in: longest first (by `length`, or the token count), so that
    texts of one batch are padded to about the same length; features without tokens keep theirs."""
    lengths = features.get("length") or features.get("input_ids")
    if lengths is None:
        return list(range(n))
    if "length" not in features:
        lengths = [len(ids) for ids in lengths]
    return sorted(range(n), key=lambda i: -lengths[i])  # stable: equal lengths keep the input order


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
    logits come from onnxruntime on the run's ONNX export (RUN/onnx, see export/onnx.py), and with
    quantize="int8" from its int8 model (`export --quantize int8`); the decoding is the same. A causal
    language model (task causal_lm) writes text instead: `.generate("Once upon a time", max_new_tokens=40)`.
    A seq2seq model writes its targets with the beams and length limit it was trained with, or with
    `num_beams` / `max_new_tokens` given here."""

    def __init__(self, run: str | Path, device: str | None = None, backend: str = "torch",
                 num_beams: int | None = None, max_new_tokens: int | None = None, quantize: str | None = None):
        if backend not in ("torch", "onnx"):
            raise GradtuneError(f"backend={backend!r}: use 'torch' or 'onnx'")
        if quantize is not None and backend != "onnx":
            raise GradtuneError(f"quantize={quantize!r} applies to backend 'onnx' (the quantized model is an ONNX "
                                "export: gradtune export RUN --format onnx --quantize int8)")
        self.onnx = None  # backend "onnx": the logits come from onnxruntime, reading RUN/onnx only
        if backend == "onnx":
            from gradtune.inference.onnx_runtime import OnnxModel, onnx_file

            try:
                self.path = onnx_dir(run)
            except GradtuneError as e:  # no export at all: the command that makes the quantized one too
                if quantize is None:
                    raise
                raise GradtuneError(str(e).replace("--format onnx", f"--format onnx --quantize {quantize}")) from None
            self.onnx = OnnxModel(onnx_file(self.path, quantize), threads=torch.get_num_threads())
        else:
            self.path = model_dir(run)
        self.metadata: dict[str, Any] = read_metadata(self.path)
        self.task = get_task(self.metadata["task"])
        self._decode_with(num_beams=num_beams, max_new_tokens=max_new_tokens)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() and not self.onnx else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.path) if self.task.uses_tokenizer else None
        self.model = None if self.onnx else load_model(self.path, self.metadata).to(self.device).eval()
        if self.model is not None and self.task.writes_text:  # training turned the cache off; generation wants it
            self.model.config.use_cache = True
        self.num_labels = (self.onnx.num_labels or len(self.labels) or 1) if self.onnx else self.model.config.num_labels
        self.collate = collate_fn(self.tokenizer, self.task.collator(self.tokenizer, self.model))

    def _decode_with(self, **settings: int | None) -> None:
        for key, value in settings.items():
            if value is None:
                continue
            if f"train.{key}" not in self.task.owns:
                raise GradtuneError(f"{key} applies to task 'seq2seq' only (this run is {self.task.name!r})")
            if value < 1:
                raise GradtuneError(f"{key} must be at least 1 (got {value})")
            self.metadata[key] = value

    @property
    def labels(self) -> list[str]:
        """The label names of a classifier or multi-label model ([] for regression)."""
        return list(self.metadata.get("labels", []))

    @torch.inference_mode()
    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The logits of one batch of model inputs, from PyTorch or onnxruntime."""
        if self.onnx is not None:
            return torch.from_numpy(self.onnx.logits({k: v.numpy() for k, v in inputs.items()})).float()
        return logits_of(self.model(**{k: v.to(self.device) for k, v in inputs.items()})).float().cpu()

    def features_logits(self, features: dict[str, list], batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """The logits of encoded features, in their order, `batch_size` at a time. The features are
        batched longest first, so each batch is padded only to its own longest (a short text never
        waits on a long one's padding); the logits are put back in the input order."""
        names = [k for k in MODEL_INPUTS if k in features and k not in NOT_INPUTS]
        n = len(features[names[0]]) if names else 0
        order = by_length(features, n)
        out = []
        for start in range(0, n, batch_size):
            items = [{k: features[k][i] for k in names} for i in order[start : start + batch_size]]
            out.append(self.forward(model_inputs(self.collate(items))))
        if not out:
            return torch.empty(0, self.num_labels)
        width = max(o.shape[1] for o in out) if out[0].dim() > 2 else None
        if width is not None:  # scores per token (question answering): batches of other lengths, padded
            out = [torch.nn.functional.pad(o, (0, 0, 0, width - o.shape[1]), value=float("-inf")) for o in out]
        logits = torch.cat(out)
        restored = torch.empty_like(logits)
        restored[torch.tensor(order, dtype=torch.long)] = logits
        return restored

    def _refuse_if_writer(self) -> None:
        if self.task.writes_text:
            raise GradtuneError(f"{self.path}: a causal language model writes text; use generate "
                                "(`gradtune generate RUN --prompt ...`), not predict")

    def logits(self, inputs: Any, pairs: list[str] | None = None, batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """The model's raw outputs for `inputs` (as predict takes them), one row per input."""
        self._refuse_if_writer()
        if type(self.task).infer is not Task.infer:  # seq2seq: its outputs are written texts, not logits
            raise GradtuneError(f"task {self.task.name!r} writes its outputs token by token: use predict")
        rows = self.task.prediction_rows(inputs, pairs, self.metadata)
        return self.features_logits(self.task.encode_batch(rows, self.tokenizer, self.metadata), batch_size)

    def predict(self, inputs: Any, pairs: list[str] | None = None, batch_size: int = BATCH_SIZE,
                on_empty: str = "error") -> list[dict[str, Any] | None]:
        """Texts (or text pairs); for a tabular model, rows of feature values: a list of numbers in
        feature_columns order or a dict by column name, one row or a list of them. An empty text is
        an error, as in training; with on_empty="skip" its result is None (and the count reported)."""
        self._refuse_if_writer()
        return self.predict_rows(self.task.prediction_rows(inputs, pairs, self.metadata), batch_size, on_empty)

    def predict_rows(self, rows: dict[str, list], batch_size: int = BATCH_SIZE,
                     on_empty: str = "error") -> list[dict[str, Any] | None]:
        """Results for rows of input columns (column -> values), one per row (None for a row skipped
        for an empty text)."""
        if on_empty not in ("error", "skip"):
            raise GradtuneError(f"on_empty={on_empty!r}: use 'error' or 'skip'")
        n = len(next(iter(rows.values()))) if rows else 0
        empty: list[int] = []
        for key, column in self.task.text_columns(self.metadata).items():
            for i, text in enumerate(rows[column]):
                if is_empty(text):
                    if on_empty == "error":
                        raise GradtuneError(f"input {i}: the text is empty ({column}, {key}); a model trained on "
                                            "text has nothing to go on. Give a text, or skip such inputs (Python: "
                                            "on_empty='skip', CLI: --on-empty skip)")
                    empty.append(i)
        if not empty:
            features = self.task.encode_batch(rows, self.tokenizer, self.metadata)
            with torch.inference_mode():  # no autograd bookkeeping anywhere in prediction (seq2seq generates here)
                outputs = self.task.infer(self, features, batch_size)
            return self.task.decode(outputs, features, self.metadata)
        log.warning(f"Skipped {len(set(empty))} input(s) with empty text (their result is None)")
        kept = [i for i in range(n) if i not in set(empty)]
        results = self.predict_rows({c: [v[i] for i in kept] for c, v in rows.items()}, batch_size) if kept else []
        out: list[dict[str, Any] | None] = [None] * n
        for i, result in zip(kept, results):
            out[i] = result
        return out

    def generate(self, prompts: Any, max_new_tokens: int = 50, temperature: float = 1.0, top_p: float = 1.0,
                 greedy: bool = False, seed: int | None = None, stop: list[str] | None = None, chat: bool | None = None,
                 on_text: Any = None) -> str | list[str]:
        """Continue a prompt (task causal_lm), or answer it (task instruct: the prompt is formatted
        with the run's chat template; `chat=False` sends it as plain text). A str gives a str, a
        list of prompts a list, written as one batch. See inference/generation.py."""
        if not self.task.writes_text:
            raise GradtuneError(f"{self.path}: a {self.metadata['task']} model predicts, it does not write text; "
                                "use predict (generate is for runs of task causal_lm or instruct)")
        return generate(self.model, self.tokenizer, prompts, chat=self.task.chat if chat is None else chat,
                        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, greedy=greedy,
                        seed=seed, stop=stop, on_text=on_text)
