"""The machine's matmul peak: measured once, cached per processor / threads / dtype / torch / device."""

from __future__ import annotations

import json

import pytest
import torch

from gradtune.perf import peak


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A cache of our own, and no answer kept in this process from an earlier test."""
    monkeypatch.setenv("GRADTUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(peak, "_measured", {})
    return tmp_path / peak.CACHE_FILE


def test_measures_once_then_reads_the_cache(fresh_cache, monkeypatch):
    calls = []
    monkeypatch.setattr(peak, "measure_matmul", lambda dtype, device: calls.append(dtype) or 1.5e11)
    assert peak.peak_flops() == 1.5e11
    saved = json.loads(fresh_cache.read_text())
    assert [entry["flops"] for entry in saved.values()] == [1.5e11]
    (key,) = saved
    assert f"{torch.get_num_threads()} threads" in key and "float32" in key and torch.__version__ in key

    monkeypatch.setattr(peak, "_measured", {})  # a new process: only the file remembers
    monkeypatch.setattr(peak, "measure_matmul", lambda dtype, device: pytest.fail("measured again"))
    assert peak.peak_flops() == 1.5e11
    assert calls == [torch.float32]


def test_each_dtype_and_thread_count_is_its_own_entry(fresh_cache, monkeypatch):
    rates = {torch.float32: 1e11, torch.bfloat16: 4e11}
    monkeypatch.setattr(peak, "measure_matmul", lambda dtype, device: rates[dtype] / torch.get_num_threads())
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert peak.peak_flops(torch.float32) == 1e11
        assert peak.peak_flops(torch.bfloat16) == 4e11
        torch.set_num_threads(2)
        assert peak.peak_flops(torch.float32) == 5e10
    finally:
        torch.set_num_threads(threads)
    assert len(json.loads(fresh_cache.read_text())) == 3


def test_a_damaged_cache_is_measured_again(fresh_cache, monkeypatch):
    fresh_cache.write_text("{not json")
    monkeypatch.setattr(peak, "measure_matmul", lambda dtype, device: 2e11)
    assert peak.peak_flops() == 2e11
    assert list(json.loads(fresh_cache.read_text()).values())[0]["flops"] == 2e11


def test_the_measurement_is_a_real_matmul_rate():
    """Any CPU that runs the tests does more than 0.1 GFLOP/s and far less than 1 PFLOP/s in fp32."""
    rate = peak.measure_matmul(torch.float32, "cpu", seconds=0.2)
    assert 1e8 < rate < 1e15


def test_measuring_leaves_the_training_random_state_alone(fresh_cache):
    """A run that measures the peak and one that reads it from the cache must train alike: the
    measurement draws from its own generator, not the one dropout and shuffling use."""
    torch.manual_seed(0)
    before = torch.get_rng_state()
    peak.measure_matmul(torch.float32, "cpu", seconds=0.05)
    assert torch.equal(torch.get_rng_state(), before)
