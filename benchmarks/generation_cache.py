"""Generation speed with and without the key/value cache: the bundled SmolLM2-135M-Instruct (or a
run: --run RUN) answers the first dev requests of examples/data/review_json, greedy, up to 48 new
tokens, with gradtune's `generate` (what `gradtune generate` runs), one prompt at a time and as one
batch of 8; the two settings alternate, `--repeat` times. With the cache, each new token computes
only its own keys and values; without it, every step re-reads the whole text. Run by hand on an
idle machine:

    python benchmarks/generation_cache.py [--run RUN] [--prompts 4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from gradtune.inference.generation import generate
from gradtune.report.machine import describe

DEV = Path(__file__).resolve().parent.parent / "examples" / "data" / "review_json" / "dev.jsonl"


def timed(model, tokenizer, prompts: list[str], cache: bool) -> tuple[int, float, list[str]]:
    """New tokens written and seconds taken (the answers counted in tokens of the tokenizer)."""
    started = time.perf_counter()
    answers = generate(model, tokenizer, prompts, chat=True, greedy=True, max_new_tokens=48, use_cache=cache)
    seconds = time.perf_counter() - started
    return sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers), seconds, answers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, help="a trained instruct run (default: the bundled base model)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rows = [json.loads(line) for line in DEV.read_text().splitlines()]
    prompts = [f"{r['instruction']}\n\n{r['input']}" for r in rows]
    if args.run:
        import gradtune

        loaded = gradtune.load(args.run)
        model, tokenizer = loaded.model, loaded.tokenizer
    else:
        from transformers import AutoModelForCausalLM

        from gradtune.models.pretrained import load_tokenizer, resolve_model

        model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"), dtype=torch.float32).eval()
        tokenizer = load_tokenizer("smollm2")
    print(f"machine: {describe()}; load before {os.getloadavg()}")
    rates: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for cache in (True, False):
            tokens = seconds = 0.0
            for prompt in prompts[: args.prompts]:  # one prompt at a time, as `gradtune generate` streams
                n, s, _ = timed(model, tokenizer, [prompt], cache)
                tokens, seconds = tokens + n, seconds + s
            rates.setdefault(f"one prompt, cache {'on' if cache else 'off'}", []).append(tokens / seconds)
            n, s, answers = timed(model, tokenizer, prompts[:8], cache)
            rates.setdefault(f"batch of 8, cache {'on' if cache else 'off'}", []).append(n / s)
            print(f"  cache {cache}: one at a time {tokens / seconds:.1f} tokens/s, batch of 8 {n / s:.1f} tokens/s",
                  flush=True)
    print(f"load after {os.getloadavg()}\n\n| generation | tokens/s (median) |\n|---|---:|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):.1f} |")
    for batch in ("one prompt", "batch of 8"):
        on, off = (statistics.median(rates[f"{batch}, cache {s}"]) for s in ("on", "off"))
        print(f"{batch}: the cache is {on / off:.1f}x faster")
    with torch.no_grad():  # greedy output is the same with and without the cache
        same = timed(model, tokenizer, prompts[:2], True)[2] == timed(model, tokenizer, prompts[:2], False)[2]
    print(f"same greedy answers with and without the cache: {same}")


if __name__ == "__main__":
    main()
