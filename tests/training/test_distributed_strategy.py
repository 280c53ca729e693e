"""distributed.strategy: the config reaches accelerate's plugins, a machine without GPUs refuses
sharding with the reason, and the save / resume path a sharded run takes (accelerate's save_state
and get_state_dict) reproduces an uninterrupted run. This machine has no GPU, so that path is run
here by one process that is told its model is sharded; the sharding itself is accelerate's."""

from __future__ import annotations

import pytest
import torch
from accelerate import FullyShardedDataParallelPlugin

import gradtune
from conftest import at_training_step
from gradtune.config import as_config
from gradtune.errors import GradtuneError
from gradtune.rundir import RunDir
from gradtune.tasks import classification
from gradtune.tracking.metrics_log import read_metrics
from gradtune.training import bookkeeping
from gradtune.training.distributed import engine, plugin


def test_options_are_checked_against_accelerates_plugin_when_the_config_is_read(make_config):
    with pytest.raises(GradtuneError, match=r"distributed.options.fsdp_versoin is not an option of accelerate's "
                                            r"FullyShardedDataParallelPlugin.*did you mean 'fsdp_version'"):
        as_config(make_config(distributed={"strategy": "fsdp", "options": {"fsdp_versoin": 2}}))
    with pytest.raises(GradtuneError, match=r"distributed.options \['zero_stage'\] are for fsdp or deepspeed"):
        as_config(make_config(distributed={"options": {"zero_stage": 2}}))
    with pytest.raises(GradtuneError, match="distributed.strategy.*'zero'"):
        as_config(make_config(distributed={"strategy": "zero"}))


def test_the_plugin_handed_to_accelerate_carries_the_options():
    built = plugin("fsdp", {"fsdp_version": 2, "reshard_after_forward": False})["fsdp_plugin"]
    assert isinstance(built, FullyShardedDataParallelPlugin)
    assert built.fsdp_version == 2 and built.reshard_after_forward is False
    assert built.state_dict_type.name == "FULL_STATE_DICT"  # model/ gets whole weights, not shards
    assert plugin("ddp", {}) == {}


def test_sharding_is_refused_without_gpus_and_ignored_by_one_process(make_config, monkeypatch):
    cfg = as_config(make_config(distributed={"strategy": "fsdp"}))
    assert engine(cfg) == {}  # one process: nothing to shard across
    monkeypatch.setenv("WORLD_SIZE", "2")
    if not torch.cuda.is_available():
        with pytest.raises(GradtuneError, match="distributed.strategy fsdp shards the model across GPUs, and this "
                                                "machine has none.*use distributed.strategy=ddp"):
            engine(cfg)


def test_a_sharded_runs_checkpoints_resume_to_the_uninterrupted_run(make_config, tmp_path, monkeypatch):
    monkeypatch.setattr(bookkeeping, "sharded", lambda accelerator: True)
    options = dict(train__epochs=2, train__save_every=6, train__keep_checkpoints=5)
    full = gradtune.train(make_config(output_dir=str(tmp_path / "full"), **options))

    def crash(loss):
        raise RuntimeError("simulated crash")

    cfg = make_config(output_dir=str(tmp_path / "cut"), **options)
    real_loss = classification.loss_sum
    monkeypatch.setattr(classification, "loss_sum", at_training_step(15, crash))
    with pytest.raises(RuntimeError, match="simulated crash"):
        gradtune.train(cfg)
    monkeypatch.setattr(classification, "loss_sum", real_loss)
    checkpoints = RunDir(tmp_path / "cut").list_checkpoints()
    assert [p.name for p in checkpoints] == ["step-0000006", "step-0000012"]
    assert (checkpoints[-1] / "accelerate" / "model.safetensors").is_file()  # accelerate's own checkpoint

    resumed = gradtune.train(cfg, resume=True)
    assert resumed.steps == full.steps == 40
    losses = lambda run: [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert losses(resumed) == pytest.approx(losses(full), rel=1e-5)
    from safetensors.torch import load_file

    a, b = (load_file(str(r.run_dir / "model" / "model.safetensors")) for r in (full, resumed))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    monkeypatch.setattr(bookkeeping, "sharded", lambda accelerator: False)
    with pytest.raises(GradtuneError, match="holds a sharded run's checkpoint.*resume it under the same strategy"):
        gradtune.train(cfg, resume=True)
