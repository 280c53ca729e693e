"""Export a trained run's model as a Hugging Face folder that stands on its own.

`export_merged` folds a LoRA / DoRA / IA3 adapter into the base weights (peft's merge_and_unload):
the result is a plain Hugging Face model, with the tokenizer, gradtune.json and label map, that
`gradtune.load`, `eval` and `predict` read like a full fine-tuning run, and that runs at the base
model's speed (no adapter on the side). Prompt and prefix tuning cannot be merged: their virtual
tokens are extra inputs, not a change to any weight. full / head / top_k / bitfit runs change the
model's own weights, so their model/ folder already is a standalone model: it is copied as-is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gradtune.errors import GradtuneError
from gradtune.folders import writable_folder
from gradtune.rundir import model_dir, read_metadata, write_model_dir
from gradtune.tasks import get_task
from gradtune.training.strategies import STRATEGIES


def fresh(output: Path) -> Path:
    """`output`, if it does not exist yet or is an empty folder, and can be written."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise GradtuneError(f"--output {output} already exists and is not empty; choose a new folder")
    writable_folder(output.parent, "the folder of --output")
    return output


def export_copy(run: str | Path, output: str | Path) -> Path:
    """The model folder as it is."""
    path, output = model_dir(run), fresh(Path(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(path, output, dirs_exist_ok=True)
    return output


def export_merged(run: str | Path, output: str | Path) -> Path:
    """The run's adapter merged into its base model, written as a standalone model folder."""
    from gradtune.training.strategies.adapters import load_adapter_model

    path = model_dir(run)
    meta = read_metadata(path)
    method = meta.get("strategy", {}).get("method", "full")
    if method in ("prompt_tuning", "prefix_tuning"):
        raise GradtuneError(f"{path}: a {method} run cannot be merged: its virtual tokens are extra inputs fed "
                            "to the model, not a change to its weights. Export it without --merge (adapter + "
                            "the name of its base model)")
    if not STRATEGIES[method].mergeable:
        raise GradtuneError(f"{path}: a strategy {method} run has nothing to merge: it trained the model's own "
                            "weights, so its model folder is already standalone. Export it without --merge")
    output = fresh(Path(output))
    merged = load_adapter_model(path, meta).merge_and_unload()
    tokenizer = None
    if get_task(meta["task"]).uses_tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    meta["strategy"] = {**meta["strategy"], "merged": True}
    return write_model_dir(output, lambda folder: merged.save_pretrained(folder, safe_serialization=True), tokenizer,
                           meta)
