"""The config schema: every section and key, with its type, default and meaning (docs/config.md
is generated from it). Every section rejects unknown keys; the checks across keys (does this key
fit this task, model and strategy?) are in checks.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from gradtune.config.checks import check_config
from gradtune.tasks import TASKS
from gradtune.training.strategies import STRATEGIES


class Section(BaseModel):
    # overrides are read as YAML, so `output_dir=2024` or `data.label_column=1` arrive as numbers;
    # a string key keeps them as the text the user typed
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class ModelConfig(Section):
    name: str | None = Field(None, description="null: the task's default (minilm; causal_lm and instruct: smollm2); "
                             "a bundled alias (minilm, smollm2), local folder or hub id; mlp: a "
                      "multi-layer perceptron trained from scratch (task: tabular); rnn, lstm, gru: a "
                      "recurrent text model trained from scratch; transformer: a transformer encoder trained "
                      "from scratch (text tasks); gpt: a transformer decoder trained from scratch (task: causal_lm)")
    trust_remote_code: bool = Field(False, description="run model code shipped with a hub model")
    dropout: float | None = Field(
        None, ge=0, lt=1, description="hidden-layer dropout; null: the model's (rnn/lstm/gru: between layers, 0; "
        "transformer/gpt: on the embeddings and each sublayer's output, 0)")
    attention_dropout: float | None = Field(None, ge=0, lt=1, description="attention dropout; null: the model's "
                                             "(transformer/gpt: 0)")
    classifier_dropout: float | None = Field(None, ge=0, lt=1, description="dropout before the task head")
    hidden_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        [], description="mlp: widths of the hidden layers; [] is a linear model")
    bias: bool = Field(True, description="mlp: layers have a bias term")
    activation: Literal["relu", "tanh", "gelu", "sigmoid"] = Field("relu", description="mlp: between hidden layers")
    init: Literal["default", "zeros"] = Field(
        "default", description="mlp: default = PyTorch's random init (seeded by train.seed); zeros = all weights 0")
    embedding_size: int = Field(128, ge=1, description="rnn/lstm/gru: width of the token embeddings; "
                                "transformer/gpt: the model's width (embeddings and every block)")
    hidden_size: int = Field(128, ge=1, description="rnn/lstm/gru: width of each recurrent layer (per direction); "
                             "transformer/gpt: width of each block's MLP")
    num_layers: int = Field(1, ge=1, description="rnn/lstm/gru: stacked recurrent layers; transformer/gpt: blocks")
    num_heads: int = Field(4, ge=1, description="transformer/gpt: attention heads per block (must divide "
                           "embedding_size)")
    max_positions: int | None = Field(None, ge=8, description="transformer/gpt: the longest token sequence the "
                                      "learned position embeddings cover; null: data.max_length")
    bidirectional: bool = Field(False, description="rnn/lstm/gru: also read each text right to left")
    pooling: Literal["first", "last", "mean", "max"] | None = Field(
        None, description="rnn/lstm/gru: text vector = final state (last, the default; bidirectional: + the "
        "backward state at the first token), or the mean or max of the top layer's outputs over the real tokens; "
        "transformer: the first token's ([CLS]) final vector (first, the default), or the mean or max over the "
        "real tokens")
    tokenizer: str | None = Field(
        None, description="rnn/lstm/gru/transformer/gpt: 'train' (null) = a tokenizer trained on the training "
        "texts (WordPiece; gpt: byte-level BPE); or a pretrained model's alias/folder whose tokenizer is reused")
    vocab_size: int = Field(8000, ge=10, description="rnn/lstm/gru/transformer/gpt with tokenizer 'train': "
                            "vocabulary size (gpt: at least 258, the 256 bytes and 2 special tokens)")


class DataConfig(Section):
    train: str | None = Field(None, description="training file: csv, tsv, jsonl, json or parquet")
    validation: str | None = Field(None, description="validation file (or use validation_split)")
    validation_split: float | None = Field(None, gt=0, lt=1, description="seeded fraction of train")
    test: str | None = Field(None, description="scored with the best model after training (test_metrics.json)")
    max_train_rows: int | None = Field(None, ge=1, description="train on at most this many rows: a seeded sample "
                                       "of the training file (for a quick run)")
    max_validation_rows: int | None = Field(None, ge=1, description="evaluate on at most this many rows: a seeded "
                                            "sample of the validation data")
    text_column: str = Field("text", description="column holding the text")
    text_pair_column: str | None = Field(None, description="second text column for sentence-pair tasks")
    label_column: str = Field(
        "label", description="column holding the label (integer or string; regression: the number; "
        "multilabel: a list or a delimited string)")
    max_length: int = Field(128, ge=8, le=8192, description="longer texts are truncated (tokens)")
    on_empty: Literal["error", "skip"] = Field("error", description="rows with empty text")
    cache: bool = Field(True, description="keep the tokenized features in the user cache dir ($GRADTUNE_CACHE, else "
                        "~/.cache/gradtune), so a second run on the same file, rows and settings skips tokenizing")
    standardize_target: bool = Field(
        False, description="regression: learn (y - mean) / std of the training targets; outputs stay in y's units")
    feature_columns: list[str] | None = Field(
        None, description="tabular: the numeric input columns, in order (task tabular needs these or "
        "categorical_columns)")
    standardize_features: bool = Field(
        False, description="tabular: feed (x - mean) / std per feature, mean and std from the training rows")
    categorical_columns: list[str] | None = Field(
        None, description="tabular: input columns holding categories (any value, read as text); the categories "
        "are those of the training rows, an unseen one is encoded as all zeros")
    categorical_encoding: Literal["onehot", "embedding"] = Field(
        "onehot", description="tabular: onehot = one 0/1 input per category; embedding = a learned vector "
        "per category (categorical_embedding_size wide)")
    categorical_embedding_size: int = Field(
        4, ge=1, description="tabular with categorical_encoding embedding: width of each category's vector")
    label_names: list[str] | dict[str, str] | None = Field(
        None, description="classification: names for the labels, e.g. for labels 0-3: [World, Sports, Business, "
        "Sci/Tech] (in label order: numeric, or sorted) or a mapping {0: World, ...}; used in metrics, the "
        "confusion matrix, predictions and the saved model's id2label")
    source_column: str = Field("source", description="seq2seq: the column of source texts (what is translated)")
    target_column: str = Field("target", description="seq2seq: the column of target texts (its translation)")
    max_target_length: int | None = Field(None, ge=2, description="seq2seq: longer targets are cut (tokens); "
                                          "null: data.max_length")
    question_column: str = Field("question", description="qa: the column of questions")
    context_column: str = Field("context", description="qa: the column of contexts the answers are spans of")
    answers_column: str = Field(
        "answers", description="qa: the gold answers, {text: [...], answer_start: [...]} (SQuAD v1.1 JSON files "
        "are read as one row per question with these three columns)")
    doc_stride: int = Field(128, ge=1, description="qa: tokens of overlap between the windows of a long context")
    max_answer_length: int = Field(30, ge=1, description="qa: the longest answer, in tokens, that is predicted")
    messages_column: str = Field(
        "messages", description="instruct: the column holding a conversation, a list of {role, content} "
        "(roles system, user, assistant); files without it give alpaca rows (instruction_column, ...)")
    instruction_column: str = Field("instruction", description="instruct, alpaca rows: the instruction")
    input_column: str = Field("input", description="instruct, alpaca rows: optional input that follows the "
                              "instruction (a file may lack the column)")
    output_column: str = Field("output", description="instruct, alpaca rows: the answer the model learns")
    too_long: Literal["truncate", "skip", "error"] = Field(
        "truncate", description="instruct: a conversation longer than max_length tokens is cut (truncate), "
        "left out (skip) or an error naming its line; truncated and skipped ones are counted")
    packing: bool = Field(
        False, description="causal_lm, instruct: concatenate short examples into rows of max_length tokens "
        "(attention and loss never cross from one example to the next); faster on short texts")
    label_delimiter: str = Field(
        ",", min_length=1, description="multilabel: separates the labels in a string label cell ('food,service'); "
        "list cells (jsonl, json, parquet) need none")

    @model_validator(mode="after")
    def _one_validation_source(self) -> DataConfig:
        if self.validation and self.validation_split:
            raise ValueError("set data.validation or data.validation_split, not both")
        return self


class StrategyConfig(Section):
    method: Literal[tuple(STRATEGIES)] | None = (
        Field(None, description="null: the task's default (full; instruct: lora); which parameters train: full = "
              "all; head = only the task head on the frozen "
              "model (a feature extractor); top_k = the last `layers` blocks + head; bitfit = biases + head; lora, "
              "dora, ia3, prompt_tuning, prefix_tuning = a peft adapter + head (see docs/peft.md)"))
    layers: int | None = Field(None, ge=1, description="top_k: how many of the last transformer blocks train")
    cache_features: bool = Field(
        True, description="head: run the frozen model once over the data and train the head on the cached "
        "features (false: a full forward every step; same result, slower)")
    r: int = Field(8, ge=1, description="lora/dora: rank of the update B @ A")
    alpha: float = Field(16, gt=0, description="lora/dora: the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="lora/dora: dropout on the adapter's input")
    target_modules: list[str] | None = Field(
        None, description="lora/dora/ia3: names of the layers that get an adapter (a name matches a module "
        "whose dotted path ends with it); null: the architecture's attention projections (all Linear layers "
        "but the head when unknown)")
    feedforward_modules: list[str] | None = Field(
        None, description="ia3: which target_modules scale their input (feed-forward) rather than their output; "
        "null: the architecture's default (none with your own target_modules)")
    num_virtual_tokens: int = Field(20, ge=1, description="prompt_tuning/prefix_tuning: learned virtual tokens")

    @model_validator(mode="after")
    def _keys_of_the_method(self) -> StrategyConfig:
        if self.method is None:  # the task's default, chosen (and these keys checked) by Config
            return self
        reads = STRATEGIES[self.method].keys
        foreign = [key for key in STRATEGY_KEYS
                   if key not in reads and getattr(self, key) != StrategyConfig.model_fields[key].default]
        if foreign:
            owners = "; ".join(f"strategy.{key} is for {' / '.join(m for m, s in STRATEGIES.items() if key in s.keys)}"
                               for key in foreign)
            raise ValueError(f"{owners} (got strategy.method {self.method!r})")
        if self.method == "top_k" and self.layers is None:
            raise ValueError("strategy.method top_k needs strategy.layers: how many of the last blocks train, "
                             "e.g. strategy.layers=2")
        return self


STRATEGY_KEYS = [key for key in StrategyConfig.model_fields if key != "method"]


class TrainConfig(Section):
    epochs: float = Field(3, gt=0, description="passes over the training data (may be fractional)")
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps")
    batch_size: int = Field(32, ge=1, description="examples per optimizer step (minibatch mode)")
    micro_batch_size: int | None = Field(
        None, ge=1, description="examples per forward/backward; gradients of a step are accumulated")
    grad_accum_steps: int = Field(1, ge=1, description="batches of batch_size accumulated into one update")
    eval_batch_size: int | None = Field(None, ge=1, description="defaults to 2 x batch_size")
    gd_mode: Literal["minibatch", "stochastic", "batch"] = Field(
        "minibatch", description="minibatch: batch_size per update; stochastic: 1; batch: whole set")
    loss: Literal["cross_entropy", "mse", "bce", "huber", "l1"] | None = Field(
        None, description="loss minimised by gradient descent (must fit the task); null: the task's "
        "first (classification: cross_entropy, regression: mse, multilabel: bce, tabular: mse, causal_lm: "
        "cross_entropy on the next token); tabular with cross_entropy predicts a class")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross_entropy label smoothing")
    class_weights: list[float] | Literal["balanced"] | None = Field(
        None, description="cross_entropy class weights, in label order, or 'balanced' (from train labels)")
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop", "adagrad"] = Field("adamw", description="torch.optim class")
    lr: float = Field(5e-5, gt=0, description="peak learning rate (eta in theta <- theta - eta * grad)")
    momentum: float = Field(0.0, ge=0, description="sgd and rmsprop momentum")
    nesterov: bool = Field(False, description="sgd: Nesterov momentum (needs momentum > 0)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam/adamw moment decay rates")
    alpha: float = Field(0.99, gt=0, lt=1, description="rmsprop smoothing constant")
    eps: float = Field(1e-8, gt=0, description="adam/adamw/rmsprop/adagrad denominator term")
    schedule: Literal["constant", "linear", "cosine", "cosine_restarts", "polynomial", "plateau"] = Field(
        "linear", description="learning rate after warmup")
    num_cycles: int = Field(2, ge=1, description="cosine_restarts: number of cosine cycles")
    power: float = Field(1.0, gt=0, description="polynomial: decay power (1 = linear)")
    lr_end: float = Field(0.0, ge=0, description="polynomial: final learning rate")
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="plateau: lr multiplier when stuck")
    plateau_patience: int = Field(1, ge=0, description="plateau: evaluations without improvement first")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="fraction of steps with rising lr")
    warmup_steps: int | None = Field(None, ge=0, description="overrides warmup_ratio")
    weight_decay: float = Field(
        0.01, ge=0, description="on weight matrices only (AdamW: decoupled; others: L2 in the gradient)")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the global gradient norm; null: off")
    clip_value: float | None = Field(None, gt=0, description="clip each gradient element to +-value")
    on_nonfinite: Literal["stop", "skip"] = Field("stop", description="a NaN/inf loss or gradient")
    eval_every: int | Literal["epoch"] = Field("epoch", description="'epoch' or every N steps")
    log_every: int = Field(10, ge=1, description="steps between metrics.jsonl training records")
    metric: str | None = Field(
        None, description="validation metric that picks the best model; null: accuracy (classification), "
        "r2 (regression), f1_micro (multilabel), perplexity (causal_lm), tabular: r2, or accuracy with cross_entropy")
    metric_mode: Literal["auto", "max", "min"] = Field(
        "auto", description="auto: min for loss, mse, mae, rmse, hamming_loss, perplexity; else max")
    threshold: float | dict[str, float] = Field(
        0.5, description="multilabel: a label is predicted when its probability is above this; one number, or "
        "a mapping label -> threshold (labels not listed: 0.5)")
    num_beams: int = Field(1, ge=1, description="seq2seq: beams of the beam search that writes the targets at "
                           "evaluation and prediction; 1 = greedy")
    max_new_tokens: int = Field(64, ge=1, description="seq2seq: the longest target written at evaluation and "
                                "prediction (tokens)")
    early_stopping_patience: int | None = Field(None, ge=1, description="evaluations without improvement")
    early_stopping_min_delta: float = Field(0.0, ge=0, description="smaller changes are no improvement")
    save_every: int | Literal["epoch"] = Field("epoch", description="checkpoint every epoch or N steps")
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept on disk")
    seed: int = Field(42, description="seeds init, dropout and data order: same seed, same run")
    num_threads: int | None = Field(None, ge=1, description="CPU threads; default: torch's")
    precision: Literal["auto", "fp32", "fp16", "bf16", "fp64"] = Field(
        "auto", description="auto: fp32 on CPU, bf16/fp16 on a GPU that has it; fp64 for exact checks")
    compile: bool = Field(False, description="torch.compile the model (after the strategy): compiling takes "
                          "time at the first steps; see docs/training.md for its measured effect")
    progress: bool = Field(True, description="show the progress bar")
    trackers: list[str] = Field(
        [], description="experiment trackers that also get the logged metrics and the config: tensorboard "
        "(RUN/tensorboard/), mlflow (MLFLOW_TRACKING_URI, else RUN/mlruns/); see docs/tracking.md")

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ValueError("train.nesterov needs train.optimizer=sgd and train.momentum > 0")
        if self.warmup_steps is not None and "warmup_ratio" in self.model_fields_set:
            raise ValueError("set train.warmup_steps or train.warmup_ratio, not both")
        return self

    @field_validator("threshold")
    @classmethod
    def _probabilities(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        for label, value in (v.items() if isinstance(v, dict) else [(None, v)]):
            if not 0 < value < 1:
                where = f"label {label!r}: " if label is not None else ""
                raise ValueError(f"{where}{value} is not a probability strictly between 0 and 1")
        return v

    @field_validator("eval_every", "save_every")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be 'epoch' or a number of steps >= 1")
        return v

    @field_validator("trackers", mode="before")
    @classmethod
    def _tracker_list(cls, v: object) -> object:
        # train.trackers=tensorboard or =tensorboard,mlflow on the command line: a list of names
        return [name.strip() for name in v.split(",") if name.strip()] if isinstance(v, str) else v

    @field_validator("trackers")
    @classmethod
    def _known_trackers(cls, v: list[str]) -> list[str]:
        from gradtune.tracking.trackers import check_trackers

        return check_trackers(v)


class DistributedConfig(Section):
    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="how several processes (`gradtune train --nproc N`, torchrun, accelerate launch) share "
        "the work, through accelerate: ddp = every process holds the whole model and the gradients are "
        "averaged; fsdp, deepspeed = the weights, gradients and optimizer state are sharded across GPUs "
        "(GPUs only; deepspeed needs `pip install deepspeed`). One process ignores it")
    options: dict[str, Any] = Field(
        default_factory=dict, description="fsdp / deepspeed: keyword arguments for accelerate's "
        "FullyShardedDataParallelPlugin / DeepSpeedPlugin, e.g. {fsdp_version: 2, cpu_offload: true} or "
        "{zero_stage: 3}")

    @model_validator(mode="after")
    def _options_of_the_strategy(self) -> DistributedConfig:
        from gradtune.training.distributed import check_options

        check_options(self.strategy, self.options)
        return self


class Config(Section):
    task: Literal[tuple(TASKS)] = Field("classification", description="what is learned")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    strategy: StrategyConfig = StrategyConfig()
    train: TrainConfig = TrainConfig()
    distributed: DistributedConfig = DistributedConfig()
    output_dir: str = Field("runs/default", description="the run directory")
    report: bool = Field(True, description="write RUN/report/ at the end of training: one HTML page with the curves, "
                         "metrics and the model's mistakes (`gradtune report RUN` writes it later)")
    # train keys the validator filled in from the task's defaults: a re-validation with another
    # task (as_config with task=...) must choose them again, not keep the old task's
    _filled: set[str] = PrivateAttr(default_factory=set)

    @model_validator(mode="after")
    def _fits_the_task(self) -> Config:
        """Fill in the task's default loss and metric (null), and check every key against the task,
        the model and the strategy (checks.py)."""
        from gradtune.tasks import get_task

        task = get_task(self.task)
        defaults = {("model", "name"): lambda: task.default_model,
                    ("strategy", "method"): lambda: task.default_strategy, ("train", "loss"): lambda: task.losses[0],
                    ("train", "metric"): lambda: task.default_metric_for(self.train.loss)}
        for (section, key), default in defaults.items():  # in order: the metric follows the loss
            if getattr(getattr(self, section), key) is None:
                setattr(getattr(self, section), key, default())
                self._filled.add(f"{section}.{key}")
        check_config(self, task)
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
