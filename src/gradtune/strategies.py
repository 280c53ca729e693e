"""Fine-tuning strategies: which parameters train. Freezing rules (full, head, top_k, bitfit) and
peft wrapping (lora, dora, ia3, prompt_tuning, prefix_tuning).

The task head (a top-level `classifier`, `score` or `head` module, found on the model) always
trains: a freshly initialised head on a frozen model predicts nothing. Under peft it is a
`modules_to_save` module, so the adapter folder carries it.

A peft run saves only the adapter (+ head) in model/; the base model is named in gradtune.json
and read again from there (a from-scratch base, which exists nowhere else, is saved in
model/base/). `load_adapter_model` rebuilds it.
"""

from __future__ import annotations

import copy
import inspect
import types
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from gradtune.errors import GradtuneError

PEFT_METHODS = ("lora", "dora", "ia3", "prompt_tuning", "prefix_tuning")
MERGEABLE = ("lora", "dora", "ia3")  # adapters that are weights: merge_and_unload folds them in
HEAD_NAMES = ("classifier", "score", "head")  # HF encoders, HF decoders (Llama, GPT-2), gradtune's scratch models

# default adapter targets by config.model_type: the attention projections (LoRA paper, QLoRA for
# Llama's o_proj); an architecture not listed gets every Linear layer except the head
LORA_TARGETS = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet"), ["query", "key", "value"]),
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"),
                    ["q_proj", "k_proj", "v_proj", "o_proj"]),
    "gpt2": ["c_attn", "attn.c_proj"],
}
LINEAR_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
# peft 0.21 still calls a transformers 5 name that warns on every wrap; nothing the user can act on
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


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


def language_model_output(model: nn.Module) -> str | None:
    """A causal LM's output layer (lm_head, often tied to the token embeddings); None for a model
    with a task head. It is neither trained in full nor adapted: the vocabulary stays as it was."""
    if any(name in dict(model.named_children()) for name in HEAD_NAMES):
        return None
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return next((name for name, m in model.named_children() if m is output), None) if output is not None else None


def linear_layers(model: nn.Module, head: str) -> list[str]:
    """Dotted names of the leaf Linear/Conv layers outside the head: what an adapter can target."""
    from transformers.pytorch_utils import Conv1D  # GPT-2's transposed Linear

    return [name for name, module in model.named_modules()
            if isinstance(module, (*LINEAR_TYPES, Conv1D)) and name.split(".")[0] != head]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)  # peft's rule for a list of target names


def _targets(model: nn.Module, s: Any, head: str) -> tuple[list[str], list[str]]:
    """(target_modules, feedforward_modules) for lora/dora/ia3, checked against the model."""
    layers = linear_layers(model, head)
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if s.target_modules is None:
        if s.method == "ia3":
            from peft.utils.constants import (
                TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as IA3_FF,
            )
            from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as IA3_TARGETS

            if model_type in IA3_TARGETS:
                return list(IA3_TARGETS[model_type]), list(IA3_FF.get(model_type, []))
        elif model_type in LORA_TARGETS:
            return list(LORA_TARGETS[model_type]), []
        if not layers:
            raise GradtuneError(f"strategy.method {s.method}: {type(model).__name__} has no Linear layer outside its "
                                f"head {head!r} to adapt; use strategy.method full or head")
        return layers, []
    short = sorted({name.rsplit(".", 1)[-1] for name in layers})
    for target in s.target_modules:
        if _matches(head, target) or target.split(".")[0] == head:
            raise GradtuneError(f"strategy.target_modules: {target!r} is the task head, which always trains in "
                                "full; name layers of the model body")
        if not any(_matches(name, target) for name in layers):
            example = f" (e.g. {layers[0]})" if layers else ""
            raise GradtuneError(
                f"strategy.target_modules: no Linear/Conv layer named {target!r} in {type(model).__name__}; "
                f"its layer names are: {', '.join(short) or '(none)'}{example}. A name matches a layer whose "
                "dotted path ends with it.")
    feedforward = list(s.feedforward_modules or [])
    stray = [f for f in feedforward if f not in s.target_modules]
    if stray:
        raise GradtuneError(f"strategy.feedforward_modules: {', '.join(stray)} not in strategy.target_modules")
    return list(s.target_modules), feedforward


def _peft_config(model: nn.Module, s: Any, head: str) -> Any:
    import peft

    common = {"task_type": peft.TaskType.SEQ_CLS, "modules_to_save": [head]}
    if language_model_output(model) == head:  # a causal LM: adapters only, the output layer stays frozen
        common = {"task_type": peft.TaskType.CAUSAL_LM}
    forward = inspect.signature(model.forward).parameters
    if s.method in ("prompt_tuning", "prefix_tuning") and "inputs_embeds" not in forward:
        raise GradtuneError(f"strategy.method {s.method}: {type(model).__name__} does not read token embeddings "
                            "(no inputs_embeds), so it cannot take virtual tokens; use lora or head")
    if s.method in ("lora", "dora"):
        targets, _ = _targets(model, s, head)
        return peft.LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=targets,
                               use_dora=s.method == "dora", **common)
    if s.method == "ia3":
        targets, feedforward = _targets(model, s, head)
        return peft.IA3Config(target_modules=targets, feedforward_modules=feedforward, **common)
    if s.method == "prompt_tuning":
        return peft.PromptTuningConfig(num_virtual_tokens=s.num_virtual_tokens, **common)
    return peft.PrefixTuningConfig(num_virtual_tokens=s.num_virtual_tokens, **common)


def _takes_a_cache(model: nn.Module, head: str) -> bool:
    """Whether peft's prefix reaches the attention: a causal LM must read a cache (`cache`, or the
    older `past_key_values`), a classifier's model or backbone `past_key_values` (peft's check)."""
    takes = lambda m, names: isinstance(m, nn.Module) and bool(names & set(inspect.signature(m.forward).parameters))
    if language_model_output(model) == head:
        return takes(model, {"cache", "past_key_values"})
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return takes(model, {"past_key_values"}) or takes(backbone, {"past_key_values"})


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The longest ModuleList of the model (BERT's encoder.layer, Llama's model.layers)."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise GradtuneError(f"strategy.method top_k: {type(model).__name__} has no list of transformer blocks; "
                            "use full, head or bitfit")
    return max(lists, key=lambda item: len(item[1]))


def _train_head_only_body_eval(model: nn.Module, head: str) -> None:
    """`head`: the frozen body is a feature extractor, so it stays in eval mode (no dropout) even
    while the loop calls model.train(); only the head's own modules follow train()."""
    plain_train = model.train

    def train(self: nn.Module, mode: bool = True) -> nn.Module:
        plain_train(mode)
        for name, child in self.named_children():
            if name != head:
                child.eval()
        return self

    model.train = types.MethodType(train, model)
    model.train(model.training)


def apply_strategy(model: nn.Module, s: Any) -> nn.Module:
    """Freeze what `strategy.method` leaves alone, or wrap the model with a peft adapter."""
    if s.method == "full":
        return model
    head = language_model_output(model) if s.method != "head" else None
    head = head or head_name(model)
    if s.method in PEFT_METHODS:
        import peft

        if s.method == "prefix_tuning" and not _takes_a_cache(model, head):
            # peft hands the prefix to the model as a key/value cache; with transformers 5 only
            # causal LMs (Llama-style, task causal_lm) still take one, encoders and their heads do not
            raise GradtuneError(
                f"strategy.method prefix_tuning: {type(model).__name__} takes no key/value cache, which peft "
                f"{peft.__version__} uses to pass the prefix (with transformers 5 a pretrained causal LM such as "
                "Llama does, under task causal_lm); use prompt_tuning (virtual tokens at the input) or lora")
        return peft.get_peft_model(model, _peft_config(model, s, head))
    in_head = lambda name: name.split(".")[0] == head and head != language_model_output(model)
    if s.method == "head":
        trains = in_head
        _train_head_only_body_eval(model, head)
    elif s.method == "bitfit":
        if not any(n.endswith("bias") and not in_head(n) for n, _ in model.named_parameters()):
            raise GradtuneError(f"strategy.method bitfit: {type(model).__name__} has no bias terms outside its head")
        trains = lambda name: in_head(name) or name.endswith("bias")
    else:  # top_k: the last k blocks and everything registered after them (pooler, final norm, head)
        prefix, blocks = transformer_blocks(model)
        if s.layers > len(blocks):
            raise GradtuneError(f"strategy.layers={s.layers}, but {type(model).__name__} has {len(blocks)} blocks "
                                f"({prefix}); choose 1 to {len(blocks)}")
        names = [n for n, _ in model.named_parameters()]
        first_trained = f"{prefix}.{len(blocks) - s.layers}."
        start = next(i for i, n in enumerate(names) if n.startswith(first_trained))
        trained = set(names[start:])
        trains = lambda name: name in trained
    for name, param in model.named_parameters():
        param.requires_grad_(trains(name))
    return model


def parameter_counts(model: nn.Module) -> dict[str, Any]:
    """Trainable and total parameters (a peft model's own count: base + adapter)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "percent": round(100 * trainable / max(total, 1), 4)}


def save_base(model: Any, folder: Path) -> None:
    """A from-scratch base model (random init, saved nowhere else) next to its adapter: a copy of
    the model with the adapter layers taken out again."""
    base = model.get_base_model()
    if model.peft_config[model.active_adapter].peft_type.value in ("LORA", "IA3"):
        base = copy.deepcopy(model).unload()
    base.save_pretrained(folder, safe_serialization=True)


def load_adapter_model(path: Path, metadata: dict[str, Any]) -> Any:
    """Rebuild a peft run: its base model (model/base/, or the pretrained model named in
    gradtune.json) plus the adapter and head saved in `path`."""
    import peft
    import transformers

    from gradtune.models.pretrained import load_model
    from gradtune.tasks import get_task

    task = get_task(metadata["task"])
    auto = task.AUTO_MODEL  # causal_lm: AutoModelForCausalLM
    if (path / "base").is_dir():
        base = getattr(transformers, auto).from_pretrained(path / "base")
    else:
        source = metadata.get("base_model_path")
        if not source or not Path(source).is_dir():  # moved to another machine: the alias / hub id
            source = metadata["base_model"]
        base = load_model(source, task.model_kwargs(metadata), auto=auto)
    return peft.PeftModel.from_pretrained(base, path)
