"""Instruction-tuning speed: tokens per second of the training loop for the bundled SmolLM2-135M-Instruct
with LoRA (r 8 on q/k/v/o, fp32, batch 8, lr 1e-3) on the same 160 conversations of
examples/data/review_json, one epoch each: gradtune without and with packing, the Hugging Face
Trainer (the same tokens and labels: gradtune's chat template and answer masking, padded by
DataCollatorForSeq2Seq), and TRL's SFTTrainer if it is installed. The runs alternate, twice.
Run by hand on an idle machine (check `uptime` before and after):

    python benchmarks/llm_sft.py [--rows 160] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import gradtune
from gradtune.data.chat import from_alpaca, tokenize_chat
from gradtune.models.pretrained import load_tokenizer, resolve_model

DATA = Path(__file__).resolve().parent.parent / "examples" / "data" / "review_json" / "train.jsonl"
LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def conversations(rows: int) -> list[list[dict]]:
    records = [json.loads(line) for line in DATA.read_text().splitlines()][:rows]
    return [from_alpaca(r["instruction"], r["input"], r["output"]) for r in records]


def run_gradtune(train: Path, out: Path, packing: bool, precision: str = "fp32") -> float:
    cfg = {"task": "instruct", "model": {"name": "smollm2"},
           "strategy": {"method": "lora", "r": LORA["r"], "alpha": LORA["alpha"], "dropout": LORA["dropout"],
                        "target_modules": LORA["targets"]},
           "data": {"train": str(train), "max_length": 256, "packing": packing},
           "train": {"epochs": 1, "batch_size": 4 if packing else 8, "lr": 1e-3, "warmup_ratio": 0.0,
                     "log_every": 1000, "progress": False, "seed": 0, "precision": precision},
           "output_dir": str(out)}
    return gradtune.train(cfg, overwrite=True).train_seconds


def run_trainer(chats: list[list[dict]], out: Path) -> float:
    import datasets
    import peft
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer = load_tokenizer("smollm2")
    features = [dict(zip(("input_ids", "labels"), tokenize_chat(tokenizer, c))) for c in chats]
    ds = datasets.Dataset.from_list([{**f, "attention_mask": [1] * len(f["input_ids"])} for f in features])
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"), dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"],
                                                       lora_dropout=LORA["dropout"], target_modules=LORA["targets"],
                                                       task_type=peft.TaskType.CAUSAL_LM))
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=8, learning_rate=1e-3,
                             num_train_epochs=1, logging_steps=1000, save_strategy="no", report_to=[],
                             use_cpu=True, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    return trainer.train().metrics["train_runtime"]


def run_trl(chats: list[list[dict]], out: Path, bf16: bool = False) -> float:
    import datasets
    import peft
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    ds = datasets.Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in chats])
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"), dtype=torch.float32)
    # fp32 like the others (TRL turns bf16 on by default, which this CPU has no fast path for)
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=8, learning_rate=1e-3, num_train_epochs=1,
                     logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
                     max_length=256, bf16=bf16, fp16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=load_tokenizer("smollm2"),
                         peft_config=peft.LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"],
                                                     lora_dropout=LORA["dropout"], target_modules=LORA["targets"],
                                                     task_type="CAUSAL_LM"))
    return trainer.train().metrics["train_runtime"]


def one(name: str, rows: int, folder: Path) -> None:
    """A single run in this process: print its loop seconds as the last line."""
    chats = conversations(rows)
    runners = {"gradtune": lambda: run_gradtune(folder / "train.jsonl", folder / "g", False),
               "gradtune, packing": lambda: run_gradtune(folder / "train.jsonl", folder / "p", True),
               "HF Trainer": lambda: run_trainer(chats, folder / "hf"),
               "TRL SFTTrainer": lambda: run_trl(chats, folder / "trl"),
               "gradtune, bf16 autocast": lambda: run_gradtune(folder / "train.jsonl", folder / "b", False, "bf16"),
               "TRL SFTTrainer, bf16 autocast": lambda: run_trl(chats, folder / "trlb", bf16=True)}
    print(json.dumps({"seconds": runners[name]()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="also bf16 autocast (fast on a CPU with AVX512-BF16)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.rows, args.folder)
    chats = conversations(args.rows)
    tokenizer = load_tokenizer("smollm2")
    tokens = sum(len(tokenize_chat(tokenizer, c)[0]) for c in chats)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(chats)} conversations, {tokens} tokens")
    runs = ["gradtune", "gradtune, packing", "HF Trainer"] + (["gradtune, bf16 autocast"] if args.bf16 else [])
    try:
        import trl  # noqa: F401

        runs.append("TRL SFTTrainer")
        if args.bf16:
            runs.append("TRL SFTTrainer, bf16 autocast")
    except ImportError:
        print("TRL is not installed: SFTTrainer left out")
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        records = [json.loads(line) for line in DATA.read_text().splitlines()][: args.rows]
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        for _ in range(args.repeat):  # alternating, so a slow minute of the machine hits every runner
            for name in runs:  # each in a fresh process
                started = time.perf_counter()
                done = subprocess.run([sys.executable, __file__, "--one", name, "--rows", str(args.rows), "--folder",
                                       str(folder)], capture_output=True, text=True, check=True)
                loop = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
                seconds[name].append(loop)
                print(f"  {name}: {tokens / loop:.0f} tokens/s (loop {loop:.1f}s, whole run "
                      f"{time.perf_counter() - started:.1f}s)", flush=True)
    base = tokens / statistics.median(seconds["HF Trainer"])
    print("\n| runner | tokens/s (median) | vs HF Trainer |\n|---|---:|---:|")
    for name, values in seconds.items():
        rate = tokens / statistics.median(values)
        print(f"| {name} | {rate:.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
