"""Training throughput of MiniLM on SST-2 (run by hand, never in CI).

    python benchmarks/throughput.py [--steps 150] [--data ../shared/data/sst2]

Trains `examples/sst2.yaml` for a fixed number of steps with evaluation and checkpoints off, and
prints samples/s, the machine's load average (a busy machine gives a lower number) and the setup.
Results are written down in docs/training.md#measured."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import gradtune

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--data", default=str(HERE.parent / "shared" / "data" / "sst2"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        run = gradtune.train(HERE / "examples" / "sst2.yaml", [
            f"data.train={args.data}/train.csv", "data.validation=null", f"train.max_steps={args.steps}",
            "train.save_every=100000", "train.progress=false", f"output_dir={out}",
        ])
        wall = time.perf_counter() - started
    print(f"steps {run.steps}  samples/s {run.samples_per_second:.1f}  training {run.train_seconds:.0f}s  "
          f"wall {wall:.0f}s (with loading and tokenizing)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
