"""Two CPU processes under torchrun (gloo): one run folder written once, both processes in the same
state, and validation metrics over every example exactly once (gathered, not duplicated or dropped).

Each process writes its result to a file of its own (never to the shared stdout pipe, where two
processes' output can run into one line), and torchrun gets a port that is free at run time."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

import gradtune
from gradtune.tracking.metrics_log import read_metrics

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import gradtune
    cfg = json.loads(sys.argv[1])
    run = gradtune.train(cfg)
    out = os.path.join(sys.argv[2], "rank-" + os.environ["RANK"] + ".json")
    with open(out, "w") as f:
        json.dump({"steps": run.steps, "metrics": run.metrics}, f)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: str, cfg: dict, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run `script CFG RESULTS_DIR` in 2 processes; the per-rank result files, rank order."""
    path, results = tmp_path / "script.py", tmp_path / "results"
    path.write_text(script)
    results.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(free_port()), str(path), json.dumps(cfg), str(results)],
        capture_output=True, text=True, timeout=300)
    found = [json.loads((results / f"rank-{r}.json").read_text()) for r in (0, 1)
             if (results / f"rank-{r}.json").is_file()]
    return done, found


def test_two_processes_train_one_run(make_config, wide_init_bert, tmp_path):
    cfg = make_config(model__name=str(wide_init_bert), train__epochs=10, train__batch_size=8, train__lr=3e-3)
    done, results = torchrun(SCRIPT, cfg, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(results) == 2 and results[0] == results[1]  # both processes end in the same state

    run_dir = tmp_path / "run"
    records = read_metrics(run_dir / "metrics.jsonl")
    steps = [(r["kind"], r["step"]) for r in records]
    assert len(steps) == len(set(steps)), "a record was written by both processes"
    # train.batch_size is the batch of a step, shared by the processes: the same steps as on one
    n_train = sum(1 for _ in open(cfg["data"]["train"])) - 1
    assert results[0]["steps"] == 10 * -(-n_train // 8)
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals[-1]["accuracy"] > 0.8 and evals[-1]["loss"] < evals[0]["loss"]
    # the gathered validation metrics are those of one process scoring every example once
    best = max(evals, key=lambda r: r["accuracy"])
    alone = gradtune.evaluate(run_dir, cfg["data"]["validation"])
    assert alone["accuracy"] == pytest.approx(best["accuracy"])
    assert alone["loss"] == pytest.approx(best["loss"], abs=1e-4)


NAN_ON_RANK_1 = textwrap.dedent("""
    import json, os, sys
    import torch
    import gradtune
    from gradtune.errors import GradtuneError
    from gradtune.tasks import classification
    plain = classification.loss_sum
    calls = []
    def poisoned(logits, labels, **kw):  # rank 1 only, from its 5th batch on
        calls.append(1)
        loss = plain(logits, labels, **kw)
        return loss * float("nan") if os.environ["RANK"] == "1" and len(calls) >= 5 else loss
    classification.loss_sum = poisoned
    message = None
    try:
        gradtune.train(json.loads(sys.argv[1]))
    except GradtuneError as e:
        message = str(e).split(";")[0]
    with open(os.path.join(sys.argv[2], "rank-" + os.environ["RANK"] + ".json"), "w") as f:
        json.dump({"stopped": message}, f)
""")


def test_a_nan_on_one_process_stops_every_process(make_config, wide_init_bert, tmp_path):
    cfg = make_config(model__name=str(wide_init_bert), train__epochs=3)
    done, results = torchrun(NAN_ON_RANK_1, cfg, tmp_path)
    assert len(results) == 2, done.stdout[-2000:] + done.stderr[-2000:]
    stopped = [r["stopped"] for r in results]  # both, at the same step
    assert stopped[0] is not None and stopped[0] == stopped[1] and "non-finite loss at step 5" in stopped[0]


def gradtune_nproc(config: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`gradtune train CONFIG --nproc 2 ...`, as a user types it."""
    return subprocess.run([sys.executable, "-m", "gradtune", "train", str(config), "--nproc", "2", *args],
                          capture_output=True, text=True, timeout=timeout)


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def train_losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]


def test_two_processes_train_as_one_with_the_same_batch(make_config, wide_init_bert, tmp_path):
    # no dropout: each process draws its own masks for its share, one process draws them for the whole batch
    settings = dict(model__name=str(wide_init_bert), model__dropout=0.0, model__attention_dropout=0.0,
                    model__classifier_dropout=0.0, train__epochs=2, train__batch_size=16, train__log_every=1)
    one = gradtune.train(make_config(**settings, output_dir=str(tmp_path / "one")))
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(make_config(**settings, output_dir=str(tmp_path / "two"))))
    done = gradtune_nproc(config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes: each step's batch of 16 is shared, 8 examples per process" in " ".join(done.stderr.split())
    two = tmp_path / "two"
    assert train_losses(two) == pytest.approx(train_losses(one.run_dir), rel=1e-4)  # step by step
    a, b = weights(one.run_dir), weights(two)
    # attention's key bias adds the same amount to every score of a query, which softmax ignores: its
    # true gradient is 0, and AdamW turns the float noise left in it into lr-sized random steps
    diffs = {k: float((a[k] - b[k]).abs().max()) for k in a if not k.endswith("key.bias")}
    assert a.keys() == b.keys() and max(diffs.values()) < 1e-5, sorted(diffs.items(), key=lambda kv: -kv[1])[:3]


def test_two_processes_resume_to_the_weights_of_an_uninterrupted_run(make_config, wide_init_bert, tmp_path):
    settings = dict(model__name=str(wide_init_bert), train__epochs=30, train__batch_size=16, train__log_every=1,
                    train__eval_every=1000, train__save_every=1000)
    whole, cut = tmp_path / "whole.yaml", tmp_path / "cut.yaml"
    whole.write_text(yaml.safe_dump(make_config(**settings, output_dir=str(tmp_path / "whole"))))
    cut.write_text(yaml.safe_dump(make_config(**settings, output_dir=str(tmp_path / "cut"))))
    assert gradtune_nproc(whole).returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "gradtune", "train", str(cut), "--nproc", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count('"train"') >= 20):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches every process of the group, as in a terminal
    _, said = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "continue with --resume" in said, said[-3000:]
    stopped = [r for r in read_metrics(metrics) if r["kind"] == "end"]
    assert stopped and stopped[-1]["status"] == "interrupted" and stopped[-1]["step"] < 300

    done = gradtune_nproc(cut, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert train_losses(tmp_path / "cut") == pytest.approx(train_losses(tmp_path / "whole"), rel=1e-5)
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    diffs = {k: float((a[k] - b[k]).abs().max()) for k in a}
    assert max(diffs.values()) < 1e-6, sorted(diffs.items(), key=lambda kv: -kv[1])[:3]


def test_a_batch_the_processes_cannot_share_equally_is_refused():
    from gradtune.errors import GradtuneError
    from gradtune.training.step import check_split

    with pytest.raises(GradtuneError, match=r"train.batch_size is 16, which 3 processes can't share equally: use a "
                                            r"multiple of 3, e.g. train.batch_size=15"):
        check_split(16, 32, 3)
    with pytest.raises(GradtuneError, match="train.eval_batch_size is 9"):
        check_split(16, 9, 2)
    with pytest.raises(GradtuneError, match="gd_mode stochastic takes one example per step"):
        check_split(1, None, 2)
    check_split(16, 32, 2)  # shared equally: fine


def test_accelerate_launch_starts_the_same_two_process_run(make_config, wide_init_bert, tmp_path):
    # accelerate's torchrun launcher is its --multi_gpu one; without GPUs the processes meet over gloo
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(make_config(model__name=str(wide_init_bert), train__epochs=1,
                                                 train__batch_size=16, output_dir=str(tmp_path / "run"))))
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
         str(free_port()), "-m", "gradtune", "train", str(config)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join((done.stdout + done.stderr).split())
    assert "2 processes: each step's batch of 16 is shared, 8 examples per process" in said
    assert said.count("Training ") == 1  # said once, by the main process
    n_train = sum(1 for _ in open(yaml.safe_load(config.read_text())["data"]["train"])) - 1
    assert [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "end"][-1]["step"] == \
        -(-n_train // 16)
