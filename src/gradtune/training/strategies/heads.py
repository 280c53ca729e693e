"""Finding the task head of a model (it always trains), and a causal LM's output layer (it never
does: the vocabulary belongs to the pretrained model)."""

from __future__ import annotations

from torch import nn

from gradtune.errors import GradtuneError

# HF encoders, HF decoders (Llama, GPT-2), gradtune's scratch models, HF question answering
HEAD_NAMES = ("classifier", "score", "head", "qa_outputs")


def language_model_output(model: nn.Module) -> str | None:
    """A causal LM's output layer (lm_head, often tied to the token embeddings); None for a model
    with a task head. It is neither trained in full nor adapted: the vocabulary stays as it was."""
    if any(name in dict(model.named_children()) for name in HEAD_NAMES):
        return None
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return next((name for name, m in model.named_children() if m is output), None) if output is not None else None


def head_name(model: nn.Module) -> str:
    """The name of the model's task head (a direct child)."""
    children = dict(model.named_children())
    for name in HEAD_NAMES:
        if name in children:
            return name
    if language_model_output(model):
        raise GradtuneError(f"{type(model).__name__} is a language model: its output layer scores the vocabulary "
                            "and belongs to the pretrained model, so there is no task head to train alone; use "
                            "strategy.method lora, dora, ia3, prompt_tuning, top_k or bitfit")
    raise GradtuneError(f"{type(model).__name__}: no task head found (looked for a top-level "
                        f"{' / '.join(HEAD_NAMES)} module); strategy.method other than full needs one")


def trained_output(model: nn.Module) -> str:
    """What always trains besides the strategy's share: the task head. A causal LM has none; its
    output layer is named instead, to be kept frozen."""
    return language_model_output(model) or head_name(model)
