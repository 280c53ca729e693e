"""Prediction throughput of MiniLM: the torch backend vs onnxruntime (run by hand, never in CI).

    python benchmarks/onnx_predict.py [--repeat 3] [--batch-size 32]

Builds a MiniLM classifier run (the bundled encoder with a fresh 2-label head: speed does not depend
on what the head learned), exports it with `export_onnx`, and predicts the 100 bundled validation
sentences with each backend: the best of --repeat passes, after one warm-up. Prints sentences/s,
the largest probability difference and the machine's load average (a busy machine is slower).
Results are written down in docs/export.md#measured."""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from importlib import resources
from pathlib import Path

import onnxruntime
import torch

from gradtune.export.onnx import export_onnx
from gradtune.inference.predictor import Predictor
from gradtune.models.pretrained import load_model, load_tokenizer
from gradtune.rundir import write_model_dir


def best_rate(predict, texts: list[str], repeat: int) -> float:
    predict(texts[:8])  # warm-up: first-call allocations, lazy initialisation
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        predict(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    dev = resources.files("gradtune") / "resources" / "sentiment" / "dev.csv"
    with dev.open(encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    labels = ["negative", "positive"]
    head = {"num_labels": 2, "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    with tempfile.TemporaryDirectory() as out:
        run = Path(out)
        torch.manual_seed(0)
        model = load_model("minilm", head)
        write_model_dir(run / "model", model.save_pretrained, load_tokenizer("minilm"), {
            "task": "classification", "labels": labels, "base_model": "minilm", "text_column": "text",
            "text_pair_column": None, "max_length": 128, "label_column": "label"})
        started = time.perf_counter()
        exported = export_onnx(run, run / "onnx")
        export_seconds = time.perf_counter() - started
        size = (run / "onnx" / "model.onnx").stat().st_size / 1e6
        torch_model, onnx_model = Predictor(run, device="cpu"), Predictor(run, backend="onnx")
        rates = {name: best_rate(lambda t, m=m: m.predict(t, batch_size=args.batch_size), texts, args.repeat)
                 for name, m in (("torch", torch_model), ("onnxruntime", onnx_model))}
        a, b = torch_model.predict(texts), onnx_model.predict(texts)
    diff = max(abs(x["probabilities"][k] - y["probabilities"][k]) for x, y in zip(a, b) for k in labels)
    same = sum(x["label"] == y["label"] for x, y in zip(a, b))
    print(f"export {export_seconds:.1f}s, model.onnx {size:.0f} MB, check-batch logit diff {exported.max_abs_diff:.1e}")
    for name, rate in rates.items():
        print(f"{name:12s} {rate:7.1f} sentences/s  ({len(texts)} sentences, batch {args.batch_size})")
    print(f"onnxruntime / torch: {rates['onnxruntime'] / rates['torch']:.2f}x; same label {same}/{len(texts)}, "
          f"largest probability difference {diff:.1e}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
