"""`model.name: mlp`, a multi-layer perceptron over numeric features (task: tabular), trained from
scratch. A Hugging Face PreTrainedModel / PretrainedConfig pair registered with the Auto classes,
so a run directory saves and loads it exactly as it does a pretrained encoder.

With `model.hidden_sizes: []` it is a linear model, logits = features @ W.T (+ b): gradient
descent on it is the textbook linear regression."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from gradtune.models.hf_loss import hf_loss

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
        return SequenceClassifierOutput(loss=hf_loss(logits, labels, self.config.problem_type), logits=logits)


AutoConfig.register(MLPConfig.model_type, MLPConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MLPConfig, MLPForSequenceClassification, exist_ok=True)


def build(cfg: Any, tokenizer: Any, task: Any, meta: dict[str, Any]) -> MLPForSequenceClassification:
    """A freshly initialised MLP (seeded by the caller's set_seed(train.seed)); the task's
    model_kwargs give its input width (num_features, category_sizes, ...) and head."""
    m = cfg.model
    config = MLPConfig(hidden_sizes=m.hidden_sizes, bias=m.bias, activation=m.activation, init=m.init,
                       **task.model_kwargs(meta))
    return MLPForSequenceClassification(config)
