"""The Python API that the CLI and users call: train, evaluate, load, predict_file."""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from transformers import set_seed

from gradtune import __version__
from gradtune.checkpoint import list_checkpoints
from gradtune.config import Config, DataConfig, as_config
from gradtune.data import encode_column, load_split, make_loader, read_table, require_columns
from gradtune.errors import GradtuneError
from gradtune.head_cache import cache_head
from gradtune.loop import Job, fit
from gradtune.loop import evaluate as evaluate_loader
from gradtune.models import scratch, transformer
from gradtune.models.pretrained import dropout_overrides, load_model, load_tokenizer, resolve_model
from gradtune.monitor import console
from gradtune.optim import step_plan
from gradtune.predictor import Predictor, model_dir
from gradtune.strategies import apply_strategy, head_name, parameter_counts
from gradtune.tasks import get_task


@dataclass
class Run:
    """What `train` returns: where the run lives and how it went."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)  # the last validation result
    test_metrics: dict[str, Any] = field(default_factory=dict)  # the best model on data.test
    best_metric: float | None = None
    best_step: int | None = None
    steps: int = 0
    train_seconds: float = 0.0
    samples_per_second: float = 0.0

    def predictor(self) -> Predictor:
        return Predictor(self.run_dir)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _prepare_run_dir(cfg: Config, resume: bool, overwrite: bool) -> Path | None:
    """Decide where training starts: the newest checkpoint (resume), or a clean directory."""
    run_dir = Path(cfg.output_dir)
    if resume:
        checkpoints = list_checkpoints(run_dir)
        if not checkpoints:
            raise GradtuneError(f"{run_dir}/checkpoints: no checkpoint to resume from; drop --resume to start")
        saved = run_dir / "config.yaml"
        if saved.is_file():
            old = _flatten(yaml.safe_load(saved.read_text()))
            new = _flatten(cfg.model_dump(mode="json"))
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            if changed:
                console.print(f"[yellow]Resuming with a config that differs from the run's in: {', '.join(changed)}")
        return checkpoints[-1]
    if list_checkpoints(run_dir) or (run_dir / "model").exists():
        if not overwrite:
            raise GradtuneError(
                f"output_dir {run_dir} already holds a run; pass --resume to continue it, "
                "--overwrite to replace it, or choose another output_dir=..."
            )
        if os.environ.get("RANK", "0") != "0":  # torchrun: the main process clears the folder
            return None
        for name in ("checkpoints", "model", "metrics.jsonl", "config.yaml", "test_metrics.json"):
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    return None


def _load_data(
    cfg: Config, task: Any, tokenizer: Any, fit_tokenizer: Any = None
) -> tuple[Any, Any, list[str], dict[str, Any]]:
    """The tokenized training and validation sets, the label names (classification, multilabel; []
    for regression), and all the task keeps of the training labels (`meta`, saved in gradtune.json:
    classification's label names, multilabel's names, threshold and delimiter, regression's loss
    and target scale). With `fit_tokenizer` (and no tokenizer) the tokenizer is
    `fit_tokenizer(texts)`, trained on the texts of the training split only."""
    d = cfg.data
    if d.train is None:
        raise GradtuneError("data.train is not set: give a training file, e.g. data.train=train.csv")
    labelled = task.LABELS  # causal_lm: the text is its own target
    train_ds, skipped = load_split(d.train, d, with_labels=labelled)
    held_out = None
    if d.validation_split:
        # split before the task sees the labels, so that a statistic of the training targets
        # (regression's mean/std) leaves these rows out; the split depends only on row count and seed
        parts = train_ds.train_test_split(test_size=d.validation_split, seed=cfg.train.seed)
        train_ds, held_out = parts["train"], parts["test"]
    meta = task.label_metadata(train_ds, cfg, held_out)
    encode = task.label_encoder(meta) if labelled else None
    if labelled:
        train_ds = encode_column(train_ds, d.train, d.label_column, encode)
    val_ds, val_skipped = held_out, 0
    if d.validation:
        val_ds, val_skipped = load_split(d.validation, d, with_labels=labelled)
    if labelled and val_ds is not None:
        val_ds = encode_column(val_ds, d.validation or d.train, d.label_column, encode)
    for name, count in (("training", skipped), ("validation", val_skipped)):
        if count:
            console.print(f"[yellow]Skipped {count} {name} row(s) with empty text (data.on_empty=skip)")
    if tokenizer is None and fit_tokenizer is not None:
        columns = [c for c in (d.text_column, d.text_pair_column) if c]
        tokenizer = fit_tokenizer([str(t) for c in columns for t in train_ds[c]])
    if tokenizer is None:  # tabular: the numeric feature columns are the input
        val_path = d.validation or d.train
        return (task.encode_inputs(train_ds, d.train, meta),
                task.encode_inputs(val_ds, val_path, meta) if val_ds is not None else None, [], meta)
    tokenize_split = task.tokenize  # causal_lm adds eos and the token labels
    tok = lambda ds: tokenize_split(ds, tokenizer, d.text_column, d.text_pair_column, d.max_length)
    return tok(train_ds), (tok(val_ds) if val_ds is not None else None), meta.get("labels", []), meta


def _absolute(source: str) -> str:
    return str(Path(source).resolve()) if Path(source).is_dir() else source  # a folder, or a hub id


def prepare(cfg: Config, run_dir: Path) -> Job:
    """Read the data, load the model and build the loaders: everything `fit` needs. Also used
    by tools that train a throw-away copy (the LR finder)."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    set_seed(cfg.train.seed)
    task = get_task(cfg.task)
    text = task.USES_TOKENIZER
    m, recurrent = cfg.model, cfg.model.name in scratch.CELLS
    scratch_text = recurrent or m.name in (transformer.ENCODER, transformer.DECODER)
    trained: list[Any] = []  # from scratch with model.tokenizer 'train': fitted on the training split

    def fit(texts: list[str]) -> Any:
        # gpt: byte-level BPE, so that any generated ids decode back to clean text
        train = transformer.train_bpe_tokenizer if m.name == transformer.DECODER else scratch.train_tokenizer
        trained.append(train(texts, m.vocab_size, cfg.data.max_length))
        return trained[0]

    tokenizer = None
    if text and not (scratch_text and m.tokenizer in (None, "train")):
        tokenizer = load_tokenizer(m.tokenizer if scratch_text else m.name, m.trust_remote_code)
    train_ds, val_ds, _, meta = _load_data(cfg, task, tokenizer, fit if text and scratch_text else None)
    tokenizer = tokenizer or (trained[0] if trained else None)
    base_model_path = None  # a model trained from scratch exists only in its run
    if m.name == scratch.NAME:  # trained from scratch: random (seeded) or zero init
        model = scratch.build_model(m, task.input_sizes(meta), task.model_kwargs(meta))
    elif recurrent:  # seeded random init, an embedding per token of the tokenizer
        model = scratch.build_recurrent(m, tokenizer, task.model_kwargs(meta))
    elif m.name == transformer.ENCODER:  # seeded init (GPT-2's), positions for data.max_length tokens
        model = transformer.build_encoder(m, tokenizer, cfg.data.max_length, task.model_kwargs(meta))
    elif m.name == transformer.DECODER:
        model = transformer.build_decoder(m, tokenizer, cfg.data.max_length)
    else:
        overrides = dropout_overrides(cfg.model.name, cfg.model)
        model = load_model(cfg.model.name, task.model_kwargs(meta), cfg.model.trust_remote_code, overrides,
                           auto=task.AUTO_MODEL)
        base_model_path = _absolute(resolve_model(cfg.model.name))
    model = apply_strategy(model, cfg.strategy)  # freeze, or wrap with a peft adapter
    t = cfg.train
    collator = task.collator(tokenizer)
    # the loader's batch follows train.gd_mode (1 for stochastic, a memory-bounded piece for batch)
    train_loader = make_loader(train_ds, tokenizer, step_plan(t).loader_batch, t.seed, shuffle=True, collator=collator)
    val_loader = None
    if val_ds is not None:
        val_loader = make_loader(val_ds, tokenizer, t.eval_batch_size or 2 * t.batch_size, t.seed, shuffle=False,
                                 collator=collator)
    inputs = ({"text_column": cfg.data.text_column, "text_pair_column": cfg.data.text_pair_column,
               "max_length": cfg.data.max_length} if text else {})  # tabular: feature_columns, in meta
    metadata = {
        "task": cfg.task, **meta, "base_model": cfg.model.name, **inputs,
        # a peft run's model/ holds only the adapter: this is the base it is read back onto
        "base_model_path": base_model_path,
        "strategy": cfg.strategy.model_dump(mode="json"), "parameters": parameter_counts(model),
        **({"tokenizer": m.tokenizer or "train"} if scratch_text else {}),
        "label_column": cfg.data.label_column if task.LABELS else None,
        "gradtune_version": __version__,
    }
    loss_fn = task.make_loss(t, train_ds["labels"], model.config.num_labels)
    if cfg.strategy.method == "head" and cfg.strategy.cache_features:
        cached = cache_head(model, head_name(model), train_loader, val_loader, t.eval_batch_size or 2 * t.batch_size)
        if cached is None:
            console.print(f"[yellow]strategy.cache_features: {type(model).__name__}'s head does not read one vector "
                          "per example; running the frozen model at every step instead")
        else:  # the loop trains the head alone on the frozen model's cached outputs
            model, train_loader, val_loader = cached
    return Job(cfg, task, model, tokenizer, train_loader, val_loader, run_dir, metadata, loss_fn=loss_fn)


def train(
    config: Config | dict | str | Path, overrides: list[str] | None = None, *, resume: bool = False,
    overwrite: bool = False,
) -> Run:
    """Train from a config (object, dict or YAML path) plus `key=value` overrides."""
    cfg = as_config(config, overrides)
    resume_from = _prepare_run_dir(cfg, resume, overwrite)
    job = prepare(cfg, Path(cfg.output_dir))
    job.resume_from = resume_from
    run_dir = job.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    params = job.metadata["parameters"]["total"]  # of the whole model (the loop may run only its head)
    labels = job.metadata.get("labels")
    what = f"{len(labels)} labels" if labels else cfg.task
    console.print(f"Training {cfg.model.name} ({params / 1e6:.1f}M parameters) on "
                  f"{len(job.train_loader.dataset)} examples, {what} -> {run_dir}")
    counts = job.metadata["parameters"]  # also kept in model/gradtune.json
    console.print(f"Strategy {cfg.strategy.method}: {counts['trainable']:,} of {counts['total']:,} parameters "
                  f"train ({counts['percent']:.3g}%)")
    progress = fit(job)
    test_metrics = {}
    if cfg.data.test:
        test_metrics = evaluate(run_dir, cfg.data.test, cfg.train.eval_batch_size or 2 * cfg.train.batch_size)
        (run_dir / "test_metrics.json").write_text(json.dumps(test_metrics, indent=1))
    return Run(
        run_dir=run_dir, metrics=progress.last_eval, test_metrics=test_metrics, best_metric=progress.best_metric,
        best_step=progress.best_step, steps=progress.step, train_seconds=progress.train_seconds,
        samples_per_second=progress.samples / max(progress.train_seconds, 1e-9),
    )


def load(run: str | Path, backend: str = "torch") -> Predictor:
    """The trained model of a run directory, with `.predict(texts)` (causal_lm: `.generate(prompt)`);
    backend="onnx" predicts with onnxruntime from the run's ONNX export
    (`gradtune export RUN --format onnx --output RUN/onnx`)."""
    return Predictor(run, backend=backend)


def evaluate(run: str | Path, data: str | Path, batch_size: int = 64) -> dict[str, Any]:
    """Metrics of a trained run on a labelled file (same columns as in training)."""
    predictor = Predictor(run)
    meta = predictor.metadata
    labelled = predictor.task.LABELS  # causal_lm: the texts are the targets
    if predictor.tokenizer is None:  # tabular
        columns = DataConfig(feature_columns=meta["feature_columns"], label_column=meta["label_column"],
                             categorical_columns=meta.get("categorical_columns"))
    else:
        columns = DataConfig(text_column=meta["text_column"], text_pair_column=meta["text_pair_column"],
                             **({"label_column": meta["label_column"]} if labelled else {}))
    ds, _ = load_split(data, columns, with_labels=labelled)
    if labelled:
        ds = encode_column(ds, data, meta["label_column"], predictor.task.label_encoder(meta))
    if predictor.tokenizer is None:
        ds = predictor.task.encode_inputs(ds, data, meta)
    else:
        tokenize_split = predictor.task.tokenize
        ds = tokenize_split(ds, predictor.tokenizer, meta["text_column"], meta["text_pair_column"], meta["max_length"])
    collator = predictor.task.collator(predictor.tokenizer)
    loader = make_loader(ds, predictor.tokenizer, batch_size, seed=0, shuffle=False, collator=collator)
    accelerator = Accelerator(cpu=predictor.device.type == "cpu")
    result = evaluate_loader(predictor.model, loader, predictor.task, accelerator, meta)
    result["examples"] = len(ds)
    return result


def predict_file(run: str | Path, input_path: str | Path, output_path: str | Path, backend: str = "torch") -> int:
    """Predict every row of a file; write CSV (the text, or a tabular model's feature columns, then
    the task's columns: label(s) and one probability per label, or value) or JSON lines, chosen by
    the output's extension. Returns the number of rows."""
    predictor = Predictor(run, backend=backend)
    meta = predictor.metadata
    ds = read_table(input_path)
    if predictor.tokenizer is None:  # tabular: each output row starts with the row's input columns
        require_columns(ds, input_path, predictor.task.column_keys(meta))
        ds = ds.add_column("_row", list(range(len(ds))))
        inputs = predictor.task.file_inputs(ds, input_path, meta)
        results = predictor.predict(inputs)
    else:
        wanted = {"text_column": meta["text_column"], "text_pair_column": meta["text_pair_column"]}
        require_columns(ds, input_path, wanted)
        texts = ["" if t is None else str(t) for t in ds[meta["text_column"]]]
        pairs = [str(t) for t in ds[meta["text_pair_column"]]] if meta["text_pair_column"] else None
        results = predictor.predict(texts, pairs)
        inputs = [{"text": text} for text in texts]
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if output_path.suffix.lower() == ".csv":
        with output_path.open("w", newline="", encoding="utf-8") as f:
            rows = [{**given, **predictor.task.csv_row(r, meta)} for given, r in zip(inputs, results)]
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["text"])
            writer.writeheader()
            writer.writerows(rows)
    elif output_path.suffix.lower() in (".jsonl", ".json"):
        with output_path.open("w", encoding="utf-8") as f:
            for given, r in zip(inputs, results):
                f.write(json.dumps({**given, **r}, ensure_ascii=False) + "\n")
    else:
        raise GradtuneError(f"--output {output_path}: use a .csv or .jsonl file")
    return len(results)


__all__ = ["Run", "train", "load", "evaluate", "predict_file", "model_dir"]
