"""Model FLOPs utilisation of gradtune's training loop (run by hand, never in CI):

    python benchmarks/mfu.py [--steps 40] [--llm-steps 20] [--cases minilm-full,minilm-lora,smollm2-lora]

Trains, in fp32, the bundled MiniLM in full and with LoRA (SST-2 sentences, ../shared/data/sst2,
batch 32) and the bundled SmolLM2-135M with LoRA on examples/data/review_json (instruction tuning,
batch 8), a few dozen steps each, and prints what metrics.jsonl logged: tokens/s, achieved GFLOP/s,
the machine's measured matmul peak and MFU (the first logged window, warm-up, is left out).

The FLOP count is checked on each real model against torch's own counter (FlopCounterMode over one
forward + backward of a real batch): "torch/ours" should be ~1.00.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SST2 = HERE.parent / "shared" / "data" / "sst2"
REVIEWS = HERE / "examples" / "data" / "review_json"


def config(case: str, steps: int, llm_steps: int, out: Path) -> dict:
    common = {"precision": "fp32", "progress": False, "seed": 0, "save_every": 10_000, "warmup_ratio": 0.0}
    if case.startswith("minilm"):
        method = case.split("-")[1]
        return {"task": "classification", "model": {"name": "minilm"}, "strategy": {"method": method},
                "data": {"train": str(SST2 / "train.csv"), "max_length": 128, "max_train_rows": 32 * steps},
                "train": {**common, "batch_size": 32, "lr": 1e-4 if method == "full" else 1e-3, "max_steps": steps,
                          "log_every": max(steps // 4, 1)},
                "output_dir": str(out / case), "report": False}
    return {"task": "instruct", "model": {"name": "smollm2"}, "strategy": {"method": "lora", "r": 8, "alpha": 16},
            "data": {"train": str(REVIEWS / "train.jsonl"), "max_length": 256, "max_train_rows": 8 * llm_steps},
            "train": {**common, "batch_size": 8, "lr": 1e-3, "max_steps": llm_steps,
                      "log_every": max(llm_steps // 4, 1)},
            "output_dir": str(out / case), "report": False}


def logged(run_dir: Path) -> dict:
    """tokens/s and MFU over the train records after the first (warm-up) one, and the peak."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    peak = next(r for r in records if r["kind"] == "setup")["peak_flops"]
    train = [r for r in records if r["kind"] == "train"][1:]
    tokens_per_s = sum(r["tokens_per_s"] for r in train) / len(train)
    mfu = sum(r["mfu"] for r in train) / len(train)
    return {"tokens_per_s": tokens_per_s, "achieved": mfu * peak, "peak": peak, "mfu": mfu,
            "samples_per_s": sum(r["samples_per_s"] for r in train) / len(train)}


def count_check(cfg: dict, out: Path) -> tuple[float, float]:
    """(torch's count, ours) of one forward + backward of the first real batch, per token of its padded shape."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from gradtune.config import as_config
    from gradtune.data.batching import logits_of, model_inputs
    from gradtune.perf.flops import train_flops_per_token
    from gradtune.training.prepare import prepare

    job = prepare(as_config(cfg), out / "count-check")
    batch = next(iter(job.train_loader))
    inputs = model_inputs(batch)
    b, t = inputs["input_ids"].shape
    job.model.train()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits_of(job.model(**inputs)).float().sum().backward()
    return counter.get_total_flops() / (b * t), train_flops_per_token(job.model, t, cfg["strategy"]["method"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40, help="MiniLM steps per case")
    parser.add_argument("--llm-steps", type=int, default=20, help="SmolLM2 steps")
    parser.add_argument("--cases", default="minilm-full,minilm-lora,smollm2-lora")
    args = parser.parse_args()

    import torch

    import gradtune
    from gradtune.models.bundled import cache_dir
    from gradtune.perf.peak import CACHE_FILE, peak_key
    from gradtune.report.machine import describe

    print("machine:", json.dumps(describe()))
    print(f"load average before: {os.getloadavg()}")
    # the peak is measured again now, on this (idle) machine, rather than read from a cache that an
    # earlier, perhaps busy, moment filled
    peak_file = cache_dir() / CACHE_FILE
    if peak_file.is_file():
        cached = json.loads(peak_file.read_text())
        cached.pop(peak_key(torch.float32, "cpu"), None)
        peak_file.write_text(json.dumps(cached))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            cfg = config(case, args.steps, args.llm_steps, Path(tmp))
            gradtune.train(cfg)
            result = logged(Path(cfg["output_dir"]))
            torch_count, ours = count_check(cfg, Path(tmp))
            rows.append((case, result, torch_count, ours))
            print(f"{case}: {json.dumps(result)}; FLOPs/token torch {torch_count:.4g}, ours {ours:.4g}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print()
    print("| run | tokens/s | achieved GFLOP/s | peak GFLOP/s (fp32 matmul) | MFU | FLOPs/token: torch / ours |")
    print("|---|---|---|---|---|---|")
    for case, r, torch_count, ours in rows:
        print(f"| {case} | {r['tokens_per_s']:,.0f} | {r['achieved'] / 1e9:.1f} | {r['peak'] / 1e9:.0f} | "
              f"{100 * r['mfu']:.1f}% | {torch_count / ours:.3f} |")


if __name__ == "__main__":
    main()
