"""English -> Chinese translation learned as instructions: the base SmolLM2-135M-Instruct and a run of
examples/instruct_translate_smollm2.yaml translate the first N sentences of the Tatoeba dev file
(../shared/data); BLEU and chrF by sacrebleu (its `zh` tokenizer for BLEU), on the 0-100 scale.
Run by hand, after the training run:

    python benchmarks/translate_instruct.py runs/instruct_translate [--limit 200]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

import sacrebleu
import torch

import gradtune
from gradtune.inference.generation import generate
from gradtune.models.pretrained import load_tokenizer, resolve_model

DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tatoeba_en_zh" / "dev.csv"


def translate(model, tokenizer, sources: list[str], batch: int, ask: str = "") -> tuple[list[str], float]:
    started, out = time.perf_counter(), []
    for i in range(0, len(sources), batch):
        prompts = [ask + s for s in sources[i : i + batch]]
        out += generate(model, tokenizer, prompts, chat=True, greedy=True, max_new_tokens=48)
    return [o.strip().split("\n")[0] for o in out], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    with args.dev.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[: args.limit]
    sources, references = [r["source"] for r in rows], [r["target"] for r in rows]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(rows)} dev sentences")

    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"), dtype=torch.float32).eval()
    tuned = gradtune.load(args.run)
    outputs = {}
    # the base model is asked in words (it never saw the bare sentences of the training data)
    runs = (("base", base, load_tokenizer("smollm2"), "Translate this sentence into Chinese: "),
            ("tuned", tuned.model, tuned.tokenizer, ""))
    for name, model, tokenizer, ask in runs:
        hypotheses, seconds = translate(model, tokenizer, sources, args.batch, ask)
        outputs[name] = hypotheses
        bleu = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="zh")
        chrf = sacrebleu.corpus_chrf(hypotheses, [references])
        print(f"{name:6s} BLEU {bleu.score:5.1f}  chrF {chrf.score:5.1f}  ({seconds:.0f}s)")
    for i in range(0, min(len(rows), 40), 8):
        print(f"\n{sources[i]}\n  reference: {references[i]}\n  base:      {outputs['base'][i][:80]}\n"
              f"  tuned:     {outputs['tuned'][i]}")


if __name__ == "__main__":
    main()
