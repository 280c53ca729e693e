"""Load on `gradtune serve`: requests/s and p50/p95 latency at 1, 8 and 32 concurrent clients, with
batching on (--max-batch 32) and off (--max-batch 1). Run by hand, never in CI:

    python benchmarks/serve_load.py [--run RUN] [--seconds 15]

Without --run it first trains a small real model: MiniLM, head only, one epoch on 2,000 SST-2
sentences from ../shared/data/sst2 (about a minute). Each client sends one dev sentence per request
(POST /predict {"texts": [...]}) and the next as soon as the answer arrives, for --seconds per
level after a warm-up. Server and clients share the machine (loopback), as on a laptop. Prints a
Markdown table (the numbers in docs/serving.md) with the load average before and after: a busy
machine is slower, so run it on an idle one."""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
SST2 = HERE.parent.parent / "shared" / "data" / "sst2"


def train_run(folder: Path) -> Path:
    import gradtune

    if (folder / "model").is_dir():
        return folder
    cfg = {"task": "classification", "model": {"name": "minilm"}, "strategy": {"method": "head"},
           "data": {"train": str(SST2 / "train.csv"), "validation": str(SST2 / "dev.csv"), "max_length": 64,
                    "max_train_rows": 2000, "max_validation_rows": 500},
           "train": {"epochs": 1, "batch_size": 32, "lr": 1e-3, "progress": False, "seed": 0},
           "output_dir": str(folder)}
    return gradtune.train(cfg).run_dir


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(run: Path, max_batch: int, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gradtune", "serve", str(run), "--port", str(port),
                                "--max-batch", str(max_batch), "--log-level", "warning",
                                *(["--threads", str(threads)] if threads else [])],
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")


async def load(url: str, texts: list[str], clients: int, seconds: float) -> tuple[int, list[float], float]:
    """`clients` clients sending requests back to back for `seconds`: (requests, latencies, elapsed)."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one(i: int) -> None:
            k = i
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                r = await client.post("/predict", json={"texts": [texts[k % len(texts)]]})
                r.raise_for_status()
                latencies.append(time.perf_counter() - started)
                k += clients

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
    return len(latencies), latencies, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, help="a classification run (default: train one on SST-2)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, help="the server's --threads (default: torch's)")
    args = parser.parse_args()
    run = args.run or train_run(HERE / "runs" / "serve-sst2")
    with (SST2 / "dev.csv").open(encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load before: {os.getloadavg()}", flush=True)
    rows = []
    for mode, max_batch in (("on (max 32)", 32), ("off (max 1)", 1)):
        process, url = start(run, max_batch, args.threads)
        try:
            asyncio.run(load(url, texts, 8, 2.0))  # warm-up
            for clients in args.levels:
                before = httpx.get(f"{url}/metadata").json()["served"]
                n, latencies, elapsed = asyncio.run(load(url, texts, clients, args.seconds))
                after = httpx.get(f"{url}/metadata").json()["served"]
                per_call = (after["inputs"] - before["inputs"]) / (after["model_calls"] - before["model_calls"])
                p50, p95 = (1000 * percentile(latencies, q) for q in (50, 95))
                rows.append(f"| {mode} | {clients} | {n / elapsed:.1f} | {p50:.1f} | {p95:.1f} | {per_call:.1f} |")
                print(rows[-1], flush=True)
        finally:
            process.terminate()
            process.wait()
    print(f"load after: {os.getloadavg()}")
    print("\n| batching | clients | requests/s | p50 ms | p95 ms | inputs per model call |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
