"""The loss a Hugging Face model returns when called with labels, for the from-scratch models
(gradtune's loop computes its own loss from the logits; this keeps the HF convention for anyone
using a saved model with transformers alone)."""

from __future__ import annotations

import torch
from torch import nn


def hf_loss(logits: torch.Tensor, labels: torch.Tensor | None, problem_type: str | None) -> torch.Tensor | None:
    if labels is None:
        return None
    if problem_type == "regression":
        return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    if problem_type == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return nn.functional.cross_entropy(logits, labels.long())
