"""A trained model read back from its run directory, ready to predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoTokenizer

from gradtune.errors import GradtuneError
from gradtune.strategies import load_adapter_model
from gradtune.tasks import get_task


def model_dir(run: str | Path) -> Path:
    """Accept a run directory or its model/ folder."""
    run = Path(run)
    for candidate in (run / "model", run):
        if (candidate / "gradtune.json").is_file():
            return candidate
    raise GradtuneError(
        f"{run}: not a gradtune run (no model/gradtune.json); pass the output_dir of a finished "
        "`gradtune train`"
    )


class Predictor:
    """`Predictor(run_dir).predict(["great film", ...])` -> [{"label", "probabilities"}, ...] for
    classification, [{"labels", "probabilities"}, ...] for multilabel, [{"value"}, ...] for regression (in
    the units of the training targets). A tabular model takes rows of feature values:
    `.predict([[120.0, 3], {"area": 80, "rooms": 2}])` -> [{"value"}, ...]. With backend="onnx" the
    logits come from onnxruntime on the run's ONNX export (RUN/onnx, see onnx_export.py); the
    decoding is the same. A causal language model (task causal_lm) writes text instead:
    `.generate("Once upon a time", max_new_tokens=40)`."""

    def __init__(self, run: str | Path, device: str | None = None, backend: str = "torch"):
        if backend not in ("torch", "onnx"):
            raise GradtuneError(f"backend={backend!r}: use 'torch' or 'onnx'")
        self.backend = backend
        self.onnx = None  # backend "onnx": the logits come from onnxruntime, reading RUN/onnx only
        if backend == "onnx":
            from gradtune.onnx_export import OnnxModel, onnx_folder

            self.path = onnx_folder(run)
            self.onnx = OnnxModel(self.path / "model.onnx")
        else:
            self.path = model_dir(run)
        self.metadata: dict[str, Any] = json.loads((self.path / "gradtune.json").read_text())
        self.task = get_task(self.metadata["task"])
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() and not self.onnx else "cpu"))
        # a tabular model reads numbers: no tokenizer; the imports register the from-scratch classes
        import gradtune.models.scratch  # noqa: F401
        import gradtune.models.transformer  # noqa: F401

        tabular = "feature_columns" in self.metadata
        self.tokenizer = None if tabular else AutoTokenizer.from_pretrained(self.path)
        # trust_remote_code stays off: a run folder holds only our own safetensors weights
        self.model = None
        if self.onnx is None and (self.path / "adapter_config.json").is_file():  # peft: base + adapter and head
            self.model = load_adapter_model(self.path, self.metadata).to(self.device).eval()
        elif self.onnx is None:
            auto = getattr(transformers, self.task.AUTO_MODEL)
            self.model = auto.from_pretrained(self.path).to(self.device).eval()
        self.num_labels = (self.onnx.num_labels or len(self.labels) or 1) if self.onnx else self.model.config.num_labels
        self.id2label = dict(enumerate(self.labels))

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

    @torch.no_grad()
    def logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32) -> torch.Tensor:
        if self.tokenizer is None:  # tabular: `texts` are feature rows
            rows = self.task.feature_rows(texts, self.metadata)
            out = [self.forward({"features": torch.tensor(rows[s : s + batch_size], dtype=torch.float32)})
                   for s in range(0, len(rows), batch_size)]
            return torch.cat(out) if out else torch.empty(0, self.num_labels)
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            chunk_pairs = pairs[start : start + batch_size] if pairs is not None else None
            enc = self.tokenizer(
                chunk, chunk_pairs, truncation=True, max_length=self.metadata["max_length"],
                padding=True, return_tensors="pt",
            )
            out.append(self.forward(dict(enc)))
        return torch.cat(out) if out else torch.empty(0, self.num_labels)

    def predict(
        self, texts: str | list[str] | list[Any], pairs: list[str] | None = None, batch_size: int = 32
    ) -> list[dict[str, Any]]:
        """Texts (or text pairs); for a tabular model, rows of feature values: a list of numbers in
        feature_columns order or a dict by column name, one row or a list of them."""
        if self.tokenizer is None:
            return self.task.decode(self.logits(texts, batch_size=batch_size), self.metadata)
        if self.metadata["task"] == "causal_lm":
            raise GradtuneError(f"{self.path}: a causal language model writes text; use generate "
                                "(`gradtune generate RUN --prompt ...`), not predict")
        if isinstance(texts, str):
            texts = [texts]
        if self.metadata.get("text_pair_column") and pairs is None:
            raise GradtuneError(
                f"this model was trained on text pairs ({self.metadata['text_pair_column']}); "
                "pass pairs= as well"
            )
        return self.task.decode(self.logits(list(texts), pairs, batch_size), self.metadata)

    @torch.no_grad()
    def generate(
        self, prompt: str, max_new_tokens: int = 50, temperature: float = 1.0, top_p: float = 1.0,
        greedy: bool = False, seed: int | None = None,
    ) -> str:
        """Continue `prompt` (task causal_lm): the text the model writes after it, up to
        `max_new_tokens` tokens or its end-of-text token. Greedy takes the likeliest token each
        step (deterministic); otherwise tokens are sampled from softmax(logits / temperature),
        restricted to the smallest set holding `top_p` of the probability (nucleus sampling).
        `seed` makes a sampled text reproducible. A from-scratch gpt stops at model.max_positions."""
        if self.metadata["task"] != "causal_lm":
            raise GradtuneError(f"{self.path}: a {self.metadata['task']} model predicts, it does not write text; "
                                "use predict (generate is for runs of task causal_lm)")
        if max_new_tokens < 1:
            raise GradtuneError(f"max_new_tokens must be at least 1 (got {max_new_tokens})")
        if not greedy and not temperature > 0:
            raise GradtuneError(f"temperature must be > 0 (got {temperature}); use greedy for the likeliest text")
        if not 0 < top_p <= 1:
            raise GradtuneError(f"top_p must be in (0, 1] (got {top_p})")
        enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        length = enc["input_ids"].shape[1]
        limit = getattr(self.model.config, "max_positions", None)
        if limit is not None and length + max_new_tokens > limit:  # a from-scratch gpt's learned positions
            if length >= limit:
                raise GradtuneError(f"the prompt is {length} tokens; this model reads at most {limit} "
                                    "(model.max_positions): shorten it")
            max_new_tokens = limit - length
        if seed is not None:
            torch.manual_seed(seed)
        sampling = {} if greedy else {"temperature": temperature, "top_p": top_p, "top_k": 0}  # 0: no top-k cut
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=not greedy, pad_token_id=pad,
                                  **sampling)
        return self.tokenizer.decode(out[0, length:], skip_special_tokens=True)
