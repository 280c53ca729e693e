"""Export a trained run's model as a folder that stands on its own.

`export_merged` folds a LoRA / DoRA / IA3 adapter into the base weights (peft's
merge_and_unload): the result is a plain Hugging Face model, with the tokenizer, gradtune.json and
label map, that `gradtune.load`, `eval` and `predict` read like a full fine-tuning run, and that
runs at the base model's speed (no adapter on the side). Prompt and prefix tuning cannot be merged:
their virtual tokens are extra inputs, not a change to any weight. full / head / top_k / bitfit
runs change the model's own weights, so their model/ folder already is a standalone model: they
export as-is (without --merge).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gradtune.checkpoint import save_model_dir
from gradtune.errors import GradtuneError
from gradtune.predictor import model_dir
from gradtune.strategies import MERGEABLE, load_adapter_model

FORMATS = ("hf", "onnx")  # onnx: onnx_export.export_onnx, called by the CLI


def _fresh(output: Path) -> Path:
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise GradtuneError(f"--output {output} already exists and is not empty; choose a new folder")
    return output


def export_merged(run: str | Path, output_dir: str | Path) -> Path:
    """The run's adapter merged into its base model, written as a standalone model folder."""
    path = model_dir(run)
    meta: dict[str, Any] = json.loads((path / "gradtune.json").read_text())
    method = meta.get("strategy", {}).get("method", "full")
    if method in ("prompt_tuning", "prefix_tuning"):
        raise GradtuneError(f"{path}: a {method} run cannot be merged: its virtual tokens are extra inputs fed "
                            "to the model, not a change to its weights. Export it without --merge (adapter + "
                            "the name of its base model)")
    if method not in MERGEABLE:
        raise GradtuneError(f"{path}: a strategy {method} run has nothing to merge: it trained the model's own "
                            "weights, so its model folder is already standalone. Export it without --merge")
    output = _fresh(Path(output_dir))
    merged = load_adapter_model(path, meta).merge_and_unload()
    tokenizer = None
    if "feature_columns" not in meta:  # a tabular model reads numbers, not text
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    meta["strategy"] = {**meta["strategy"], "merged": True}
    return save_model_dir(output, merged, tokenizer, meta)


def export(run: str | Path, output: str | Path, merge: bool = False, format: str = "hf") -> Path:
    """`gradtune export`: the model folder as-is, or with its adapter merged (`merge`)."""
    if format not in FORMATS:
        raise GradtuneError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if format == "onnx":
        from gradtune.onnx_export import export_onnx

        if merge:
            raise GradtuneError("--merge applies to --format hf; an ONNX export always holds the whole model")
        return export_onnx(run, output).folder
    if merge:
        return export_merged(run, output)
    path = model_dir(run)
    output = _fresh(Path(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(path, output, dirs_exist_ok=True)
    return output
