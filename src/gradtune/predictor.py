"""A trained model read back from its run directory, ready to predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

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
    `.predict([[120.0, 3], {"area": 80, "rooms": 2}])` -> [{"value"}, ...]."""

    def __init__(self, run: str | Path, device: str | None = None):
        self.path = model_dir(run)
        self.metadata: dict[str, Any] = json.loads((self.path / "gradtune.json").read_text())
        self.task = get_task(self.metadata["task"])
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # a tabular model reads numbers: no tokenizer; the import registers the from-scratch classes
        import gradtune.models.scratch  # noqa: F401

        tabular = "feature_columns" in self.metadata
        self.tokenizer = None if tabular else AutoTokenizer.from_pretrained(self.path)
        # trust_remote_code stays off: a run folder holds only our own safetensors weights
        if (self.path / "adapter_config.json").is_file():  # a peft run: base model + adapter and head
            self.model = load_adapter_model(self.path, self.metadata).to(self.device).eval()
        else:
            self.model = AutoModelForSequenceClassification.from_pretrained(self.path).to(self.device).eval()
        self.id2label = dict(enumerate(self.labels))

    @property
    def labels(self) -> list[str]:
        """The label names of a classifier or multi-label model ([] for regression)."""
        return list(self.metadata.get("labels", []))

    @torch.no_grad()
    def logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32) -> torch.Tensor:
        if self.tokenizer is None:  # tabular: `texts` are feature rows
            rows = self.task.feature_rows(texts, self.metadata)
            out = [self.model(features=torch.tensor(rows[s : s + batch_size], dtype=torch.float32,
                                                    device=self.device)).logits.float().cpu()
                   for s in range(0, len(rows), batch_size)]
            return torch.cat(out) if out else torch.empty(0, self.model.config.num_labels)
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            chunk_pairs = pairs[start : start + batch_size] if pairs is not None else None
            enc = self.tokenizer(
                chunk, chunk_pairs, truncation=True, max_length=self.metadata["max_length"],
                padding=True, return_tensors="pt",
            ).to(self.device)
            out.append(self.model(**enc).logits.float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.model.config.num_labels)

    def predict(
        self, texts: str | list[str] | list[Any], pairs: list[str] | None = None, batch_size: int = 32
    ) -> list[dict[str, Any]]:
        """Texts (or text pairs); for a tabular model, rows of feature values: a list of numbers in
        feature_columns order or a dict by column name, one row or a list of them."""
        if self.tokenizer is None:
            return self.task.decode(self.logits(texts, batch_size=batch_size), self.metadata)
        if isinstance(texts, str):
            texts = [texts]
        if self.metadata.get("text_pair_column") and pairs is None:
            raise GradtuneError(
                f"this model was trained on text pairs ({self.metadata['text_pair_column']}); "
                "pass pairs= as well"
            )
        return self.task.decode(self.logits(list(texts), pairs, batch_size), self.metadata)
