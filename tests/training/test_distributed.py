"""Two CPU processes under torchrun (gloo): one run folder written once, both processes in the same
state, and validation metrics over every example exactly once (gathered, not duplicated or dropped).

Each process writes its result to a file of its own (never to the shared stdout pipe, where two
processes' output can run into one line), and torchrun gets a port that is free at run time."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
    # each step takes one batch per process: an epoch of 2 processes has half the steps
    n_train = sum(1 for _ in open(cfg["data"]["train"])) - 1
    assert results[0]["steps"] == 10 * -(-n_train // 16)
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
