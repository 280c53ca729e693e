"""Instruction-tuning speed: tokens per second of the training loop for the bundled SmolLM2-135M-Instruct
with LoRA (r 8 on q/k/v/o, batch 8, lr 1e-3) on the same 160 conversations of
examples/data/review_json, one epoch each, in fp32 and in bf16 autocast: gradtune (its head computed
only at the answer tokens), the Hugging Face Trainer (the same tokens and labels: gradtune's chat
template and answer masking, padded by DataCollatorForSeq2Seq), and TRL's SFTTrainer if it is
installed (`train.precision: auto` picks one of the two: docs/training.md, "Precision"). Each run is
a fresh process; the runs alternate, `--repeat` times; the table gives medians and each runner's
mean training loss (a check that a faster run still learns the same). Run by hand on an
idle machine (the load is printed before and after):

    python benchmarks/llm_sft.py [--rows 160] [--repeat 2] [--packing]
"""

from __future__ import annotations

import argparse
import json
import os
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
from gradtune.report.machine import describe
from gradtune.tracking.metrics_log import read_metrics

DATA = Path(__file__).resolve().parent.parent / "examples" / "data" / "review_json" / "train.jsonl"
LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def conversations(rows: int) -> list[list[dict]]:
    records = [json.loads(line) for line in DATA.read_text().splitlines()][:rows]
    return [from_alpaca(r["instruction"], r["input"], r["output"]) for r in records]


def run_gradtune(train: Path, out: Path, packing: bool, precision: str = "fp32") -> tuple[float, float]:
    cfg = {"task": "instruct", "model": {"name": "smollm2"},
           "strategy": {"method": "lora", "r": LORA["r"], "alpha": LORA["alpha"], "dropout": LORA["dropout"],
                        "target_modules": LORA["targets"]},
           "data": {"train": str(train), "max_length": 256, "packing": packing},
           "train": {"epochs": 1, "batch_size": 4 if packing else 8, "lr": 1e-3, "warmup_ratio": 0.0,
                     "log_every": 1, "progress": False, "seed": 0, "precision": precision},
           "output_dir": str(out)}
    seconds = gradtune.train(cfg, overwrite=True).train_seconds
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    return seconds, statistics.mean(losses)


def run_trainer(chats: list[list[dict]], out: Path, bf16: bool = False) -> tuple[float, float]:
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
                             use_cpu=True, seed=0, disable_tqdm=True, bf16=bf16,
                             train_sampling_strategy="group_by_length")  # as gradtune batches
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    metrics = trainer.train().metrics
    return metrics["train_runtime"], metrics["train_loss"]


def run_trl(chats: list[list[dict]], out: Path, bf16: bool = False) -> tuple[float, float]:
    import datasets
    import peft
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    ds = datasets.Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in chats])
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"), dtype=torch.float32)
    # bf16 said explicitly: TRL turns it on by default
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=8, learning_rate=1e-3, num_train_epochs=1,
                     logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
                     max_length=256, bf16=bf16, fp16=False, train_sampling_strategy="group_by_length")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=load_tokenizer("smollm2"),
                         peft_config=peft.LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"],
                                                     lora_dropout=LORA["dropout"], target_modules=LORA["targets"],
                                                     task_type="CAUSAL_LM"))
    metrics = trainer.train().metrics
    return metrics["train_runtime"], metrics["train_loss"]


def runners(folder: Path, chats: list[list[dict]]) -> dict:
    train = folder / "train.jsonl"
    return {"gradtune, fp32": lambda: run_gradtune(train, folder / "g", False),
            "gradtune, bf16 autocast": lambda: run_gradtune(train, folder / "b", False, "bf16"),
            "gradtune, fp32, packing": lambda: run_gradtune(train, folder / "p", True),
            "HF Trainer, fp32 (its default)": lambda: run_trainer(chats, folder / "hf"),
            "HF Trainer, bf16 autocast": lambda: run_trainer(chats, folder / "hfb", bf16=True),
            "TRL SFTTrainer, fp32": lambda: run_trl(chats, folder / "trl"),
            "TRL SFTTrainer, bf16 autocast (its default)": lambda: run_trl(chats, folder / "trlb", bf16=True)}


def one(name: str, rows: int, folder: Path) -> None:
    """A single run in this process: print its loop seconds and mean loss as the last line."""
    seconds, loss = runners(folder, conversations(rows))[name]()
    print(json.dumps({"seconds": seconds, "loss": loss}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--packing", action="store_true", help="also gradtune with data.packing")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.rows, args.folder)
    chats = conversations(args.rows)
    tokenizer = load_tokenizer("smollm2")
    tokens = sum(len(tokenize_chat(tokenizer, c)[0]) for c in chats)
    print(f"machine: {describe()}; {len(chats)} conversations, {tokens} tokens; load before {os.getloadavg()}")
    runs = [name for name in runners(Path(), chats) if args.packing or "packing" not in name]
    try:
        import trl  # noqa: F401
    except ImportError:
        print("TRL is not installed: SFTTrainer left out")
        runs = [name for name in runs if "TRL" not in name]
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    losses: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        records = [json.loads(line) for line in DATA.read_text().splitlines()][: args.rows]
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        for _ in range(args.repeat):  # alternating, so a slow minute of the machine hits every runner
            for name in runs:  # each in a fresh process
                started = time.perf_counter()
                done = subprocess.run([sys.executable, __file__, "--one", name, "--rows", str(args.rows), "--folder",
                                       str(folder)], capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                seconds[name].append(result["seconds"])
                losses[name].append(result["loss"])
                print(f"  {name}: {tokens / result['seconds']:.0f} tokens/s (loop {result['seconds']:.1f}s, whole run "
                      f"{time.perf_counter() - started:.1f}s, mean loss {result['loss']:.4f})", flush=True)
    print(f"load after {os.getloadavg()}")
    rate = {name: tokens / statistics.median(values) for name, values in seconds.items()}
    print("\n| runner | tokens/s (median) | vs HF Trainer fp32 | vs HF Trainer bf16 | mean training loss |")
    print("|---|---:|---:|---:|---:|")
    for name in runs:
        print(f"| {name} | {rate[name]:.0f} | {rate[name] / rate['HF Trainer, fp32 (its default)']:.2f}x | "
              f"{rate[name] / rate['HF Trainer, bf16 autocast']:.2f}x | {statistics.mean(losses[name]):.4f} |")


if __name__ == "__main__":
    main()
