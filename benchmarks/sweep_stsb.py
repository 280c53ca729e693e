"""Does a sweep's winner generalise? STS-B: keep 1,000 rows of the training file out of the search,
sweep examples/sweeps/stsb.yaml (learning rate, epochs, warm-up, loss, target scaling) with the
dev file as validation, then score the winner on the rows the search never saw.

    python benchmarks/sweep_stsb.py [--trials 12] [--rows 2000] [--output runs/sweep_stsb]

--rows bounds each trial's training rows (data.max_train_rows) so a trial takes a minute or two on
2 CPU cores; the winner is then scored as it is, and retrained on all the search rows."""

from __future__ import annotations

import argparse
import csv
import platform
import random
import time
from pathlib import Path

import torch

import gradtune
from gradtune.experiments.sweep import sweep

DATA = Path("../shared/data/stsb")


def split(output: Path, held_out: int, seed: int = 0) -> tuple[Path, Path]:
    rows = list(csv.DictReader((DATA / "train.csv").open(encoding="utf-8")))
    random.Random(seed).shuffle(rows)
    paths = output / "search_train.csv", output / "held_out.csv"
    for path, part in zip(paths, (rows[held_out:], rows[:held_out])):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(part)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=Path("runs/sweep_stsb"))
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    search_train, held_out = split(args.output, 1000)
    overrides = [f"data.train={search_train}", f"data.max_train_rows={args.rows}", "data.max_length=64",
                 "train.eval_every=epoch", "train.log_every=50"]
    started = time.perf_counter()
    result = sweep("examples/stsb.yaml", "examples/sweeps/stsb.yaml", args.trials, overrides, args.output / "sweep")
    seconds = time.perf_counter() - started
    best = result.best
    dev = best[result.metric]
    kept = gradtune.evaluate(best["run_dir"], held_out)
    recipe = gradtune.train("examples/stsb.yaml", [*overrides, f"output_dir={args.output / 'recipe'}"], overwrite=True)
    recipe_kept = gradtune.evaluate(recipe.run_dir, held_out)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"{len(result.trials)} trials in {seconds:.0f} s; best trial {best['trial']}: "
          + ", ".join(f"{k}={v}" for k, v in best.items() if k.startswith(("train.", "data."))))
    print("| config | dev pearson (searched on) | held-out train rows pearson |")
    print("|---|---:|---:|")
    print(f"| the sweep's winner | {dev:.4f} | {kept['pearson']:.4f} |")
    print(f"| examples/stsb.yaml as it is | {recipe.best_metric:.4f} | {recipe_kept['pearson']:.4f} |")


if __name__ == "__main__":
    main()
