"""Everything the loop needs, from a config: the task, the checked data, the tokenizer, the model
with its strategy applied, the loaders, the loss and what the run will record (gradtune.json).
The loop, the learning-rate finder and the gradient check all start here."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import set_seed

from gradtune import __version__, models
from gradtune.data.batching import make_loader
from gradtune.data.cache import encode_split
from gradtune.data.packing import PackedCollator, pack
from gradtune.data.rows import load_split
from gradtune.errors import GradtuneError
from gradtune.tasks import get_task
from gradtune.tasks.base import LossFn, Task
from gradtune.tracking.console import log
from gradtune.training.head_cache import cache_head
from gradtune.training.optim import step_plan
from gradtune.training.strategies import apply_strategy, parameter_counts
from gradtune.training.strategies.heads import head_name


@dataclass
class Job:
    """Everything the loop needs."""

    cfg: Any  # gradtune.config.Config
    task: Task
    model: torch.nn.Module
    tokenizer: Any
    train_loader: DataLoader
    val_loader: DataLoader | None
    run_dir: Path
    metadata: dict[str, Any]  # saved as model/gradtune.json
    loss_fn: LossFn  # the summed training loss
    resume_from: Path | None = None
    # called after each evaluation with (step, metrics); a returned reason stops training (a sweep's pruner)
    on_eval: Callable[[int, dict[str, Any]], str | None] | None = None


@dataclass
class Splits:
    """Checked rows of the training and validation data, and what the task keeps of them."""

    train: datasets.Dataset
    validation: datasets.Dataset | None
    meta: dict[str, Any]  # the task's input settings and what it fit on the training rows


def read_data(cfg: Any, task: Task) -> Splits:
    """Read and check the training and validation files (validation: a file, or a seeded part of
    the training file), and let the task fit its label names / statistics on the training rows."""
    d = cfg.data
    if d.train is None:
        raise GradtuneError("data.train is not set: give a training file, e.g. data.train=train.csv")
    settings = task.input_settings(cfg)
    columns = task.columns(settings, labelled=task.labelled)
    train, skipped = load_split(d.train, columns, task.text_keys, d.on_empty)
    held_out, val_skipped = None, 0
    if d.validation_split:
        # split before the task sees the labels, so that a statistic of the training targets
        # (regression's mean/std) leaves these rows out; the split depends only on row count and seed
        parts = train.train_test_split(test_size=d.validation_split, seed=cfg.train.seed)
        train, held_out = parts["train"], parts["test"]
    train = sample(train, d.max_train_rows, cfg.train.seed)
    meta = {**settings, **task.fit(train, cfg, held_out)}
    validation = held_out
    if d.validation:
        validation, val_skipped = load_split(d.validation, columns, task.text_keys, d.on_empty)
    if validation is not None:
        validation = sample(validation, d.max_validation_rows, cfg.train.seed)
    for name, count in (("training", skipped), ("validation", val_skipped)):
        if count:
            log.warning(f"Skipped {count} {name} row(s) with empty text (data.on_empty=skip)")
    return Splits(train, validation, meta)


def sample(rows: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """At most `limit` rows: a seeded sample (in file order), or all of them."""
    if limit is None or limit >= len(rows):
        return rows
    return rows.select(sorted(random.Random(seed).sample(range(len(rows)), limit)))


def prepare(cfg: Any, run_dir: Path) -> Job:
    """Read the data, load or build the model, and make the loaders."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    set_seed(cfg.train.seed)
    task, d, t = get_task(cfg.task), cfg.data, cfg.train
    tokenizer = models.pretrained_tokenizer(cfg, task)
    splits = read_data(cfg, task)
    meta = splits.meta
    if tokenizer is None and task.uses_tokenizer:  # a model from scratch: its tokenizer learns the training texts
        tokenizer = models.train_tokenizer(cfg, task.tokenizer_texts(splits.train, meta))
    train_ds = encode_split(task, splits.train, d.train, tokenizer, meta, d.cache)  # cached: data/cache.py
    val_ds = None
    if splits.validation is not None:
        val_ds = encode_split(task, splits.validation, d.validation or d.train, tokenizer, meta, d.cache)

    meta["train_examples"] = len(splits.train)  # rows: one may give several features (qa), several one (packing)
    model = models.build(cfg, tokenizer, task, meta)  # random (seeded) init, or pretrained + the task's head
    if task.writes_text:
        # training never reuses past keys and values; a cache would also hide packed examples' boundaries
        model.config.use_cache = False
    model = apply_strategy(model, cfg.strategy)  # freeze, or wrap with a peft adapter
    collator = task.collator(tokenizer, model)
    train_collator = collator
    if d.packing:  # short examples share rows; position ids mark where each starts
        train_ds, train_collator = pack(train_ds, d.max_length), PackedCollator(tokenizer.pad_token_id)
    eval_batch = t.eval_batch_size or 2 * t.batch_size
    # the loader's batch follows train.gd_mode (1 for stochastic, a memory-bounded piece for batch)
    train_loader = make_loader(train_ds, tokenizer, step_plan(t).loader_batch, t.seed, shuffle=True,
                               collator=train_collator)
    val_loader = make_loader(val_ds, tokenizer, eval_batch, t.seed, shuffle=False, collator=collator) \
        if val_ds is not None else None
    scratch_text = models.family(cfg.model.name) is not None and task.uses_tokenizer
    metadata = {
        "task": cfg.task, **meta, "base_model": cfg.model.name,
        # a peft run's model/ holds only the adapter: this is the base it is read back onto
        "base_model_path": models.base_model_path(cfg),
        "strategy": cfg.strategy.model_dump(mode="json"), "parameters": parameter_counts(model),
        **({"tokenizer": cfg.model.tokenizer or "train"} if scratch_text else {}),
        "gradtune_version": __version__,
    }
    loss_fn = task.make_loss(t, train_ds["labels"], meta)
    if cfg.strategy.method == "head" and cfg.strategy.cache_features:
        cached = cache_head(model, head_name(model), train_loader, val_loader, eval_batch)
        if cached is None:
            log.warning(f"strategy.cache_features: {type(model).__name__}'s head does not read one vector "
                          "per example; running the frozen model at every step instead")
        else:  # the loop trains the head alone on the frozen model's cached outputs
            model, train_loader, val_loader = cached
    return Job(cfg, task, model, tokenizer, train_loader, val_loader, Path(run_dir), metadata, loss_fn)
