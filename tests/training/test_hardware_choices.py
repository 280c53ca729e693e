"""What training picks for the hardware, checked without a GPU: the Adam kernel (fused on CUDA,
foreach elsewhere), pinned memory and non-blocking copies only with a GPU, the precision `auto`
resolves to; and train.compile trains to the loss the eager model reaches, or says how to turn it off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gradtune
from conftest import linear_rows, tabular_config, write_csv
from gradtune.config import as_config
from gradtune.data.batching import make_loader
from gradtune.errors import GradtuneError
from gradtune.tracking.metrics_log import read_metrics
from gradtune.training import step
from gradtune.training.optim import adam_kernel, build_optimizer


def test_adam_is_fused_on_a_gpu_and_foreach_elsewhere():
    assert adam_kernel("cuda") == {"fused": True}
    assert adam_kernel("cpu") == {"foreach": True}
    model = torch.nn.Linear(3, 2)
    for name in ("adam", "adamw"):
        optimizer = build_optimizer(model, as_config({"task": "classification", "train": {"optimizer": name}}).train)
        assert optimizer.defaults["foreach"] is True and not optimizer.defaults["fused"]
    sgd = build_optimizer(model, as_config({"task": "classification", "train": {"optimizer": "sgd"}}).train, "cuda")
    assert isinstance(sgd, torch.optim.SGD)  # other optimizers keep torch's own choice


def test_copies_are_pinned_and_non_blocking_only_with_a_gpu(monkeypatch):
    gpu, cpu = step.accelerator_options("auto", gpu=True), step.accelerator_options("auto", gpu=False)
    assert gpu["dataloader_config"].non_blocking and not gpu["cpu"]
    assert not cpu["dataloader_config"].non_blocking and cpu["cpu"]
    assert gpu["dataloader_config"].split_batches and cpu["dataloader_config"].split_batches
    import datasets

    ds = datasets.Dataset.from_dict({"features": [[1.0, 2.0]] * 4, "labels": [0.0] * 4})
    assert not make_loader(ds, None, 2, 0, shuffle=True).pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert make_loader(ds, None, 2, 0, shuffle=True).pin_memory


def test_precision_choices(monkeypatch):
    assert step.mixed_precision("auto", gpu=False) == "no"  # fp32 on a CPU (docs/training.md: why)
    assert step.mixed_precision("fp32", gpu=True) == "no"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert step.mixed_precision("auto", gpu=True) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert step.mixed_precision("auto", gpu=True) == "fp16"
    assert step.accelerator_options("fp32", compile=True, gpu=False)["dynamo_backend"] == "inductor"
    assert step.accelerator_options("fp32", gpu=False)["dynamo_backend"] == "no"


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(fast, monkeypatch, caplog):
    monkeypatch.setattr(step, "cpu_has_fast_bf16", lambda: fast)
    with caplog.at_level("WARNING", logger="gradtune"):
        assert step.mixed_precision("bf16", gpu=False) == "bf16"
    assert ("no bf16 instructions" in caplog.text) is not fast


def tabular_run(tmp_path: Path, name: str, **train) -> list[float]:
    data = write_csv(tmp_path / "train.csv", linear_rows(64, seed=0))
    cfg = tabular_config(data, tmp_path / name, train={"epochs": 2, "precision": "fp32", **train})
    gradtune.train(cfg)
    return [r["loss"] for r in read_metrics(tmp_path / name / "metrics.jsonl") if r["kind"] == "train"]


def test_compiled_model_trains_to_the_eager_loss(tmp_path: Path):
    eager = tabular_run(tmp_path, "eager")
    compiled = tabular_run(tmp_path, "compiled", compile=True)
    assert len(compiled) == len(eager) == 8
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-5)


def test_a_compile_failure_says_to_turn_it_off(tmp_path: Path, monkeypatch):
    def fails(*args, **kwargs):  # what inductor raises at the first forward when it cannot build its kernels
        raise torch._dynamo.exc.BackendCompilerFailed(lambda *a: None, RuntimeError("no C++ compiler"), None)

    monkeypatch.setattr(step, "logits_of", fails)
    with pytest.raises(GradtuneError, match=r"train\.compile.*train\.compile=false"):
        tabular_run(tmp_path, "broken", compile=True)
