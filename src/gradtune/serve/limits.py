"""What one request may ask of the server, and the JSON errors it answers with. Every error has the
shape OpenAI's API uses, so its client (and Hugging Face's, which prints the body) shows the message:

    {"error": {"message": "...", "type": "limit_exceeded", "code": "texts_per_request", "param": null}}

`type` is limit_exceeded (413: the `code` names the limit), invalid_request (422: malformed JSON,
wrong shape or an input the model cannot take; 400: a parameter the server does not support),
authentication_error (401) or server_error (500)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    max_inputs: int = 64  # texts (rows, questions, prompts) in one request
    max_chars: int = 10_000  # characters in one text (a prompt, a message, a context)
    max_body_bytes: int = 1_000_000  # the request body
    max_tokens: int = 256  # tokens one generation writes at most (also the default when a request names none)
    max_batch: int = 32  # inputs answered by one model call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others to join it

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_chars", "max_body_bytes", "max_tokens", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0 (got {self.max_wait_ms})")


class ServeError(Exception):
    """An error a client gets as JSON with an HTTP status."""

    def __init__(self, status: int, kind: str, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.code, self.param = status, kind, message, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "code": self.code, "param": self.param}}


def limit_error(limit: str, message: str) -> ServeError:
    return ServeError(413, "limit_exceeded", message, code=limit)


def invalid(message: str, param: str | None = None, status: int = 422) -> ServeError:
    return ServeError(status, "invalid_request", message, param=param)


def check_inputs(count: int, texts: list[tuple[str, str]], limits: Limits) -> None:
    """`count` inputs, and (where, text) pairs of every text they hold, within the limits."""
    if count > limits.max_inputs:
        raise limit_error("texts_per_request", f"{count} inputs in one request; the server takes at most "
                          f"{limits.max_inputs} (--max-inputs): send them in several requests")
    if count == 0:
        raise invalid("no inputs: give at least one")
    for where, text in texts:
        if len(text) > limits.max_chars:
            raise limit_error("characters_per_text", f"{where} has {len(text)} characters; the server takes at "
                              f"most {limits.max_chars} per text (--max-chars)")


def token_budget(requested: int | None, limits: Limits, param: str = "max_tokens") -> int:
    """The tokens a generation may write: the request's `max_tokens` (default: the server's cap)."""
    if requested is None:
        return limits.max_tokens
    if requested < 1:
        raise invalid(f"{param} must be at least 1 (got {requested})", param=param)
    if requested > limits.max_tokens:
        raise limit_error(param, f"{param}={requested} is more than this server writes ({limits.max_tokens}, "
                          "--max-tokens)")
    return requested
