"""Models trained from scratch: `model.name: mlp`, a multi-layer perceptron over numeric features
(task: tabular). It is a Hugging Face PreTrainedModel / PretrainedConfig pair registered with the
Auto classes, so a run directory saves and loads it exactly as it does a pretrained encoder.

With `model.hidden_sizes: []` it is a linear model, logits = features @ W.T (+ b): gradient
descent on it is the textbook linear regression."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

NAME = "mlp"  # the model.name that selects this model
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class MLPConfig(PretrainedConfig):
    model_type = "gradtune-mlp"

    def __init__(
        self, num_features: int = 1, hidden_sizes: list[int] | tuple[int, ...] = (), bias: bool = True,
        activation: str = "relu", init: str = "default", **kwargs: Any,
    ):
        self.num_features = num_features
        self.hidden_sizes = list(hidden_sizes)
        self.bias = bias
        self.activation = activation
        self.init = init
        super().__init__(**kwargs)


class MLPForSequenceClassification(PreTrainedModel):
    """features [b, f] -> hidden layers (Linear + activation) -> a Linear head with num_labels outputs."""

    config_class = MLPConfig
    base_model_prefix = "mlp"
    main_input_name = "features"

    def __init__(self, config: MLPConfig):
        super().__init__(config)
        sizes = [config.num_features, *config.hidden_sizes]
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
        logits = self.head(self.layers(x))
        loss = None
        if labels is not None:  # the HF convention; gradtune's loop computes its own loss
            loss = nn.functional.mse_loss(logits[:, 0], labels.to(logits.dtype))
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(MLPConfig.model_type, MLPConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MLPConfig, MLPForSequenceClassification, exist_ok=True)


def build_model(model_cfg: Any, num_features: int, head: dict[str, Any]) -> MLPForSequenceClassification:
    """A freshly initialised MLP (seeded by the caller's set_seed(train.seed)); `head` is the
    task's model_kwargs (num_labels, problem_type)."""
    config = MLPConfig(num_features=num_features, hidden_sizes=model_cfg.hidden_sizes, bias=model_cfg.bias,
                       activation=model_cfg.activation, init=model_cfg.init, **head)
    return MLPForSequenceClassification(config)
