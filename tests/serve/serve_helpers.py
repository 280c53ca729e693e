"""Runs and servers for the serve tests: a tiny run of any task (the cases of tests/test_matrix.py,
trained a few steps: these tests check that the server answers as the Predictor does, not what the
model learned), and `gradtune serve` as a real uvicorn process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

import gradtune
from conftest import write_csv
from test_matrix import TASK_MODELS, case


def train_task(task: str, folder: Path, bert: Path, chat_llama: Path, max_steps: int = 3) -> Path:
    """A run of `task` on its usual tiny model, trained `max_steps` steps."""
    model = TASK_MODELS[task] or {"name": str(bert)}
    if model == "chat_llama":
        model = {"name": str(chat_llama)}
    c = case(task, model)
    train, dev = write_csv(folder / "train.csv", c.rows[:72]), write_csv(folder / "dev.csv", c.rows[72:])
    cfg = {**c.config, "data": {**c.config.get("data", {}), "train": str(train), "validation": str(dev)},
           "train": {**c.config["train"], "max_steps": max_steps, "eval_every": max_steps},
           "output_dir": str(folder / "run")}
    return gradtune.train(cfg).run_dir


def task_inputs(task: str) -> list[Any]:
    """The inputs test_matrix predicts for `task`."""
    return case(task, {"name": "x"}).inputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`gradtune serve RUN` in a subprocess; `with Server(run) as url:` waits until /health answers."""

    def __init__(self, run: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "gradtune", "serve", str(run), "--port",
                                         str(self.port), *args], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)

    def __enter__(self) -> str:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gradtune serve ended: {self.process.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self.url
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("gradtune serve did not answer /health within 90 s")

    def terminate(self) -> int:
        """SIGTERM, then the exit code (the server finishes the requests in flight first)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __exit__(self, *exc: Any) -> None:
        try:
            self.terminate()
        finally:
            self.stop()
