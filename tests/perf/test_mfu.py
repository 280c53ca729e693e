"""tokens/s and MFU: counted from the step's batches, logged in metrics.jsonl's train records."""

from __future__ import annotations

import json

import pytest
import torch

import gradtune
from gradtune.perf.flops import FlopCount, Matmul
from gradtune.perf.mfu import MfuMeter, batch_tokens


def test_tokens_are_the_mask_the_packed_rows_or_the_examples():
    masked = {"input_ids": torch.ones(2, 5, dtype=torch.long), "labels": torch.tensor([0, 1]),
              "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}
    assert batch_tokens(masked) == (8, 2)
    packed = {"input_ids": torch.ones(3, 4, dtype=torch.long), "labels": torch.ones(3, 4, dtype=torch.long)}
    assert batch_tokens(packed) == (12, 3)
    assert batch_tokens({"features": torch.ones(4, 7), "labels": torch.zeros(4)}) == (4, 4)


def test_meter_divides_the_steps_flops_by_their_time_and_the_peak():
    count = FlopCount([Matmul("w", 100, trains=True, grad_in=True)])  # 600 FLOPs per token
    meter = MfuMeter(count, peak=1e6)
    batch = {"labels": torch.tensor([0, 1]), "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1]])}
    meter.add([batch, batch], seconds=0.5)
    meter.add([batch], seconds=0.5)
    assert meter.take() == pytest.approx({"tokens_per_s": 15.0, "mfu": 15 * 600 / 1e6})
    meter.add([batch], seconds=1.0)  # take() started a new window
    assert meter.take()["tokens_per_s"] == pytest.approx(5.0)


def test_processes_add_up():
    meter = MfuMeter(FlopCount([Matmul("w", 100, trains=True, grad_in=True)]), peak=2e6)  # 2 processes
    meter.add([{"labels": torch.tensor([0]), "attention_mask": torch.ones(1, 10)}], seconds=1.0)
    speed = meter.take(lambda values: [2 * v for v in values])  # the other process did the same
    assert speed == pytest.approx({"tokens_per_s": 20.0, "mfu": 20 * 600 / 2e6})


def test_output_layer_counted_where_targets_are_scored():
    count = FlopCount([Matmul("body", 100, True, True), Matmul("lm_head", 1000, False, True, output=True)])
    meter = MfuMeter(count, peak=1.0, targets_only=True)
    labels = torch.tensor([[1, 2, -100, -100], [1, 2, 3, 4]])  # 1 + 3 positions predict a target
    meter.add([{"labels": labels, "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])}], seconds=1.0)
    assert meter.take()["mfu"] == pytest.approx(7 * 600 + 4 * 4000)


def test_train_records_carry_tokens_per_s_and_mfu(make_config):
    cfg = make_config(train__epochs=1)
    gradtune.train(cfg)
    records = [json.loads(line) for line in open(f"{cfg['output_dir']}/metrics.jsonl")]
    setup = next(r for r in records if r["kind"] == "setup")
    assert setup["peak_flops"] > 1e8
    train = [r for r in records if r["kind"] == "train"]
    assert train
    for record in train:
        assert 0 < record["mfu"] < 1
        # a sentence is several tokens ([CLS] words [SEP]): more tokens than examples per second
        assert record["tokens_per_s"] > record["samples_per_s"]
