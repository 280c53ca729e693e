"""gradtune: fine-tune pretrained language models, or train small ones from scratch, from one
config file, and see what every gradient-descent knob does.

    import gradtune
    run = gradtune.train("examples/sst2.yaml", ["train.lr=3e-5"])
    gradtune.load(run.run_dir).predict(["a gripping, funny film"])
"""

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "train": "gradtune.api", "evaluate": "gradtune.api", "load": "gradtune.api",
    "predict_file": "gradtune.api", "Run": "gradtune.api", "Config": "gradtune.config",
    "load_config": "gradtune.config", "GradtuneError": "gradtune.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # imported on first use, so `gradtune --help` doesn't wait for torch and transformers
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gradtune' has no attribute {name!r}")
