"""Models trained from scratch: `model.name: mlp`, a multi-layer perceptron over numeric features
(task: tabular), and `model.name: rnn | lstm | gru`, recurrent text classifiers (with a WordPiece
tokenizer trained on the training texts, or a pretrained one). Each is a Hugging Face
PreTrainedModel / PretrainedConfig pair registered with the Auto classes, so a run directory saves
and loads it exactly as it does a pretrained encoder.

With `model.hidden_sizes: []` it is a linear model, logits = features @ W.T (+ b): gradient
descent on it is the textbook linear regression."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.modeling_outputs import SequenceClassifierOutput

NAME = "mlp"  # the model.name that selects this model
CELLS = ("rnn", "lstm", "gru")  # the model.names of the recurrent models
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")  # a trained tokenizer's special tokens, ids 0-3
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class MLPConfig(PretrainedConfig):
    model_type = "gradtune-mlp"

    def __init__(
        self, num_features: int = 1, hidden_sizes: list[int] | tuple[int, ...] = (), bias: bool = True,
        activation: str = "relu", init: str = "default", category_sizes: list[int] | tuple[int, ...] = (),
        category_embedding_size: int = 4, **kwargs: Any,
    ):
        self.num_features = num_features
        self.category_sizes = list(category_sizes)  # tabular embeddings: categories + 1 per column (0: unseen)
        self.category_embedding_size = category_embedding_size
        self.hidden_sizes = list(hidden_sizes)
        self.bias = bias
        self.activation = activation
        self.init = init
        super().__init__(**kwargs)


class MLPForSequenceClassification(PreTrainedModel):
    """features [b, f] -> hidden layers (Linear + activation) -> a Linear head with num_labels outputs.
    With category_sizes (tabular categorical_encoding embedding) the last len(category_sizes)
    feature columns are category ids: each is replaced by its row of a learned embedding table
    (row 0, an unseen category, is zero and never trained: padding_idx) before the first layer."""

    config_class = MLPConfig
    base_model_prefix = "mlp"
    main_input_name = "features"

    def __init__(self, config: MLPConfig):
        super().__init__(config)
        self.categories = nn.ModuleList(
            nn.Embedding(n, config.category_embedding_size, padding_idx=0) for n in config.category_sizes)
        width = config.num_features + len(config.category_sizes) * config.category_embedding_size
        sizes = [width, *config.hidden_sizes]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(width_in, width_out, bias=config.bias), ACTIVATIONS[config.activation]()]
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], config.num_labels, bias=config.bias)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # "default": PyTorch's own Linear init, drawn in the constructor from the seeded RNG;
        # "zeros": every weight and bias 0, the textbook starting point w = 0
        if isinstance(module, nn.Linear) and self.config.init == "zeros":
            with torch.no_grad():
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Any
    ) -> SequenceClassifierOutput:
        x = features.to(self.head.weight.dtype)  # the loader's float32, or fp64 after model.double()
        if self.categories:
            ids = features[:, self.config.num_features:].long()
            x = torch.cat([x[:, :self.config.num_features],
                           *(table(ids[:, i]) for i, table in enumerate(self.categories))], dim=-1)
        logits = self.head(self.layers(x))
        loss = None
        if labels is not None:  # the HF convention; gradtune's loop computes its own loss
            if self.config.problem_type == "regression":
                loss = nn.functional.mse_loss(logits[:, 0], labels.to(logits.dtype))
            else:  # tabular classification
                loss = nn.functional.cross_entropy(logits, labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(MLPConfig.model_type, MLPConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MLPConfig, MLPForSequenceClassification, exist_ok=True)


def build_model(model_cfg: Any, inputs: dict[str, Any], head: dict[str, Any]) -> MLPForSequenceClassification:
    """A freshly initialised MLP (seeded by the caller's set_seed(train.seed)); `inputs` is the
    tabular task's input_sizes (num_features, category_sizes, ...), `head` its model_kwargs
    (num_labels, problem_type, labels)."""
    config = MLPConfig(hidden_sizes=model_cfg.hidden_sizes, bias=model_cfg.bias, activation=model_cfg.activation,
                       init=model_cfg.init, **inputs, **head)
    return MLPForSequenceClassification(config)


def hf_loss(logits: torch.Tensor, labels: torch.Tensor | None, problem_type: str | None) -> torch.Tensor | None:
    """The loss a Hugging Face model returns when given labels (gradtune's loop computes its own)."""
    if labels is None:
        return None
    if problem_type == "regression":
        return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    if problem_type == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return nn.functional.cross_entropy(logits, labels)


class RecurrentConfig(PretrainedConfig):
    model_type = "gradtune-recurrent"

    def __init__(
        self, cell: str = "lstm", vocab_size: int = 8000, embedding_size: int = 128, hidden_size: int = 128,
        num_layers: int = 1, bidirectional: bool = False, pooling: str = "last", dropout: float = 0.0,
        classifier_dropout: float = 0.0, **kwargs: Any,
    ):
        self.cell, self.vocab_size, self.embedding_size = cell, vocab_size, embedding_size
        self.hidden_size, self.num_layers, self.bidirectional = hidden_size, num_layers, bidirectional
        self.pooling, self.dropout, self.classifier_dropout = pooling, dropout, classifier_dropout
        super().__init__(**kwargs)


class RecurrentForSequenceClassification(PreTrainedModel):
    """input_ids [b, t] -> embedding -> num_layers recurrent layers over the real tokens only
    (packed: padding never enters the recurrence) -> pooling (last | mean | max) -> a Linear head."""

    config_class = RecurrentConfig
    base_model_prefix = "recurrent"
    main_input_name = "input_ids"

    def __init__(self, config: RecurrentConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size)
        kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
        self.rnn = kind(config.embedding_size, config.hidden_size, num_layers=config.num_layers, batch_first=True,
                        bidirectional=config.bidirectional, dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.head = nn.Linear(config.hidden_size * (2 if config.bidirectional else 1), config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        pass  # PyTorch's own init, drawn in the constructor from the seeded RNG

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, **kwargs: Any,
    ) -> SequenceClassifierOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        mask = mask.bool()
        # the real tokens first, in order, whichever side the tokenizer padded
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        ids, mask = input_ids.gather(1, order), mask.gather(1, order)
        lengths = mask.sum(dim=1).clamp(min=1)
        packed = pack_padded_sequence(self.embeddings(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        if self.config.pooling == "last":  # final forward state (+ the backward state at the first token)
            h = state[0] if isinstance(state, tuple) else state
            pooled = torch.cat([h[-2], h[-1]], dim=-1) if self.config.bidirectional else h[-1]
        else:
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
            real = mask[:, :, None]
            if self.config.pooling == "mean":
                pooled = (out * real).sum(dim=1) / lengths[:, None].to(out.dtype)
            else:
                pooled = out.masked_fill(~real, float("-inf")).max(dim=1).values
        logits = self.head(self.drop(pooled))
        return SequenceClassifierOutput(loss=hf_loss(logits, labels, self.config.problem_type), logits=logits)


AutoConfig.register(RecurrentConfig.model_type, RecurrentConfig, exist_ok=True)
AutoModelForSequenceClassification.register(RecurrentConfig, RecurrentForSequenceClassification, exist_ok=True)


def build_recurrent(model_cfg: Any, tokenizer: Any, head: dict[str, Any]) -> RecurrentForSequenceClassification:
    """A freshly initialised recurrent classifier (seeded by the caller's set_seed(train.seed)) whose
    embedding covers the tokenizer's vocabulary; `head` is the task's model_kwargs."""
    config = RecurrentConfig(
        cell=model_cfg.name, vocab_size=len(tokenizer), embedding_size=model_cfg.embedding_size,
        hidden_size=model_cfg.hidden_size, num_layers=model_cfg.num_layers, bidirectional=model_cfg.bidirectional,
        pooling=model_cfg.pooling or "last", dropout=model_cfg.dropout or 0.0,
        classifier_dropout=model_cfg.classifier_dropout or 0.0, pad_token_id=tokenizer.pad_token_id, **head,
    )
    return RecurrentForSequenceClassification(config)


def train_tokenizer(texts: Any, vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A lowercasing WordPiece tokenizer trained on `texts` (the training split), with [PAD] [UNK]
    [CLS] [SEP]; single texts become [CLS] text [SEP], pairs [CLS] a [SEP] b [SEP]. Deterministic."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    # the trainer numbers the "##x" pieces in its (hash-ordered) walk over the words, and breaks
    # ties between equally frequent merges by those numbers: fixing them first makes it deterministic
    inner = sorted({c for t in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t))
                    for c in w[1:]})
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[*SPECIALS, *(f"##{c}" for c in inner)],
                                        show_progress=False)
    draft = Tokenizer(WordPiece(unk_token="[UNK]"))
    draft.normalizer, draft.pre_tokenizer = normalizer, pre_tokenizer
    draft.train_from_iterator(texts, trainer, length=len(texts))
    tok = Tokenizer(WordPiece(draft.get_vocab(), unk_token="[UNK]"))  # only the four specials stay special
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    tok.add_special_tokens(list(SPECIALS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_max_length=max_length)
