"""`gradtune serve RUN [--host 127.0.0.1] [--port 8000] [--backend torch|onnx] [--api-key KEY]`."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors, out


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@app.command()
@friendly_errors
def serve(
    run: Path = typer.Argument(..., help="run directory"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port", help="port to listen on"),
    backend: str = typer.Option("torch", "--backend", help="torch, or onnx: onnxruntime on RUN/onnx"),
    api_key: str | None = typer.Option(None, "--api-key", envvar="GRADTUNE_API_KEY",
                                       help="require 'Authorization: Bearer KEY' (all but /health and the docs)"),
    max_inputs: int = typer.Option(64, "--max-inputs", help="texts (rows, prompts) in one request"),
    max_chars: int = typer.Option(10_000, "--max-chars", help="characters in one text"),
    max_body: int = typer.Option(1_000_000, "--max-body", help="bytes in one request body"),
    max_tokens: int = typer.Option(256, "--max-tokens", help="tokens one generation writes at most"),
    max_batch: int = typer.Option(32, "--max-batch", help="inputs answered by one model call (1: no batching)"),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="how long a batch waits for requests to join"),
    graceful_timeout: int = typer.Option(60, "--graceful-timeout", help="seconds that requests in flight get "
                                         "to finish after SIGTERM or Ctrl-C"),
    threads: int | None = typer.Option(None, "--threads", help="torch's CPU threads for the model (default: "
                                       "torch's, one per core)"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's: info logs every request; warning "
                                  "only problems"),
) -> None:
    """Serve a trained run over HTTP: POST /predict (as `gradtune predict`), the Hugging Face Inference
    API payload at POST /, OpenAI's /v1/chat/completions and /v1/completions for a run that writes
    text, GET /health, GET /metadata, and the API docs at /docs. Requests that arrive together are
    answered by one model call."""
    from gradtune.errors import GradtuneError

    try:
        import uvicorn

        from gradtune.serve.app import create_app
        from gradtune.serve.limits import Limits
    except ImportError as err:
        raise GradtuneError(f"gradtune serve needs fastapi and uvicorn ({err.name} is missing): "
                            "pip install 'gradtune[serve]'") from None
    from gradtune.api import load
    from gradtune.tracking.console import log

    try:
        limits = Limits(max_inputs, max_chars, max_body, max_tokens, max_batch, max_wait_ms)
    except ValueError as err:
        message = str(err).replace("max_body_bytes", "--max-body")
        raise GradtuneError(message.replace("max_", "--max-").replace("_", "-")) from None
    if not _loopback(host) and not api_key:
        log.warning(f"Listening on {host} without --api-key: anyone who reaches this port can use the model")
    if threads is not None:
        if threads < 1:
            raise GradtuneError(f"--threads must be at least 1 (got {threads})")
        import torch

        torch.set_num_threads(threads)
    predictor = load(run, backend=backend)  # once, before the first request
    name = run.resolve().name if run.resolve().name not in ("model", "onnx") else run.resolve().parent.name
    application = create_app(predictor, limits, api_key=api_key, model_name=name)
    out.print(f"Serving {run} ({predictor.task.name}) on http://{host}:{port}  (API docs: /docs)", highlight=False)
    uvicorn.run(application, host=host, port=port, timeout_graceful_shutdown=graceful_timeout, log_level=log_level)
