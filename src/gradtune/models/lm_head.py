"""The language-model head only where a token is predicted. A causal LM's head maps every position
to a score per vocabulary entry (SmolLM2: 576 -> 49,152, about a third of a LoRA step's compute), but
training scores only the positions whose next token is a target: an instruction's prompt and the
padding are not. `NextTokenLoss.of_model` asks the model for the logits at those positions alone
(transformers' `logits_to_keep` given a boolean [batch, tokens] mask returns [kept, vocab]) and takes
the cross-entropy there: the same sum as over the full logits, without computing what is thrown away.

Where the model can't be asked, the full head runs and the ignored positions are masked out of the
loss, as before; `keeps_logits` says which (see there).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F

IGNORE = -100  # a label that is not a target (padding, a prompt), as in PyTorch's cross_entropy


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at positions 0..t-2 and the tokens they predict (1..t-1). The loop trims a micro-
    batch's inputs to its longest text but not its labels; the columns cut off are all padding."""
    labels = labels[:, : logits.shape[1]]
    return logits[:, :-1], labels[:, 1:]


def next_token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the full logits [batch, tokens, vocab], summed over the targets."""
    logits, targets = shifted(logits, labels)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")


def predicting(labels: torch.Tensor, width: int) -> torch.Tensor:
    """[batch, width] bool: True at position i when the token at i + 1 is a target."""
    keep = torch.zeros(labels.shape[0], width, dtype=torch.bool, device=labels.device)
    keep[:, :-1] = labels[:, 1:width] != IGNORE
    return keep


def keeps_logits(model: torch.nn.Module) -> bool:
    """Whether `model(..., logits_to_keep=mask)` returns the logits of the masked positions only.
    Yes for transformers' causal LMs whose head reads `slice_logits_to_keep` (Llama, Qwen, Mistral,
    GPT-2, ... about 250 of them in transformers 5) and gradtune's `gpt`, bare, under a peft adapter that
    lives inside the layers (LoRA, DoRA, IA3) or under DDP. The full head runs instead (the fallback)
    for: prompt and prefix tuning (virtual tokens shift the positions), a `train.compile` model (a
    data-dependent shape would break the compiled graph), and any other model (it may slice its own way)."""
    from accelerate.utils import is_compiled_module
    from peft import PeftModel
    from torch.nn.parallel import DistributedDataParallel
    from transformers.modeling_utils import slice_logits_to_keep

    if isinstance(model, DistributedDataParallel):
        model = model.module
    if is_compiled_module(model):
        return False
    if isinstance(model, PeftModel):
        if model.active_peft_config.is_prompt_learning:
            return False
        model = model.get_base_model()
    # the model's own module imports the helper that honours a boolean mask: its forward slices with it
    return getattr(sys.modules.get(type(model).__module__), "slice_logits_to_keep", None) is slice_logits_to_keep


class NextTokenLoss:
    """causal_lm's and instruct's training loss: next-token cross-entropy summed over the targets.
    Called with (logits, labels) it scores full logits; `of_model` runs the model and computes the
    head only at the positions that predict a target."""

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return next_token_loss_sum(logits, labels)

    def of_model(self, model: torch.nn.Module, inputs: dict[str, Any], labels: torch.Tensor) -> torch.Tensor:
        width = inputs["input_ids"].shape[1]
        if not keeps_logits(model):
            # the text's logits are the last `width`: prompt tuning puts its virtual tokens' before them
            return self(model(**inputs).logits[:, -width:], labels)
        keep = predicting(labels, width)
        logits = model(**inputs, logits_to_keep=keep).logits  # [kept positions, vocab]
        targets = labels[:, 1:width][keep[:, :-1]]
        if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
            raise RuntimeError(f"{type(model).__name__} returned logits of shape {tuple(logits.shape)} for "
                               f"logits_to_keep selecting {targets.shape[0]} positions")
        return F.cross_entropy(logits, targets, reduction="sum")
