"""`distributed.strategy`: how the processes share the work, always one of accelerate's engines.

ddp (the default) gives every process the whole model and averages the gradients. fsdp and
deepspeed shard the weights, gradients and optimizer state across GPUs, for a model too large for
one; `distributed.options` are handed as they are to accelerate's FullyShardedDataParallelPlugin or
DeepSpeedPlugin. accelerate runs both on GPUs only, so they are refused on a machine without one.

A sharded model has no process holding all of it: its `model/` is gathered by
`accelerator.get_state_dict` (every process takes part), and its checkpoints are accelerate's own
(`save_state` / `load_state`, each process writing and reading its shard).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any

import torch
from accelerate import Accelerator, DeepSpeedPlugin, FullyShardedDataParallelPlugin
from accelerate.utils import DistributedType

from gradtune.config.checks import did_you_mean
from gradtune.errors import GradtuneError

PLUGINS = {"fsdp": ("fsdp_plugin", FullyShardedDataParallelPlugin),
           "deepspeed": ("deepspeed_plugin", DeepSpeedPlugin)}
# a sharded model's weights are gathered whole for model/ (accelerate's default keeps them in shards)
DEFAULTS: dict[str, dict[str, Any]] = {"fsdp": {"state_dict_type": "FULL_STATE_DICT"}, "deepspeed": {}}


def engine(cfg: Any) -> dict[str, Any]:
    """`Accelerator`'s keyword for the config's distributed.strategy: nothing for ddp, and nothing
    for one process (which has nobody to share with)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return {}
    check_hardware(cfg.distributed.strategy)
    return plugin(cfg.distributed.strategy, cfg.distributed.options)


def check_options(strategy: str, options: dict[str, Any]) -> None:
    """Every option is a field of the strategy's accelerate plugin (checked when the config is read)."""
    if strategy == "ddp":
        if options:
            raise ValueError(f"distributed.options {sorted(options)} are for fsdp or deepspeed; ddp takes none "
                             "(set distributed.strategy=fsdp or remove distributed.options)")
        return
    cls = PLUGINS[strategy][1]
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in options:
        if key not in fields:
            raise ValueError(f"distributed.options.{key} is not an option of accelerate's {cls.__name__}"
                             f"{did_you_mean(key, fields)}; its options: {', '.join(fields)}")


def plugin(strategy: str, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword argument of `Accelerator` that switches `strategy` on, built from `options`."""
    if strategy == "ddp":
        return {}
    keyword, cls = PLUGINS[strategy]
    return {keyword: cls(**{**DEFAULTS[strategy], **options})}


def check_hardware(strategy: str) -> None:
    """fsdp / deepspeed: accelerate shards only across GPUs (DeepSpeed also needs its package)."""
    if strategy == "ddp":
        return
    if not torch.cuda.is_available():
        raise GradtuneError(f"distributed.strategy {strategy} shards the model across GPUs, and this machine has "
                            "none (accelerate runs fsdp and deepspeed on GPUs only); on CPUs use "
                            "distributed.strategy=ddp, where every process holds the whole model")
    if strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise GradtuneError("distributed.strategy deepspeed needs the deepspeed package: pip install deepspeed")


def sharded(accelerator: Accelerator) -> bool:
    """No process holds the whole model or optimizer state: saves go through accelerate."""
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
