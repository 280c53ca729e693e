"""Prediction speed vs transformers.pipeline, int8 ONNX, and memory as the file grows (run by hand,
never in CI; results in docs/benchmarks.md).

    python benchmarks/predict_vs_pipeline.py [--repeat 3] [--memory [--baseline-src DIR]] [--no-speed]

1. A MiniLM SST-2 classifier: trained once on the first 2,000 rows of ../shared/data/sst2/train.csv
   (1 epoch) and cached in --run (default /tmp/gradtune-bench/predict_run), exported to RUN/onnx with
   its int8 model (`export --format onnx --quantize int8`, which prints the accuracy change).
2. The 872 SST-2 dev texts, alternating, best of --repeat after a warm-up:
   `transformers.pipeline("text-classification", model=RUN/model)` with its defaults and with
   batch_size=32, gradtune's torch backend, ONNX and ONNX int8 (predict), and `gradtune.evaluate`
   (torch, ONNX): texts/s, the ratio to the pipeline, labels that differ from the pipeline's, accuracy.
3. --memory: peak RSS of `gradtune predict --input F --output O.csv` and `gradtune eval --data F` on
   1k..64k SST-2 train texts, each in a fresh process (/usr/bin/time -f %M); with --baseline-src, also
   of another gradtune (a src/ folder), e.g. the one before streaming.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"


def trained_run(run: Path) -> Path:
    """The cached run, trained (and exported with its int8 model) on first use."""
    import gradtune
    from gradtune.export import export

    if not (run / "model" / "gradtune.json").is_file():
        run.parent.mkdir(parents=True, exist_ok=True)
        train = run.parent / "sst2_train2k.csv"
        with (SST2 / "train.csv").open(encoding="utf-8") as f:
            lines = f.readlines()[:2001]
        train.write_text("".join(lines), encoding="utf-8")
        gradtune.train({"task": "classification", "model": {"name": "minilm"},
                        "data": {"train": str(train), "validation": str(SST2 / "dev.csv"), "max_length": 128},
                        "train": {"epochs": 1, "batch_size": 32, "lr": 1e-4, "progress": False, "seed": 42},
                        "report": False, "output_dir": str(run)}, overwrite=True)
    if not (run / "onnx" / "model.int8.onnx").is_file():
        result = export(run, run / "onnx", format="onnx", quantize="int8")
        check = result.quant_check
        print(f"exported; int8 on dev: same label {check.same}/{check.rows}, "
              + ", ".join(f"{m} {check.before[m]:.4f} -> {check.after[m]:.4f}" for m in check.metrics))
    return run


def timed(fn, best: dict, name: str) -> None:
    """Run `fn`, keeping its best time under `name`."""
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    best[name] = min(best.get(name, float("inf")), seconds)


def speed(run: Path, repeat: int) -> None:
    import transformers

    import gradtune

    with (SST2 / "dev.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts, gold = [r["text"] for r in rows], [int(r["label"]) for r in rows]
    transformers.logging.set_verbosity_error()
    pipe = transformers.pipeline("text-classification", model=str(run / "model"), device=-1)
    torch_model = gradtune.load(run)
    onnx_model, int8_model = gradtune.load(run, backend="onnx"), gradtune.load(run, backend="onnx", quantize="int8")
    index = {name: i for i, name in enumerate(torch_model.labels)}
    label2id = pipe.model.config.label2id

    def pipeline_ids(batch_size: int | None) -> list[int]:
        out = pipe(texts) if batch_size is None else pipe(texts, batch_size=batch_size)
        return [label2id[o["label"]] for o in out]

    contenders = {
        "pipeline (defaults)": lambda: pipeline_ids(None),
        "pipeline batch_size=32": lambda: pipeline_ids(32),
        "gradtune torch": lambda: [index[r["label"]] for r in torch_model.predict(texts)],
        "gradtune onnx": lambda: [index[r["label"]] for r in onnx_model.predict(texts)],
        "gradtune onnx int8": lambda: [index[r["label"]] for r in int8_model.predict(texts)],
        "gradtune eval torch": lambda: gradtune.evaluate(run, SST2 / "dev.csv"),
        "gradtune eval onnx": lambda: gradtune.evaluate(run, SST2 / "dev.csv", backend="onnx"),
    }
    results = {}
    for name, fn in contenders.items():  # warm-up, and the labels each gives
        results[name] = fn()
    best: dict[str, float] = {}
    for _ in range(repeat):  # alternating: a slower moment of the machine hits every contender alike
        for name, fn in contenders.items():
            timed(fn, best, name)
    base, reference = best["pipeline (defaults)"], results["pipeline (defaults)"]
    print(f"{'':24s} {'texts/s':>8s} {'x pipeline':>10s} {'x batch 32':>10s} {'labels != pipeline':>18s} "
          f"{'accuracy':>8s}")
    for name, seconds in best.items():
        labels = results[name]
        if isinstance(labels, dict):  # evaluate: its metrics
            differ, accuracy = "-", labels["accuracy"]
        else:
            differ = str(sum(a != b for a, b in zip(labels, reference)))
            accuracy = sum(a == g for a, g in zip(labels, gold)) / len(gold)
        print(f"{name:24s} {len(texts) / seconds:8.1f} {base / seconds:10.2f} "
              f"{best['pipeline batch_size=32'] / seconds:10.2f} {differ:>18s} {accuracy:8.4f}")
    fp32, int8 = results["gradtune onnx"], results["gradtune onnx int8"]
    print(f"int8 vs float32 ONNX: same label {sum(a == b for a, b in zip(fp32, int8))}/{len(texts)}; model.onnx "
          f"{(run / 'onnx' / 'model.onnx').stat().st_size / 1e6:.0f} MB, model.int8.onnx "
          f"{(run / 'onnx' / 'model.int8.onnx').stat().st_size / 1e6:.0f} MB")


def peak_rss_mb(command: list[str], source: Path | None = None) -> float:
    """The peak RSS of a fresh process running `python -m gradtune COMMAND` (gradtune from `source`,
    a checkout's src/ folder, if given)."""
    env = {**os.environ, "PYTHONPATH": str(source)} if source else None
    done = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", sys.executable, "-m", "gradtune", *command],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    line = [x for x in done.stderr.splitlines() if x.startswith("MAXRSS ")][-1]
    return int(line.split()[1]) / 1024


def memory(run: Path, sizes: list[int], folder: Path, baseline: Path | None) -> None:
    """Peak RSS of predict and eval on growing files; with `baseline`, also of that gradtune's."""
    with (SST2 / "train.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    versions = {"": None, **({" (baseline)": baseline} if baseline else {})}
    print(f"{'texts':>7s} {'file MB':>8s} {'command':22s} {'peak RSS MB':>11s} {'seconds':>8s}")
    for n in sizes:
        data = folder / f"sst2_{n}.csv"
        with data.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(rows[i % len(rows)] for i in range(n))
        for suffix, source in versions.items():
            for name, command in (("predict", ["predict", str(run), "--input", str(data), "--output",
                                               str(folder / f"pred_{n}.csv")]),
                                  ("eval", ["eval", str(run), "--data", str(data)])):
                started = time.perf_counter()
                peak = peak_rss_mb(command, source)
                print(f"{n:7d} {data.stat().st_size / 1e6:8.2f} {name + suffix:22s} {peak:11.0f} "
                      f"{time.perf_counter() - started:8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=Path("/tmp/gradtune-bench/predict_run"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS as the file grows")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed comparison")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 64000])
    parser.add_argument("--baseline-src", type=Path, help="memory: also run this src/ folder's gradtune (e.g. the "
                        "last commit's: git archive HEAD src | tar -x -C /tmp/old)")
    args = parser.parse_args()

    from gradtune.report.machine import describe

    print(json.dumps(describe()))
    print(f"load average before: {os.getloadavg()}")
    run = trained_run(args.run)
    if not args.no_speed:
        speed(run, args.repeat)
    if args.memory:
        memory(run, args.sizes, args.run.parent, args.baseline_src)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
