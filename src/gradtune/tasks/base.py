"""The task contract. A task says what is learned: which columns a data file holds, how rows become
model features, the model's head, the loss, the metrics, and how outputs become results. Each task
is a subclass of `Task` in one file under tasks/, registered by one line in tasks/__init__.py.

A subclass must set the class attributes without defaults and define `fit`, `loss_sum`,
`make_metrics` and `update_metrics` (and `decode` and `csv_columns` if it predicts). Every other
hook has a default that fits a task whose rows are texts with one label each; override what differs.

In the order training uses them:

    config     check_config(cfg)                 reject settings this task cannot use
               metrics_for(loss), default_metric_for(loss), metric_mode(metric)
    data       input_settings(cfg)               the input columns and lengths the run records
               columns(meta, labelled)           config key -> column a data file must hold
               fit(train, cfg, held_out)         what the run keeps of the training rows (labels, scales)
               encode(ds, path, tokenizer, meta, labelled)   file rows -> model features
               encode_batch(batch, tokenizer, meta)          rows -> features: one or SEVERAL per row
               collator(tokenizer, model)        features -> one padded batch
    model      model_kwargs(meta)                the head (number of outputs, label maps)
    loss       make_loss(train_cfg, labels, meta), loss_units(labels)
    evaluate   evaluate(model, loader, accelerator, meta)    default: streamed metrics of the logits;
                                                             a task that scores generated text replaces it
    predict    prediction_rows(inputs, pairs, meta), file_rows(ds, path, meta)  -> rows of input columns
               decode(logits, features, meta)    model outputs -> one result per row
               csv_columns(result, meta), shown_inputs(rows, meta)
    serve      request_fields, hf_task            what `gradtune serve` reads (serve/)

`meta` is the run's gradtune.json: everything the task recorded (input_settings + fit), so that
eval and predict, in another process or on another machine, encode and decode exactly as training did.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import datasets
import torch
from torchmetrics import MetricCollection

from gradtune.data.batching import logits_of, model_inputs, tokenize_texts
from gradtune.data.rows import encode_column
from gradtune.errors import GradtuneError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> summed loss


class Task:
    # --- what the task is (class attributes)
    name: ClassVar[str]
    losses: ClassVar[tuple[str, ...]]  # the train.loss values it takes; the first is the default
    metrics: ClassVar[tuple[str, ...]]  # the train.metric values it reports
    default_metric: ClassVar[str]  # train.metric when the config leaves it null
    shown_metrics: ClassVar[tuple[str, ...]]  # printed after each evaluation
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"loss"})
    owns: ClassVar[tuple[str, ...]] = ()  # config keys that only this task reads ("train.threshold")
    borrows: ClassVar[dict[str, tuple[str, ...]]] = {}  # train.loss -> other tasks' keys read with that loss
    labelled: ClassVar[bool] = True  # rows hold a target in data.label_column
    uses_tokenizer: ClassVar[bool] = True  # the model reads text
    # `encode`'s features may be kept in the tokenization cache (data/cache.py): only when encoding
    # neither changes the tokenizer nor warns about rows, which a cache hit would silently skip
    cache_features: ClassVar[bool] = True
    writes_text: ClassVar[bool] = False  # the model generates (gradtune generate), it does not predict
    chat: ClassVar[bool] = False  # generate formats a prompt with the tokenizer's chat template
    onnx: ClassVar[bool] = True  # its model exports to ONNX as one forward pass (not so a model that writes text)
    auto_model: ClassVar[str] = "AutoModelForSequenceClassification"  # the head a pretrained model gets
    default_model: ClassVar[str] = "minilm"  # model.name when the config leaves it null
    default_strategy: ClassVar[str] = "full"  # strategy.method when the config leaves it null
    text_keys: ClassVar[tuple[str, ...]] = ("data.text_column", "data.text_pair_column")  # must not be empty
    # gradtune serve: the POST /predict fields that hold predict's inputs (and pairs), and the Hugging Face
    # Inference API task that POST / speaks (a name in serve/hf_protocol.py; None: none)
    request_fields: ClassVar[tuple[str, ...]] = ("texts", "pairs")
    hf_task: ClassVar[str | None] = "text-classification"

    # --- config
    def reads(self, cfg: Any) -> set[str]:
        """The task-owned config keys (of any task's `owns`) that this run reads."""
        return set(self.owns) | set(self.borrows.get(cfg.train.loss, ()))

    def check_config(self, cfg: Any) -> None:
        """Raise ValueError (naming the key) for a setting that does not fit this task."""

    def metrics_for(self, loss: str) -> tuple[str, ...]:
        return self.metrics

    def default_metric_for(self, loss: str) -> str:
        return self.default_metric

    def metric_mode(self, metric: str) -> str:
        """Whether a larger value of `metric` is better ("max") or a smaller one ("min")."""
        return "min" if metric in self.lower_is_better else "max"

    # --- data
    def input_settings(self, cfg: Any) -> dict[str, Any]:
        """What the run records of its inputs (in gradtune.json, read back by eval and predict)."""
        d = cfg.data
        return {"text_column": d.text_column, "text_pair_column": d.text_pair_column, "max_length": d.max_length,
                "label_column": d.label_column if self.labelled else None}

    def columns(self, meta: dict[str, Any], labelled: bool) -> dict[str, str | None]:
        """Config key -> the column a data file must hold (None: not used)."""
        columns = {"data.text_column": meta["text_column"], "data.text_pair_column": meta["text_pair_column"]}
        if labelled:
            columns["data.label_column"] = meta["label_column"]
        return columns

    def text_columns(self, meta: dict[str, Any]) -> dict[str, str]:
        """Config key -> the column of each text input (a text must not be empty)."""
        columns = self.columns(meta, labelled=False)
        return {key: columns[key] for key in self.text_keys if columns.get(key)}

    def fit(self, train_ds: datasets.Dataset, cfg: Any, held_out: datasets.Dataset | None) -> dict[str, Any]:
        """What the run keeps of the training rows (label names, target scale, ...). `train_ds` holds
        the rows that train; `held_out` a data.validation_split part of the same file, or None."""
        raise NotImplementedError

    def label_encoder(self, meta: dict[str, Any]) -> Callable[[Any], Any]:
        """raw label cell -> the target the model learns; ValueError for a bad one (the caller names
        file, row and column)."""
        raise NotImplementedError(f"task {self.name!r} has no labels to encode")

    def encode(self, ds: datasets.Dataset, path: str | Path, tokenizer: Any, meta: dict[str, Any],
               labelled: bool = True) -> datasets.Dataset:
        """Checked file rows -> model features: the labels, if the task has them and the file is
        `labelled` (errors name file, line and column), then `encode_batch` over the rows."""
        if labelled and self.labelled:
            ds = encode_column(ds, path, meta["label_column"], self.label_encoder(meta))
        return ds.map(lambda batch: self.encode_batch(batch, tokenizer, meta), batched=True,
                      remove_columns=ds.column_names, desc="tokenizing")

    def encode_batch(self, batch: dict[str, list], tokenizer: Any, meta: dict[str, Any]) -> dict[str, list]:
        """A batch of rows (column -> values) -> model features (column -> values). A row may become
        several features (a long context cut into windows): each then carries its row's `_row` and
        its own `labels`. The default: one tokenized text (or pair) per row, labels and `_row` kept."""
        features = tokenize_texts(batch, tokenizer, meta["text_column"], meta["text_pair_column"], meta["max_length"])
        features.update({k: batch[k] for k in ("labels", "_row") if k in batch})
        return features

    def collator(self, tokenizer: Any, model: Any = None) -> Callable | None:
        """How features become a batch; None: pad the tokenizer's inputs and stack the labels (or,
        without a tokenizer, stack everything)."""
        return None

    def tokenizer_texts(self, rows: datasets.Dataset, meta: dict[str, Any]) -> list[str]:
        """The texts a tokenizer trained from scratch learns its vocabulary from (the training rows')."""
        columns = [c for c in (meta.get("text_column"), meta.get("text_pair_column")) if c]
        return [str(t) for c in columns for t in rows[c]]

    def infer(self, predictor: Any, features: dict[str, list], batch_size: int) -> Any:
        """The model's outputs for encoded features, as `decode` takes them: the logits (a task that
        writes its answer, seq2seq, generates it)."""
        return predictor.features_logits(features, batch_size)

    # --- model
    def model_kwargs(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The head: the config values a model is built (or a pretrained one loaded) with."""
        return {}

    # --- loss
    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        """The loss summed (not averaged) over the batch, as evaluation reports it. The loop divides
        by the units of the whole optimizer step, so accumulated pieces give one big batch's gradient."""
        raise NotImplementedError

    def make_loss(self, train_cfg: Any, train_labels: list[Any], meta: dict[str, Any]) -> LossFn:
        """The training loss; by default the evaluation loss (classification adds class weights
        and label smoothing)."""
        return lambda logits, labels: self.loss_sum(logits, labels, meta)

    def loss_units(self, labels: torch.Tensor) -> int:
        """What the summed loss is divided by: the examples (causal_lm: the target tokens)."""
        return len(labels)

    # --- evaluation
    def make_metrics(self, meta: dict[str, Any]) -> MetricCollection:
        """Streamed metrics: each keeps counts or sums, never the logits."""
        raise NotImplementedError

    def update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, labels: torch.Tensor,
                       meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish_metrics(self, values: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Numbers rounded to 6 digits; a matrix (confusion matrix) as nested lists."""
        return {name: value.tolist() if value.dim() else round(float(value), 6) for name, value in values.items()}

    @torch.inference_mode()  # lighter than no_grad: no autograd version counting either
    def evaluate(self, model: torch.nn.Module, loader: Any, accelerator: Any, meta: dict[str, Any]) -> dict[str, Any]:
        """Streamed evaluation: per batch, update the metrics and a loss sum; never keep the logits.
        Under several processes each scores its share, gathered for the metrics."""
        was_training = model.training
        model.eval()
        metrics = self.make_metrics(meta).to(accelerator.device)
        loss_total, units = 0.0, 0  # what the loss is averaged over (causal_lm: tokens)
        for batch in loader:
            logits = logits_of(model(**model_inputs(batch)))
            logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
            loss_total += float(self.loss_sum(logits, labels, meta))
            units += self.loss_units(labels)
            self.update_metrics(metrics, logits, labels, meta)
        model.train(was_training)
        result = self.finish_metrics(metrics.compute())
        result["loss"] = round(loss_total / max(units, 1), 6)
        return result

    # --- prediction
    def prediction_rows(self, inputs: Any, pairs: list[str] | None, meta: dict[str, Any]) -> dict[str, list]:
        """Predictor.predict's arguments -> rows of input columns (column -> values)."""
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if meta.get("text_pair_column") and pairs is None:
            raise GradtuneError(f"this model was trained on text pairs ({meta['text_pair_column']}); "
                                "pass pairs= as well")
        rows = {meta["text_column"]: texts}
        if meta.get("text_pair_column"):
            rows[meta["text_pair_column"]] = list(pairs)
        return rows

    def file_rows(self, ds: datasets.Dataset, path: str | Path, meta: dict[str, Any]) -> dict[str, list]:
        """The input columns of every row of a prediction file (already checked to exist)."""
        columns = [c for c in (meta["text_column"], meta.get("text_pair_column")) if c]
        return {c: ["" if t is None else str(t) for t in ds[c]] for c in columns}

    def shown_inputs(self, rows: dict[str, list], meta: dict[str, Any]) -> list[dict[str, Any]]:
        """What each row of a prediction file's output starts with: the text."""
        return [{"text": text} for text in rows[meta["text_column"]]]

    def decode(self, logits: torch.Tensor, features: dict[str, list], meta: dict[str, Any]) -> list[dict[str, Any]]:
        """Model outputs (one per feature, in order) -> one result per row."""
        raise GradtuneError(f"task {self.name!r} does not predict")

    def csv_columns(self, result: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
        """The columns of one result in a prediction CSV."""
        raise NotImplementedError
