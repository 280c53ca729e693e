"""Precision and torch.compile on a CPU, measured with gradtune's own loop (each run a fresh process,
the variants alternating):

- precision: MiniLM fine-tuned on a seeded sample of SST-2 (1 epoch), fp32 vs bf16 autocast: training
  samples/s and dev accuracy (all 872 dev sentences); SmolLM2 LoRA instruction tuning (the review
  conversations of examples/data/review_json), fp32 vs bf16: tokens/s and the loss step by step;
- train.compile: steps/s once compiled (median step time after the first `--warm` steps) and the
  time the first steps cost beyond that (compiling), for MiniLM full fine-tuning and SmolLM2 LoRA.

Needs ../shared/data/sst2 (or --sst2 DIR) and the bundled models. Run by hand on an idle machine:

    python benchmarks/precision_compile.py [--rows 3000] [--repeat 2] [--only precision|compile]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REVIEWS = ROOT / "examples" / "data" / "review_json" / "train.jsonl"


def sst2_config(sst2: Path, out: Path, rows: int, precision: str, compile: bool) -> dict:
    return {"task": "classification", "model": {"name": "minilm"},
            "data": {"train": str(sst2 / "train.csv"), "validation": str(sst2 / "dev.csv"), "max_length": 64,
                     "max_train_rows": rows},
            "train": {"epochs": 1, "batch_size": 32, "lr": 1e-4, "log_every": 1, "progress": False, "seed": 42,
                      "precision": precision, "compile": compile},
            "output_dir": str(out)}


def lora_config(out: Path, rows: int, precision: str, compile: bool) -> dict:
    return {"task": "instruct", "model": {"name": "smollm2"},
            "strategy": {"method": "lora", "r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj",
                                                                                   "o_proj"]},
            "data": {"train": str(out.parent / "reviews.jsonl"), "max_length": 256, "max_train_rows": rows},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "warmup_ratio": 0.0, "log_every": 1,
                      "progress": False, "seed": 0, "precision": precision, "compile": compile},
            "output_dir": str(out)}


def one(cfg: dict) -> dict:
    """Train in this process; what the run's metrics.jsonl says."""
    import gradtune
    from gradtune.tracking.metrics_log import read_metrics

    result = gradtune.train(cfg, overwrite=True)
    records = read_metrics(Path(cfg["output_dir"]) / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    elapsed = [r["elapsed"] for r in train]
    evals = [r for r in records if r["kind"] == "eval"]
    return {"seconds": result.train_seconds, "step_seconds": [b - a for a, b in zip([0.0, *elapsed], elapsed)],
            "losses": [r["loss"] for r in train],
            "accuracy": evals[-1].get("accuracy") if evals else None}


def run(cfg: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{cfg['output_dir']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def precision(args: argparse.Namespace, folder: Path) -> None:
    print(f"\nMiniLM, SST-2: {args.rows} training sentences (seeded sample), 872 dev, 1 epoch, batch 32")
    runs: dict[str, list[dict]] = {"fp32": [], "bf16": []}
    for _ in range(args.repeat):
        for p in runs:
            r = run(sst2_config(args.sst2, folder / f"sst2-{p}", args.rows, p, False))
            runs[p].append(r)
            print(f"  {p}: {args.rows / r['seconds']:.1f} samples/s, dev accuracy {r['accuracy']:.4f}", flush=True)
    print("| precision | samples/s (median) | dev accuracy |\n|---|---:|---:|")
    for p, rs in runs.items():
        accuracies = ", ".join(f"{r['accuracy']:.4f}" for r in rs)
        print(f"| {p} | {args.rows / statistics.median(r['seconds'] for r in rs):.1f} | {accuracies} |")

    print(f"\nSmolLM2 LoRA (r 8, q/k/v/o), {args.lora_rows} review conversations, 1 epoch, batch 8")
    lora = {p: run(lora_config(folder / f"lora-{p}", args.lora_rows, p, False)) for p in ("fp32", "bf16")}
    for p, r in lora.items():
        print(f"  {p}: loop {r['seconds']:.1f}s; losses {' '.join(f'{x:.3f}' for x in r['losses'])}")
    diffs = [abs(a - b) for a, b in zip(lora["fp32"]["losses"], lora["bf16"]["losses"])]
    print(f"  bf16 vs fp32: loop {lora['fp32']['seconds'] / lora['bf16']['seconds']:.2f}x faster; loss differs by "
          f"{statistics.mean(diffs):.4f} on average, {max(diffs):.4f} at most; last step "
          f"{lora['fp32']['losses'][-1]:.4f} vs {lora['bf16']['losses'][-1]:.4f}")


def compiled(args: argparse.Namespace, folder: Path) -> None:
    print(f"\ntrain.compile (fp32), median step after the first {args.warm} steps; compile = the extra time of "
          "the first steps")
    print("| model | eager steps/s | compiled steps/s | compile time (s) | final loss eager / compiled |")
    print("|---|---:|---:|---:|---:|")
    cases = {"MiniLM full fine-tuning, SST-2, batch 32":
             lambda c, name: sst2_config(args.sst2, folder / name, args.compile_rows, "fp32", c),
             "SmolLM2 LoRA, batch 8":
             lambda c, name: lora_config(folder / name, args.lora_rows, "fp32", c)}
    for label, make in cases.items():
        eager, comp = run(make(False, "eager")), run(make(True, "compiled"))
        steady = {k: statistics.median(r["step_seconds"][args.warm:]) for k, r in (("e", eager), ("c", comp))}
        first_extra = sum(comp["step_seconds"][: args.warm]) - args.warm * steady["c"]
        print(f"| {label} | {1 / steady['e']:.2f} | {1 / steady['c']:.2f} | {first_extra:.0f} | "
              f"{eager['losses'][-1]:.4f} / {comp['losses'][-1]:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--lora-rows", type=int, default=160)
    parser.add_argument("--compile-rows", type=int, default=1600)
    parser.add_argument("--warm", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--sst2", type=Path, default=ROOT.parent / "shared" / "data" / "sst2")
    parser.add_argument("--only", choices=["precision", "compile"])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return print(json.dumps(one(json.loads(args.one))))
    from gradtune.report.machine import describe

    print(f"machine: {describe()}; load before {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        records = [json.loads(line) for line in REVIEWS.read_text().splitlines()]
        (folder / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        if args.only in (None, "precision"):
            precision(args, folder)
        if args.only in (None, "compile"):
            compiled(args, folder)
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
