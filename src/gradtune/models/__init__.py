"""Model families. `model.name` is either a family trained from scratch, listed in FAMILIES, or
anything else: a pretrained model (a bundled alias, a local folder or a hub id, pretrained.py).

A family is one file with `build(cfg, tokenizer, task, meta) -> model` (a Hugging Face
PreTrainedModel, so that runs save, load, adapt and export it like a pretrained one) plus one
line here saying which model.* keys it reads, which head it has and which tokenizer it trains.
The config checks and the training code ask this registry; nothing else names a family.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# heads, as a task asks for them
SEQUENCE, CAUSAL, SEQ2SEQ = "AutoModelForSequenceClassification", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM"

# model.* keys of a pretrained model (the dropout overrides) and of the text families from scratch
PRETRAINED_KEYS = ("trust_remote_code", "dropout", "attention_dropout", "classifier_dropout")
TEXT_KEYS = ("dropout", "embedding_size", "hidden_size", "num_layers", "tokenizer", "vocab_size")


@dataclass(frozen=True)
class Family:
    module: str  # the file with build(cfg, tokenizer, task, meta)
    what: str  # for messages: "a recurrent text model"
    keys: tuple[str, ...]  # the model.* keys it reads (any other that is set is a config error)
    head: str  # the Auto class it registers with: the tasks it can learn are those asking for it
    tokenizer: str | None  # "wordpiece" / "bpe": trained on the training texts; None: it reads numbers
    pooling: tuple[str, ...] = ()  # model.pooling choices, the default first


RECURRENT = Family("gradtune.models.recurrent", "a recurrent text model",
                   TEXT_KEYS + ("classifier_dropout", "bidirectional", "pooling"), SEQUENCE, "wordpiece",
                   ("last", "mean", "max"))
FAMILIES: dict[str, Family] = {
    "mlp": Family("gradtune.models.mlp", "a multi-layer perceptron over numeric columns",
                  ("hidden_sizes", "bias", "activation", "init"), SEQUENCE, None),
    "rnn": RECURRENT,
    "lstm": RECURRENT,
    "gru": RECURRENT,
    "transformer": Family("gradtune.models.transformer", "a transformer encoder",
                          TEXT_KEYS + ("attention_dropout", "classifier_dropout", "num_heads", "max_positions",
                                       "pooling"), SEQUENCE,
                          "wordpiece", ("first", "mean", "max")),
    "gpt": Family("gradtune.models.gpt", "a transformer decoder, a language model",
                  TEXT_KEYS + ("attention_dropout", "num_heads", "max_positions"), CAUSAL, "bpe"),
    "bart": Family("gradtune.models.bart", "a transformer encoder-decoder",
                   TEXT_KEYS + ("attention_dropout", "num_heads", "max_positions"), SEQ2SEQ, "bpe"),
}


def family(name: str) -> Family | None:
    """The from-scratch family of a model.name; None for a pretrained model."""
    return FAMILIES.get(name)


def fits(name: str, task: Any) -> bool:
    """Whether model.name can learn `task`: a from-scratch family whose head is the task's and that
    reads what the task gives (text or numbers); a pretrained model for any text task."""
    f = family(name)
    if f is None:
        return task.uses_tokenizer
    return f.head == task.auto_model and (f.tokenizer is not None) == task.uses_tokenizer


def key_owners(key: str) -> str:
    """Who reads model.<key>: "a pretrained model or model.name transformer, gpt"."""
    names = [n for n, f in FAMILIES.items() if key in f.keys]
    owners = ["a pretrained model"] if key in PRETRAINED_KEYS else []
    return " or ".join(owners + ([f"model.name {', '.join(names)}"] if names else []))


def trains(task: Any) -> str:
    """The model.names that can learn `task`, for messages: "model.name 'rnn', 'lstm' or a pretrained model"."""
    names = [repr(n) for n in FAMILIES if fits(n, task)]
    choices = [f"model.name {', '.join(names)}"] if names else []
    pretrained = ["a pretrained model (an alias, a folder or a hub id)"] if task.uses_tokenizer else []
    return " or ".join(choices + pretrained)


def check(cfg: Any) -> None:
    """The model keys of the config against the model.name's family; ValueError naming the key."""
    m, d = cfg.model, cfg.data
    f = family(m.name)
    fields = type(m).model_fields
    reads = PRETRAINED_KEYS if f is None else f.keys
    for key in fields:
        if key != "name" and key not in reads and getattr(m, key) != fields[key].default:
            raise ValueError(f"model.{key}: for {key_owners(key)} (got model.name {m.name!r})")
    if f is None:
        return
    if m.pooling is not None and m.pooling not in f.pooling:
        raise ValueError(f"model.pooling={m.pooling!r} does not fit model.name {m.name!r}; choose one of "
                         f"{', '.join(f.pooling)}")
    if "num_heads" in f.keys and m.embedding_size % m.num_heads:
        raise ValueError(f"model.num_heads={m.num_heads} must divide model.embedding_size={m.embedding_size} "
                         "(each head gets an equal share of the width)")
    if "max_positions" in f.keys and m.max_positions is not None and m.max_positions < d.max_length:
        raise ValueError(f"model.max_positions={m.max_positions} is below data.max_length={d.max_length}: raise it "
                         "or leave it null")
    if f.tokenizer and m.tokenizer not in (None, "train") and m.vocab_size != fields["vocab_size"].default:
        raise ValueError("model.vocab_size is for model.tokenizer 'train' (a pretrained tokenizer has its own)")


def pretrained_tokenizer(cfg: Any, task: Any) -> Any:
    """The tokenizer the run starts with: a pretrained model's own, a from-scratch text model's
    model.tokenizer (an alias or folder whose tokenizer is reused), or None: trained on the
    training texts (train_tokenizer), or no text at all (tabular)."""
    from gradtune.models.pretrained import load_tokenizer

    m, f = cfg.model, family(cfg.model.name)
    if not task.uses_tokenizer:
        return None
    if f is None:
        return load_tokenizer(m.name, m.trust_remote_code)
    return None if m.tokenizer in (None, "train") else load_tokenizer(m.tokenizer)


def train_tokenizer(cfg: Any, texts: list[str]) -> Any:
    """A tokenizer trained on the training texts, of the kind the family reads."""
    from gradtune.models import tokenizers

    m = cfg.model
    train = {"wordpiece": tokenizers.train_wordpiece, "bpe": tokenizers.train_bpe}[family(m.name).tokenizer]
    return train(texts, m.vocab_size, cfg.data.max_length)


def build(cfg: Any, tokenizer: Any, task: Any, meta: dict[str, Any]) -> Any:
    """A model for the run: a from-scratch family's, freshly initialised (seeded by the caller), or a
    pretrained model with the task's head."""
    f = family(cfg.model.name)
    module = importlib.import_module(f.module if f else "gradtune.models.pretrained")
    return module.build(cfg, tokenizer, task, meta)


def base_model_path(cfg: Any) -> str | None:
    """Where a pretrained model.name lives, as an absolute folder (or the hub id), recorded so that a
    run saving only an adapter can read its base again; None for a model trained from scratch,
    which exists only in its run."""
    if family(cfg.model.name):
        return None
    from gradtune.models.pretrained import resolve_model

    source = resolve_model(cfg.model.name)
    return str(Path(source).resolve()) if Path(source).is_dir() else source


def register() -> None:
    """Import every family, so that the Auto classes can load any saved run's model."""
    for module in {f.module for f in FAMILIES.values()}:
        importlib.import_module(module)
