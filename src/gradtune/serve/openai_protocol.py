"""OpenAI's API for a run that writes text (causal_lm, instruct), so the official `openai` client works
unchanged with `base_url="http://127.0.0.1:8000/v1"`:

    POST /v1/chat/completions   messages -> the assistant's answer, formatted with the run's chat
                                template (a plain one when the tokenizer has none)
    POST /v1/completions        prompt(s) -> their continuation, as plain text
    GET  /v1/models             the one model this server holds

Both stream as server-sent events (`data: {chunk}` ... `data: [DONE]`) with "stream": true. temperature
0 is greedy; max_tokens (or max_completion_tokens) is capped by the server's --max-tokens. Parameters
that would change the answer in a way this server cannot (tools, logprobs, penalties, logit_bias, a
JSON response_format) are refused with a 400 naming them, not ignored."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gradtune.serve.limits import invalid, token_budget
from gradtune.serve.served_model import Generated, GenerationOptions, ServedModel

# accepted and without effect here: bookkeeping a hosted API keeps
HARMLESS = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "prompt_cache_key",
            "safety_identifier", "model"}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    max_tokens: int | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = Field(None)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def options(self, served: ServedModel, chat: bool, max_tokens: int | None) -> GenerationOptions:
        unsupported = [k for k, v in (self.model_extra or {}).items()
                       if k not in HARMLESS and v not in (None, False, 0, "", [], {}, {"type": "text"})]
        if unsupported:
            raise invalid(f"not supported by gradtune serve: {', '.join(unsupported)}", param=unsupported[0],
                          status=400)
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > 4:
            raise invalid(f"at most 4 stop strings (got {len(stop)})", param="stop")
        if self.stream and self.n > 1:
            raise invalid("stream one choice at a time (n=1)", param="n")
        return GenerationOptions(max_new_tokens=token_budget(max_tokens, served.limits), temperature=self.temperature
                                 or 1.0, top_p=self.top_p, greedy=self.temperature == 0, stop=tuple(stop),
                                 chat=chat, seed=self.seed)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None


class CompletionRequest(Sampling):
    prompt: str | list[str]
    echo: bool = False


def usage(written: list[Generated], n: int = 1) -> dict[str, int]:
    """Token counts; a prompt answered `n` times counts once, as OpenAI counts it."""
    prompt = sum(g.prompt_tokens for g in written[::n])
    completion = sum(g.completion_tokens for g in written)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def router(served: ServedModel, model_name: str) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["OpenAI API"])

    def head(kind: str, prefix: str) -> dict[str, Any]:
        return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
                "model": model_name}

    @api.get("/models", summary="The model this server holds")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "gradtune"}]}

    @api.post("/chat/completions", summary="OpenAI chat completions (stream: server-sent events)")
    async def chat_completions(body: ChatRequest) -> Any:
        options = body.options(served, chat=True, max_tokens=body.max_completion_tokens or body.max_tokens)
        conversation = [m.as_dict() for m in body.messages]
        if body.stream:
            return await stream(served, conversation, options, head("chat.completion.chunk", "chatcmpl"),
                                body.stream_options, chat=True)
        written = await served.generate([conversation] * body.n, options)
        return {**head("chat.completion", "chatcmpl"), "usage": usage(written, body.n), "choices": [
            {"index": i, "message": {"role": "assistant", "content": g.text}, "finish_reason": g.finish_reason,
             "logprobs": None} for i, g in enumerate(written)]}

    @api.post("/completions", summary="OpenAI completions: continue the prompt (stream: server-sent events)")
    async def completions(body: CompletionRequest) -> Any:
        options = body.options(served, chat=False, max_tokens=body.max_tokens)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if body.stream:
            if len(prompts) != 1:
                raise invalid("stream one prompt at a time", param="prompt")
            return await stream(served, prompts[0], options, head("text_completion", "cmpl"), body.stream_options,
                                chat=False, echo=body.echo)
        written = await served.generate([p for p in prompts for _ in range(body.n)], options)
        return {**head("text_completion", "cmpl"), "usage": usage(written, body.n), "choices": [
            {"index": i, "text": (prompts[i // body.n] if body.echo else "") + g.text,
             "finish_reason": g.finish_reason, "logprobs": None} for i, g in enumerate(written)]}

    return api


async def stream(served: ServedModel, prompt: Any, options: GenerationOptions, head: dict[str, Any],
                 stream_options: StreamOptions | None, chat: bool, echo: bool = False) -> StreamingResponse:
    pieces = served.stream(prompt, options)
    first = await pieces.__anext__()  # an error before the first piece is an error response, not a stream

    def chunk(text: str | None, finish: str | None = None) -> dict[str, Any]:
        if chat:
            delta = {} if text is None else {"content": text}
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return {**head, "choices": [{"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}]}

    async def events() -> AsyncIterator[str]:
        if chat:
            yield sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None, "logprobs": None}]})
        elif echo:
            yield sse(chunk(prompt))
        piece = first
        while not isinstance(piece, Generated):
            yield sse(chunk(piece))
            piece = await pieces.__anext__()
        yield sse(chunk(None, piece.finish_reason))
        if stream_options is not None and stream_options.include_usage:
            yield sse({**head, "choices": [], "usage": usage([piece])})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
