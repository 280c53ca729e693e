"""Before and after instruction tuning: the bundled SmolLM2-135M-Instruct, and a run of
examples/instruct_smollm2.yaml, answer every dev review of examples/data/review_json; how many
answers are the exact JSON record, valid JSON at all, and right field by field. Also times
generation with and without the key/value cache. Run by hand, after the training run:

    python benchmarks/instruct_json.py runs/instruct_smollm2 [--limit 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

import gradtune
from gradtune.inference.generation import generate
from gradtune.models.pretrained import load_tokenizer, resolve_model

DEV = Path(__file__).resolve().parent.parent / "examples" / "data" / "review_json" / "dev.jsonl"


def score(answers: list[str], truth: list[dict]) -> dict[str, float]:
    exact = valid = 0
    fields = {"product": 0, "sentiment": 0, "rating": 0}
    for answer, record in zip(answers, truth):
        try:
            parsed = json.loads(answer.strip())
        except ValueError:
            continue
        valid += 1
        exact += parsed == record
        for key in fields:
            fields[key] += isinstance(parsed, dict) and parsed.get(key) == record[key]
    n = len(truth)
    return {"exact": exact / n, "valid_json": valid / n, **{k: v / n for k, v in fields.items()}}


def answer_all(model, tokenizer, prompts: list[str], batch: int) -> tuple[list[str], float, int]:
    started, out = time.perf_counter(), []
    for i in range(0, len(prompts), batch):
        out += generate(model, tokenizer, prompts[i : i + batch], chat=True, greedy=True, max_new_tokens=48)
    tokens = sum(len(tokenizer(a)["input_ids"]) for a in out)
    return out, time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    rows = [json.loads(line) for line in DEV.read_text().splitlines()][: args.limit]
    prompts = [f"{r['instruction']}\n\n{r['input']}" for r in rows]
    truth = [json.loads(r["output"]) for r in rows]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"), dtype=torch.float32).eval()
    base_tokenizer = load_tokenizer("smollm2")
    tuned = gradtune.load(args.run)
    results = {}
    for name, model, tokenizer in (("base", base, base_tokenizer), ("tuned", tuned.model, tuned.tokenizer)):
        answers, seconds, tokens = answer_all(model, tokenizer, prompts, args.batch)
        results[name] = answers
        print(f"{name:6s} {score(answers, truth)}  ({seconds:.1f}s, {tokens / seconds:.1f} generated tokens/s)")
    for i in range(3):
        print(f"\nreview: {rows[i]['input']}\n  base:  {results['base'][i].strip()[:200]!r}\n"
              f"  tuned: {results['tuned'][i].strip()!r}")
    # the key/value cache: each new token computes only its own keys and values
    for cache in (True, False):
        started = time.perf_counter()
        text = generate(tuned.model, tuned.tokenizer, prompts[0], chat=True, greedy=True, max_new_tokens=48,
                        use_cache=cache)
        seconds = time.perf_counter() - started
        print(f"one answer, use_cache={cache}: {len(tuned.tokenizer(text)['input_ids']) / seconds:.1f} tokens/s")


if __name__ == "__main__":
    main()
