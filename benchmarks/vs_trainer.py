"""gradtune training vs the Hugging Face Trainer, where the time outside the loop goes, and how an
epoch's time grows with the data (run by hand, never in CI; results in docs/benchmarks.md).

    python benchmarks/vs_trainer.py                 # gradtune vs Trainer (defaults, group_by_length), x2
    python benchmarks/vs_trainer.py --overhead      # one gradtune run timed piece by piece, cache cold then warm
    python benchmarks/vs_trainer.py --scaling       # seconds per epoch for 1k, 2k, 4k, 8k examples

Every run is a fresh process, started under the shared CPU lock (/tmp/gradtune-cpu.lock, released
between runs). The setting is issue 14's: a seeded sample of 8,000 SST-2 training sentences
(gradtune's data.max_train_rows sample; the Trainer gets the very same rows), MiniLM, batch 32,
1 epoch, AdamW lr 5e-5, weight decay 0.01, linear schedule with 15 warmup steps (gradtune's 6 %),
gradient clipping at 1.0, max_length 128, dynamic padding, seed 42, accuracy on the 872-row dev
file. gradtune writes no report here (the Trainer writes none); --overhead counts it.

"loop" is the training loop's wall time, data loading included, evaluation and saving excluded:
gradtune's `fit` minus its evaluation, model save and checkpoint; the Trainer's `train_runtime`.
"process" is the whole command's wall time, interpreter start to exit.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "sst2"
LOCK = "/tmp/gradtune-cpu.lock"
ROWS, SEED, LR, BATCH, WARMUP = 8000, 42, 5e-5, 32, 15


def gradtune_args(output: str, rows: int = ROWS, validation: bool = True, report: bool = False) -> list[str]:
    return ["train", str(REPO / "examples" / "sst2.yaml"), f"data.train={DATA / 'train.csv'}",
            f"data.validation={DATA / 'dev.csv'}" if validation else "data.validation=null",
            f"data.max_train_rows={rows}", f"train.lr={LR}", f"train.batch_size={BATCH}",
            "train.max_grad_norm=1.0", "train.weight_decay=0.01", f"train.seed={SEED}", "train.progress=false",
            f"report={str(report).lower()}", f"output_dir={output}", "--overwrite"]


# --- children: one run each, in a fresh process; the last line of stdout is a JSON result
def child_gradtune(argv: list[str]) -> None:
    """`gradtune train`, with timers around each piece of the work outside the loop."""
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(owner: object, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - t
        setattr(owner, attr, wrapper)

    from gradtune.commands import main
    timings["import_cli"] = time.perf_counter() - started
    import gradtune.api as api
    import gradtune.models as models
    import gradtune.training.bookkeeping as books
    import gradtune.training.loop as loop
    import gradtune.training.prepare as prepare
    from gradtune.tasks.base import Task
    timings["import_training"] = time.perf_counter() - started - timings["import_cli"]
    for owner, attr, name in [(models, "pretrained_tokenizer", "tokenizer_load"), (prepare, "read_data", "read_data"),
                              (Task, "encode", "tokenize"), (models, "build", "model_load"),
                              (prepare, "prepare", "prepare"), (api, "_report", "report"),
                              (Task, "evaluate", "evaluate"), (books.Bookkeeper, "save_model", "save_model"),
                              (books.Bookkeeper, "checkpoint", "checkpoint"), (loop, "fit", "fit")]:
        timed(owner, attr, name)
    result: dict = {}

    def done() -> None:
        timings["python"] = time.perf_counter() - started
        output = Path(next(a for a in argv if a.startswith("output_dir=")).split("=", 1)[1])
        records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in records if r["kind"] == "train"]
        evals = [r for r in records if r["kind"] == "eval"]
        ends = [r for r in records if r["kind"] == "end"]
        result.update({k: round(v, 3) for k, v in timings.items()})
        result["train_seconds"] = ends[-1]["elapsed"]
        result["accuracy"] = evals[-1]["accuracy"] if evals else None
        result["samples"] = train[-1]["step"] * BATCH if train else None
        result["loop"] = round(timings["fit"] - timings.get("evaluate", 0) - timings.get("save_model", 0)
                               - timings.get("checkpoint", 0), 3)
        print("RESULT " + json.dumps(result), flush=True)
    atexit.register(done)
    sys.argv = ["gradtune", *argv]
    main()


def child_trainer(grouped: bool, output: str) -> None:
    """The Trainer on the same rows, with the same tokenizer, model and hyper-parameters."""
    import random

    import numpy as np
    import torch
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from gradtune.models.pretrained import resolve_model

    folder = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    files = {"train": str(DATA / "train.csv"), "dev": str(DATA / "dev.csv")}
    raw = load_dataset("csv", data_files=files)
    # gradtune's data.max_train_rows sample: seeded, in file order
    rows = sorted(random.Random(SEED).sample(range(len(raw["train"])), ROWS))
    train = raw["train"].select(rows)

    def tokenize(batch):
        enc = tokenizer([str(t) for t in batch["text"]], truncation=True, max_length=128)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    train = train.map(tokenize, batched=True, remove_columns=["text"]).rename_column("label", "labels")
    dev = raw["dev"].map(tokenize, batched=True, remove_columns=["text"]).rename_column("label", "labels")
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, dtype=torch.float32)
    args = TrainingArguments(
        output_dir=output, per_device_train_batch_size=BATCH, per_device_eval_batch_size=2 * BATCH, learning_rate=LR,
        num_train_epochs=1, weight_decay=0.01, warmup_steps=WARMUP, lr_scheduler_type="linear", max_grad_norm=1.0,
        seed=SEED, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
        logging_steps=50, train_sampling_strategy="group_by_length" if grouped else "random")

    def accuracy(prediction) -> dict:
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy)
    out = trainer.train()
    scores = trainer.evaluate()
    trainer.save_model(output)
    print("RESULT " + json.dumps({"loop": round(out.metrics["train_runtime"], 3), "samples": ROWS,
                                  "accuracy": round(scores["eval_accuracy"], 6)}), flush=True)


# --- the parent: runs the children one at a time under the lock
def run(command: list[str], env: dict | None = None) -> dict:
    """A child under the CPU lock; its result with the whole process's wall time."""
    waited = time.perf_counter()
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    import fcntl
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, **(env or {})})
        wall = time.perf_counter() - started
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][7:])
    result.update(process=round(wall, 2), load_before=round(load, 2), waited_for_lock=round(started - waited, 1))
    return result


def gradtune_run(rows: int = ROWS, validation: bool = True, report: bool = False, cache: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as fresh_cache:
        args = gradtune_args(out, rows, validation, report)
        return run([__file__, "--child-gradtune", *args], {"GRADTUNE_CACHE": cache or fresh_cache})


def trainer_run(grouped: bool) -> dict:
    with tempfile.TemporaryDirectory() as out:
        return run([__file__, "--child-trainer", *(["--grouped"] if grouped else []), out])


def compare(rounds: int) -> None:
    results: dict[str, list[dict]] = {"gradtune": [], "trainer": [], "trainer_grouped": []}
    for r in range(rounds):  # alternating, so a change in the machine's state hits all three alike
        for name, go in (("gradtune", gradtune_run), ("trainer", lambda: trainer_run(False)),
                         ("trainer_grouped", lambda: trainer_run(True))):
            result = go()
            results[name].append(result)
            print(f"round {r + 1} {name:16s} loop {result['loop']:7.1f}s  {result['samples'] / result['loop']:6.1f} "
                  f"samples/s  process {result['process']:6.1f}s  dev accuracy {result['accuracy']:.4f}  "
                  f"(load {result['load_before']})", flush=True)
    best = {name: min(rs, key=lambda x: x["loop"]) for name, rs in results.items()}
    for peer in ("trainer", "trainer_grouped"):
        print(f"gradtune vs {peer}: loop {best[peer]['loop'] / best['gradtune']['loop']:.2f}x faster, whole process "
              f"{best[peer]['process'] / best['gradtune']['process']:.2f}x faster (best of {rounds} each)")
    print(json.dumps(results))


def overhead() -> None:
    """One gradtune run (with its report, as `gradtune train` does by default), tokenization cache cold,
    then the same run again with the cache warm."""
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold cache", "warm cache"):
            result = gradtune_run(report=True, cache=cache)
            outside = result["process"] - result["train_seconds"]
            print(f"{label}: {json.dumps(result)}")
            share = 100 * outside / result["train_seconds"]
            print(f"  outside the loop's train_seconds: {outside:.1f}s = {share:.1f} %;"
                  f" without the report {outside - result.get('report', 0):.1f}s = "
                  f"{100 * (outside - result.get('report', 0)) / result['train_seconds']:.1f} %", flush=True)


def scaling() -> None:
    base = None
    for rows in (1000, 2000, 4000, 8000):
        result = gradtune_run(rows, validation=False)
        per_1k = result["loop"] / rows * 1000
        base = base or per_1k
        print(f"{rows:5d} examples: loop {result['loop']:6.1f}s  train_seconds {result['train_seconds']:6.1f}s  "
              f"{per_1k:5.2f}s per 1k examples ({per_1k / base:.2f}x the 1k run's)  (load {result['load_before']})",
              flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-gradtune":
        return child_gradtune(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "--child-trainer":
        grouped = "--grouped" in sys.argv
        return child_trainer(grouped, sys.argv[-1])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overhead", action="store_true", help="time the work outside gradtune's loop")
    parser.add_argument("--scaling", action="store_true", help="seconds per epoch for 1k..8k examples")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the comparison (default 2)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from gradtune.report.machine import describe

    print(f"machine: {json.dumps(describe())}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    if args.overhead:
        overhead()
    elif args.scaling:
        scaling()
    else:
        compare(args.rounds)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
