"""The machine's peak: the best rate of a large square matmul, in FLOP/s, for the dtype training
computes in and the threads torch uses. Measured once (about a second) and cached as JSON in the
user cache folder ($GRADTUNE_CACHE, else $XDG_CACHE_HOME/gradtune, else ~/.cache/gradtune), keyed
by processor, threads, dtype, torch version and device, so later runs read it back instantly.

This is the denominator of MFU: what this machine's matmul kernels reach, not a datasheet number.
"""

from __future__ import annotations

import json
import os
import time

import torch

from gradtune.models.bundled import cache_dir
from gradtune.report.machine import processor_name

CACHE_FILE = "peak_flops.json"
_measured: dict[str, float] = {}  # this process's answers: the disk is read once per key


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return processor_name()


def peak_key(dtype: torch.dtype, device: str) -> str:
    threads = torch.get_num_threads()
    return f"{_device_name(device)}|{threads} threads|{str(dtype).removeprefix('torch.')}|torch {torch.__version__}" \
           f"|{torch.device(device).type}"


def measure_matmul(dtype: torch.dtype, device: str, seconds: float = 1.0) -> float:
    """The best FLOP/s of n x n @ n x n matmuls (2 n^3 FLOPs each) over about `seconds`."""
    dev = torch.device(device)
    n = 8192 if dev.type == "cuda" else 2048  # big enough to be compute-bound, small enough for ~0.1 s
    # a generator of its own: measuring must not move the training's random state (its dropout, its shuffle)
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, generator=gen).to(dtype)
    b = torch.randn(n, n, device=dev, generator=gen).to(dtype)

    def timed() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        torch.mm(a, b)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - start

    timed()  # warm-up: kernel selection, thread pool start, memory
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 3 or (spent < seconds and runs < 50):
        t = timed()
        best, spent, runs = min(best, t), spent + t, runs + 1
    return 2 * n**3 / best


def peak_flops(dtype: torch.dtype = torch.float32, device: str = "cpu") -> float:
    """The machine's measured matmul peak in FLOP/s for `dtype` on `device` with the current
    torch.get_num_threads(): read from the cache, else measured (about a second) and cached."""
    key = peak_key(dtype, str(device))
    if key in _measured:
        return _measured[key]
    path = cache_dir() / CACHE_FILE
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    entry = cached.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("flops"), (int, float)) and entry["flops"] > 0:
        _measured[key] = float(entry["flops"])
        return _measured[key]
    flops = measure_matmul(dtype, str(device))
    cached[key] = {"flops": flops, "measured": round(time.time(), 3)}
    try:  # written whole then renamed: another process reading it never sees half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{CACHE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home still gets the number, measured again by the next process
    _measured[key] = flops
    return flops
