"""Shared fixtures: a tiny random-init BERT (hidden 32, 2 layers) built from a config, and a
small synthetic sentiment data set a tiny model can learn in seconds. No network, no ../shared."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from gradtune.config import as_config
from gradtune.tasks import classification
from gradtune.training.head_cache import HeadOnly
from gradtune.training.loop import fit
from gradtune.training.prepare import prepare

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def no_report_unless_asked(request, monkeypatch):
    """Training writes RUN/report/ by default (report: true), which costs a test about 0.4 s (2 s for
    the first, importing matplotlib): only tests marked `report` (tests/report/) write one."""
    if request.node.get_closest_marker("report") is None:
        monkeypatch.setattr("gradtune.api._report", lambda run: None)


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path_factory, monkeypatch):
    """Each test its own GRADTUNE_CACHE (tokenized features, ...): tests never share cache entries
    nor touch the user's ~/.cache."""
    monkeypatch.setenv("GRADTUNE_CACHE", str(tmp_path_factory.mktemp("gradtune-cache")))


POSITIVE = ["good", "great", "lovely", "excellent", "wonderful", "superb", "fun", "brilliant"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "poor", "dull", "horrible", "weak"]
SUBJECTS = ["the movie", "the food", "the hotel", "this book", "the service", "the app", "the show"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
FILLER = ["was", "is", "really", "quite", "very", "so", "and", "it", "felt", "truly", "overall"]


def sentence(rng: random.Random, label: str) -> str:
    words = POSITIVE if label == "positive" else NEGATIVE
    filler = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 6)))
    return f"{rng.choice(SUBJECTS)} {filler} {rng.choice(words)}".replace("  ", " ")


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        rows.append({"text": sentence(rng, label), "label": label})
    rng.shuffle(rows)
    return rows


def counting_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Texts of 8 words that count on from a random number (twelve wraps to one): only the first
    word is a guess, every other token follows from the one before (for language models)."""
    rng = random.Random(seed)
    starts = [rng.randrange(12) for _ in range(n)]
    return [{"text": " ".join(NUMBERS[(start + i) % 12] for i in range(8))} for start in starts]


def linear_rows(n: int, seed: int) -> list[dict]:
    """Tabular rows: y = 0.5 x1 - 3 x2 + noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x1, x2 = rng.uniform(100, 200), rng.uniform(-1, 1)
        rows.append({"x1": round(x1, 3), "x2": round(x2, 3), "y": round(0.5 * x1 - 3 * x2 + rng.gauss(0, 1), 3)})
    return rows


def tabular_config(train_file: Path, output_dir: Path, validation: Path | None = None, **sections) -> dict:
    cfg = {
        "task": "tabular",
        "model": {"name": "mlp", **sections.get("model", {})},
        "data": {"train": str(train_file), "feature_columns": ["x1", "x2"], "label_column": "y",
                 **sections.get("data", {})},
        "train": {"epochs": 5, "batch_size": 16, "optimizer": "adam", "lr": 0.05, "warmup_ratio": 0.0,
                  "log_every": 1, "progress": False, "seed": 0, **sections.get("train", {})},
        "output_dir": str(output_dir),
    }
    if validation is not None:
        cfg["data"]["validation"] = str(validation)
    return cfg


def train_in_memory(cfg: dict) -> tuple[torch.nn.Module, Path]:
    """Train like `gradtune.train` but keep the trained model object."""
    job = prepare(as_config(cfg), Path(cfg["output_dir"]))
    job.run_dir.mkdir(parents=True)
    fit(job)
    model = job.model.full_model if isinstance(job.model, HeadOnly) else job.model
    return model.eval(), job.run_dir


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def build_tiny_bert(folder: Path, initializer_range: float = 0.02, extra_words: tuple[str, ...] = ()) -> Path:
    """A random-init BERT folder (hidden 32, 2 layers) with a word-level vocabulary (the sentiment
    words, and `extra_words`)."""
    words = sorted({w for group in (POSITIVE, NEGATIVE, FILLER) for w in group}
                   | {w for s in SUBJECTS for w in s.split()} | set(extra_words))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, initializer_range=initializer_range,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def build_tiny_llama(folder: Path, texts: list[str], chat: bool = False, max_positions: int = 128,
                     vocab_size: int = 300) -> Path:
    """A random-init Llama folder (hidden 32, 2 layers) with a byte-level BPE tokenizer trained on
    `texts`: eos but no pad token, as GPT-2's and Llama's; with `chat`, SmolLM2's ChatML template and
    its <|im_start|> / <|im_end|> (the end of a turn, and eos) special tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from gradtune.models import tokenizers

    trained = tokenizers.train_bpe(texts, vocab_size, max_positions)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=trained.backend_tokenizer, eos_token=tokenizers.BOS,
                                        bos_token=tokenizers.BOS)
    if chat:
        tokenizer.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
        tokenizer.eos_token = "<|im_end|>"
        tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=max_positions,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def chat_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a ChatML chat template, for instruction tuning."""
    texts = [r["text"] for r in sentiment_rows(200, seed=9)] + ["What is the sentiment of this review?"] * 20 \
        + ["positive", "negative"] * 50
    return build_tiny_llama(tmp_path_factory.mktemp("chat-llama"), texts, chat=True, max_positions=512, vocab_size=600)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def wide_init_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with a wider init than BERT's 0.02: at hidden size 32 the narrow init makes
    every [CLS] vector alike, and plain SGD then sits on a flat loss for hundreds of steps."""
    return build_tiny_bert(tmp_path_factory.mktemp("wide-init-bert"), initializer_range=0.2)


@pytest.fixture(scope="session")
def sentiment_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sentiment")
    return {
        "train": write_csv(folder / "train.csv", sentiment_rows(160, seed=1)),
        "validation": write_csv(folder / "dev.csv", sentiment_rows(40, seed=2)),
    }


@pytest.fixture
def make_config(tiny_bert: Path, sentiment_files: dict[str, Path], tmp_path: Path):
    """A config dict for a fast tiny run; keyword overrides use dotted keys (train__lr=...)."""

    def build(**overrides: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "task": "classification",
            "model": {"name": str(tiny_bert)},
            "data": {"train": str(sentiment_files["train"]),
                     "validation": str(sentiment_files["validation"]), "max_length": 32},
            "train": {"epochs": 5, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0,
                      "log_every": 2, "progress": False, "seed": 0},
            "output_dir": str(tmp_path / "run"),
        }
        for key, value in overrides.items():
            *parents, leaf = key.split("__")
            node = cfg
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return cfg

    return build


def at_training_step(step: int, action):
    """classification's loss_sum, returning `action(loss)` at the given training step (a NaN, a signal)."""
    real, calls = classification.loss_sum, {"n": 0}

    def loss(logits, labels, **options):
        value = real(logits, labels, **options)
        if logits.requires_grad:
            calls["n"] += 1
            if calls["n"] == step:
                return action(value)
        return value

    return loss
