"""Fine-tuning strategies side by side: MiniLM on a fixed SST-2 subset (run by hand, never in CI).

    python benchmarks/strategies.py [--train-rows 2000] [--epochs 2] [--methods full,head,lora]
                              [--data ../shared/data/sst2]

Each method trains in its own process (so peak memory is its own) on the same seeded subset of
the training file, for the same number of epochs, and is scored on the full dev set. The
learning rate is each method's usual one (a frozen backbone or an adapter wants a larger step
than full fine-tuning); it is printed in the table. Results go into docs/peft.md."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
METHODS = ["full", "head", "top_k", "bitfit", "lora", "dora", "ia3"]
LR = {"full": 1e-4, "head": 1e-1, "top_k": 2e-4, "bitfit": 5e-3, "lora": 1e-3, "dora": 1e-3, "ia3": 1e-2}
EXTRA = {"top_k": ["strategy.layers=2"]}


def subset(src: Path, dst: Path, rows: int, seed: int = 42) -> None:
    with src.open(newline="", encoding="utf-8") as f:
        data = list(csv.DictReader(f))
    random.Random(seed).shuffle(data)
    with dst.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data[:rows])


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run_one(method: str, train: str, dev: str, epochs: float, out: str) -> dict:
    import gradtune

    started = time.perf_counter()
    run = gradtune.train(HERE / "examples" / "sst2.yaml", [
        f"data.train={train}", f"data.validation={dev}", f"train.epochs={epochs}", f"train.lr={LR[method]}",
        f"strategy.method={method}", *EXTRA.get(method, []), "train.eval_every=epoch", "train.save_every=epoch",
        "train.progress=false", f"output_dir={out}",
    ])
    meta = json.loads((run.run_dir / "model" / "gradtune.json").read_text())
    return {
        "method": method, "lr": LR[method], "dev_accuracy": run.best_metric,
        "wall_s": round(time.perf_counter() - started, 1), "train_s": round(run.train_seconds, 1),
        "samples_per_s": round(run.samples_per_second, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "saved_mb": round(folder_mb(run.run_dir / "model"), 2),
        "trainable": meta["parameters"]["trainable"], "percent": meta["parameters"]["percent"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data", default=str(HERE.parent / "shared" / "data" / "sst2"))
    parser.add_argument("--lr", default="", help="override learning rates: head=0.05,ia3=0.01")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one method, print JSON
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    LR.update({k: float(v) for k, v in (pair.split("=") for pair in args.lr.split(",") if pair)})
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.train, f"{args.data}/dev.csv", args.epochs, args.out)))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.csv"
        subset(Path(args.data) / "train.csv", train, args.train_rows)
        for method in args.methods.split(","):
            cmd = [sys.executable, __file__, "--one", method, "--train", str(train), "--data", args.data,
                   "--epochs", str(args.epochs), "--out", str(Path(tmp) / method), "--lr", args.lr]
            done = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                print(f"{method}: failed\n{done.stderr[-2000:]}")
                continue
            results.append(json.loads(line[0][len("RESULT "):]))
            print(json.dumps(results[-1]))
    print(f"\nSST-2, {args.train_rows} training rows, {args.epochs} epochs, dev 872 rows; "
          f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}\n")
    print("| method | lr | trainable (%) | dev accuracy | train s | samples/s | peak RSS MB | saved MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['method']} | {r['lr']:g} | {r['trainable']:,} ({r['percent']:.2f}%) | {r['dev_accuracy']:.4f} | "
              f"{r['train_s']} | {r['samples_per_s']} | {r['peak_rss_mb']} | {r['saved_mb']} |")


if __name__ == "__main__":
    main()
