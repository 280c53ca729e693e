"""peft adapters around the model: lora, dora, ia3, prompt_tuning, prefix_tuning. The base model
stays frozen; the adapter and the task head (a peft `modules_to_save` module, so the adapter folder
carries it) train. A causal LM has no task head: its output layer stays frozen.

model/ then holds only the adapter and head; the base model is named in gradtune.json and read again
from there (a from-scratch base, which exists nowhere else, is saved in model/base/).
`load_adapter_model` rebuilds it.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from gradtune.errors import GradtuneError
from gradtune.training.strategies.heads import language_model_output, trained_output

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

    kind = peft.TaskType.QUESTION_ANS if type(model).__name__.endswith("ForQuestionAnswering") else \
        peft.TaskType.SEQ_CLS
    common = {"task_type": kind, "modules_to_save": [head]}
    if language_model_output(model) == head:  # a language model: adapters only, the output layer stays frozen
        kind = peft.TaskType.SEQ_2_SEQ_LM if model.config.is_encoder_decoder else peft.TaskType.CAUSAL_LM
        common = {"task_type": kind}
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


def wrap(model: nn.Module, s: Any) -> nn.Module:
    """The model inside a peft adapter of strategy.method."""
    import peft

    head = trained_output(model)
    if s.method == "prefix_tuning" and not _takes_a_cache(model, head):
        # peft hands the prefix to the model as a key/value cache; with transformers 5 only
        # causal LMs (Llama-style, task causal_lm) still take one, encoders and their heads do not
        raise GradtuneError(
            f"strategy.method prefix_tuning: {type(model).__name__} takes no key/value cache, which peft "
            f"{peft.__version__} uses to pass the prefix (with transformers 5 a pretrained causal LM such as "
            "Llama does, under task causal_lm); use prompt_tuning (virtual tokens at the input) or lora")
    return peft.get_peft_model(model, _peft_config(model, s, head))


def save_model(model: Any, folder: Path, metadata: dict[str, Any], weights: dict | None = None) -> None:
    """A trained model's weights (safetensors): a peft model saves only its adapter and head, and a
    from-scratch base (random init, saved nowhere else) next to them in base/. `weights`: the state
    dict gathered from a sharded model (None: the model's own)."""
    model.save_pretrained(folder, safe_serialization=True, **({"state_dict": weights} if weights is not None else {}))
    if hasattr(model, "peft_config") and not metadata.get("base_model_path"):
        save_base(model, folder / "base")


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

    from gradtune.models import register
    from gradtune.models.pretrained import load_model
    from gradtune.tasks import get_task

    register()
    task = get_task(metadata["task"])
    auto = task.auto_model  # causal_lm: AutoModelForCausalLM
    if (path / "base").is_dir():
        base = getattr(transformers, auto).from_pretrained(path / "base")
    else:
        source = metadata.get("base_model_path")
        if not source or not Path(source).is_dir():  # moved to another machine: the alias / hub id
            source = metadata["base_model"]
        base = load_model(source, task.model_kwargs(metadata), auto=auto)
    return peft.PeftModel.from_pretrained(base, path)
