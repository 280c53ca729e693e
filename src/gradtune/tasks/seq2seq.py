"""Sequence to sequence (translation, summarisation, rewriting): a source text in, a target text out,
written by an encoder-decoder (AutoModelForSeq2SeqLM: a pretrained T5 / BART / Marian folder, or
`model.name: bart` trained from scratch with a tokenizer trained on both sides).

Training is teacher-forced: the decoder reads the target shifted right and learns each next token;
the loss is normalised by the target tokens of the whole optimizer step, as for a language model.
Validation writes every translation (greedy, or beam search with train.num_beams, at most
train.max_new_tokens tokens) and scores the generated text against the references with sacrebleu:
BLEU (with sacrebleu's `zh` tokenizer when the targets are Chinese, Japanese or Korean) and chrF,
both on sacrebleu's 0-100 scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F

from gradtune.data.batching import logits_of, model_inputs
from gradtune.errors import GradtuneError
from gradtune.tasks.base import Task

IGNORE = -100


def cjk_share(texts: list[str]) -> float:
    """The share of letters that are Chinese, Japanese or Korean characters."""
    letters = [ch for text in texts for ch in text if ch.isalpha()]
    cjk = [ch for ch in letters if "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"]
    return len(cjk) / max(len(letters), 1)


def scores(hypotheses: list[str], references: list[str], tokenize: str) -> dict[str, float]:
    """Corpus BLEU and chrF, 0-100, as sacrebleu computes them."""
    import sacrebleu

    return {"bleu": round(sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score, 4),
            "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 4)}


@torch.no_grad()
def translate(model: Any, tokenizer: Any, batch: dict[str, torch.Tensor], meta: dict[str, Any]) -> list[str]:
    """Generated targets for a batch of sources: greedy, or beam search with meta's num_beams."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
    out = model.generate(**inputs, num_beams=meta.get("num_beams", 1), do_sample=False,
                         max_new_tokens=meta.get("max_new_tokens", 64))
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


class Seq2Seq(Task):
    name = "seq2seq"
    losses = ("cross_entropy",)
    metrics = ("bleu", "chrf", "loss")
    default_metric = "bleu"
    shown_metrics = ("bleu", "chrf", "loss")
    auto_model = "AutoModelForSeq2SeqLM"
    request_fields = ("texts",)
    hf_task = "text2text-generation"
    default_model = "bart"  # no pretrained encoder-decoder is bundled: a small one from scratch
    owns = ("data.source_column", "data.target_column", "data.max_target_length", "train.num_beams",
            "train.max_new_tokens")
    text_keys = ("data.source_column", "data.target_column")
    onnx = False

    def check_config(self, cfg: Any) -> None:
        d, fields = cfg.data, type(cfg.data).model_fields
        given = [f"data.{k}" for k in ("text_column", "text_pair_column", "label_column")
                 if getattr(d, k) != fields[k].default]
        if given:
            raise ValueError(f"{', '.join(given)}: task 'seq2seq' reads data.source_column and data.target_column")

    def input_settings(self, cfg: Any) -> dict[str, Any]:
        d, t = cfg.data, cfg.train
        return {"source_column": d.source_column, "target_column": d.target_column, "max_length": d.max_length,
                "max_target_length": d.max_target_length or d.max_length, "num_beams": t.num_beams,
                "max_new_tokens": t.max_new_tokens, "text_column": None, "text_pair_column": None,
                "label_column": None}

    def columns(self, meta: dict[str, Any], labelled: bool) -> dict[str, str | None]:
        columns = {"data.source_column": meta["source_column"]}
        if labelled:
            columns["data.target_column"] = meta["target_column"]
        return columns

    def fit(self, train_ds: Any, cfg: Any, held_out: Any = None) -> dict[str, Any]:
        """How BLEU splits the targets into words: sacrebleu's `zh` for Chinese (Japanese, Korean)
        targets, its standard `13a` otherwise."""
        targets = [str(t) for t in train_ds[cfg.data.target_column][:2000]]
        return {"bleu_tokenize": "zh" if cjk_share(targets) > 0.5 else "13a"}

    def tokenizer_texts(self, rows: datasets.Dataset, meta: dict[str, Any]) -> list[str]:
        """Both sides: one vocabulary for the source and the target."""
        return [str(t) for c in (meta["source_column"], meta["target_column"]) for t in rows[c]]

    def encode(self, ds: datasets.Dataset, path: str | Path, tokenizer: Any, meta: dict[str, Any],
               labelled: bool = True) -> datasets.Dataset:
        if not labelled:  # a prediction file: the sources alone
            ds = ds.remove_columns([c for c in ds.column_names if c == meta["target_column"]])
        return ds.map(lambda batch: self.encode_batch(batch, tokenizer, meta), batched=True,
                      remove_columns=ds.column_names, desc="tokenizing")

    def encode_batch(self, batch: dict[str, list], tokenizer: Any, meta: dict[str, Any]) -> dict[str, list]:
        """Source token ids; with targets, labels = the target's ids and its end-of-text token."""
        sources = [str(s) for s in batch[meta["source_column"]]]
        features = dict(tokenizer(sources, truncation=True, max_length=meta["max_length"]))
        features["length"] = [len(ids) for ids in features["input_ids"]]
        if meta["target_column"] in batch:
            eos = tokenizer.eos_token_id
            targets = tokenizer([str(t) for t in batch[meta["target_column"]]], add_special_tokens=False,
                                truncation=True, max_length=meta["max_target_length"] - 1)["input_ids"]
            features["labels"] = [ids + [eos] for ids in targets]
        if "_row" in batch:
            features["_row"] = batch["_row"]
        return features

    def collator(self, tokenizer: Any, model: Any = None) -> Any:
        """Pads sources with the pad id and labels with -100; with the model, adds the decoder's
        inputs (the labels shifted right behind its start token)."""
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, model=model, padding=True, label_pad_token_id=IGNORE)

    def loss_units(self, labels: torch.Tensor) -> int:
        return int((labels != IGNORE).sum())

    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        """Cross-entropy of each target token, summed."""
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE,
                               reduction="sum")

    @torch.inference_mode()  # lighter than no_grad: no autograd version counting either
    def evaluate(self, model: torch.nn.Module, loader: Any, accelerator: Any, meta: dict[str, Any]) -> dict[str, Any]:
        """The teacher-forced loss per target token, and BLEU and chrF of the generated targets."""
        was_training = model.training
        model.eval()
        writer = accelerator.unwrap_model(model)
        tokenizer = loader.collate_fn.tokenizer  # DataCollatorForSeq2Seq's
        loss_total, units, hypotheses, references = 0.0, 0, [], []
        for batch in loader:
            logits = logits_of(model(**model_inputs(batch)))
            loss_total += float(self.loss_sum(logits, batch["labels"], meta))
            units += self.loss_units(batch["labels"])
            labels = batch["labels"].masked_fill(batch["labels"] == IGNORE, tokenizer.pad_token_id)
            hypotheses += translate(writer, tokenizer, batch, meta)
            references += [t.strip() for t in tokenizer.batch_decode(labels, skip_special_tokens=True)]
        loss_total = float(accelerator.reduce(torch.tensor(loss_total, device=accelerator.device), "sum"))
        units = int(accelerator.reduce(torch.tensor(units, device=accelerator.device), "sum"))
        hypotheses = accelerator.gather_for_metrics(hypotheses, use_gather_object=True)
        references = accelerator.gather_for_metrics(references, use_gather_object=True)
        model.train(was_training)
        return {**scores(hypotheses, references, meta.get("bleu_tokenize", "13a")),
                "loss": round(loss_total / max(units, 1), 6)}

    # --- prediction: the written target
    def prediction_rows(self, inputs: Any, pairs: Any, meta: dict[str, Any]) -> dict[str, list]:
        return {meta["source_column"]: [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]}

    def file_rows(self, ds: datasets.Dataset, path: str | Path, meta: dict[str, Any]) -> dict[str, list]:
        return {meta["source_column"]: ["" if t is None else str(t) for t in ds[meta["source_column"]]]}

    def shown_inputs(self, rows: dict[str, list], meta: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"source": text} for text in rows[meta["source_column"]]]

    def infer(self, predictor: Any, features: dict[str, list], batch_size: int) -> list[str]:
        """The generated targets, `batch_size` sources at a time."""
        if predictor.model is None:
            raise GradtuneError("task 'seq2seq' writes its targets token by token: predict with the torch backend")
        out = []
        n = len(features["input_ids"])
        for start in range(0, n, batch_size):
            items = [{k: features[k][i] for k in ("input_ids", "attention_mask") if k in features}
                     for i in range(start, min(n, start + batch_size))]
            batch = {k: v.to(predictor.device) for k, v in predictor.tokenizer.pad(items, return_tensors="pt").items()}
            out += translate(predictor.model, predictor.tokenizer, batch, predictor.metadata)
        return out

    def decode(self, outputs: list[str], features: dict[str, list], meta: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"generated_text": text} for text in outputs]  # the key of transformers' text2text pipeline

    def csv_columns(self, result: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
        return {"generated_text": result["generated_text"]}
