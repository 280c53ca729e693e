"""The FastAPI app of one run: `create_app(predictor)`. Routes:

    GET  /health        {"status": "ok"}: no API key needed
    GET  /metadata      the task, labels, base model, validation metrics of the saved model, limits, counts
    POST /predict       the task's inputs ({"texts": [...]}, "pairs", "questions" + "contexts", "rows",
                        "prompts": Task.request_fields) -> {"results": [...]}, as `gradtune predict`
    POST /              the Hugging Face Inference API payload of the task (hf_protocol.py)
    /v1/...             OpenAI's API, for a run that writes text (openai_protocol.py)
    GET  /docs          the OpenAPI documentation (and /openapi.json)

Deliberately no `from __future__ import annotations`: /predict's body type is chosen per run and
set on the endpoint as a real class, which FastAPI reads for validation and the docs."""

import logging
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from gradtune.errors import GradtuneError
from gradtune.inference.predictor import Predictor
from gradtune.serve.guards import BearerAuth, JsonBody
from gradtune.serve.hf_protocol import PROTOCOLS
from gradtune.serve.limits import Limits, ServeError, invalid, token_budget
from gradtune.serve.openai_protocol import Message
from gradtune.serve.openai_protocol import router as openai_router
from gradtune.serve.served_model import GenerationOptions, ServedModel

log = logging.getLogger("gradtune.serve")

Cell = float | int | str | None
# what each POST /predict field holds (Task.request_fields names them)
FIELD_TYPES: dict[str, Any] = {
    "texts": list[str], "pairs": list[str], "questions": list[str], "contexts": list[str],
    "rows": list[list[Cell] | dict[str, Cell]], "prompts": list[str | list[Message]],
}


class GenerationFields(BaseModel):
    """The settings of POST /predict for a run that writes text (as `gradtune generate`'s options)."""

    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int | None = Field(None, description="default and maximum: the server's --max-tokens")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    greedy: bool = False
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, max_length=8)
    chat: bool | None = Field(None, description="format prompts with the chat template (default: an instruct run)")


def predict_request(task: Any) -> type[BaseModel]:
    """The body of POST /predict for this task: its first request field required, the others optional."""
    first, *others = task.request_fields
    fields: dict[str, Any] = {first: (FIELD_TYPES[first], ...)}
    fields.update({name: (FIELD_TYPES[name] | None, None) for name in others})
    base = GenerationFields if task.writes_text else None
    config = None if base else ConfigDict(extra="forbid")
    return create_model("PredictRequest", __base__=base, __config__=config, **fields)


def error_response(error: ServeError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str]:
    """pydantic's errors as one line: 'body.texts.0: Input should be a valid string; ...'."""
    parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    first = ".".join(str(x) for x in errors[0]["loc"][1:]) if errors else None
    return "; ".join(parts) + more, first


def create_app(predictor: Predictor, limits: Limits | None = None, api_key: str | None = None,
               model_name: str = "gradtune") -> FastAPI:
    limits = limits or Limits()
    served = ServedModel(predictor, limits)
    task, meta = predictor.task, predictor.metadata

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        served.batcher.start()
        yield
        await served.batcher.stop()  # after uvicorn let the requests in flight finish

    app = FastAPI(title=f"gradtune serve: {model_name} ({task.name})", lifespan=lifespan,
                  description="A gradtune run served over HTTP. Errors: {\"error\": {message, type, code, param}}.")
    app.state.served = served

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, err: ServeError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(GradtuneError)
    async def gradtune_error(request: Request, err: GradtuneError) -> JSONResponse:
        return error_response(invalid(str(err)))

    @app.exception_handler(RequestValidationError)
    async def shape_error(request: Request, err: RequestValidationError) -> JSONResponse:
        message, param = validation_message(err.errors())
        return error_response(invalid(f"the request does not have the expected shape: {message}", param=param))

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception) -> JSONResponse:
        log.exception("error answering %s %s", request.method, request.url.path)
        return error_response(ServeError(500, "server_error", f"{type(err).__name__}: {err}"))

    @app.get("/health", summary="Whether the server answers")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "task": task.name}

    routes = ["/predict", *(["/"] if task.hf_task in PROTOCOLS else []), *(["/v1"] if task.writes_text else [])]

    @app.get("/metadata", summary="The run: task, labels, base model, validation metrics, limits")
    async def metadata() -> dict[str, Any]:
        return {"model": model_name, "task": task.name, "labels": list(meta.get("labels", [])),
                "base_model": meta.get("base_model"), "validation_metrics": meta.get("metrics", {}),
                "step": meta.get("step"), "strategy": (meta.get("strategy") or {}).get("method"),
                "backend": "onnx" if predictor.onnx is not None else "torch", "inputs": list(task.request_fields),
                "hf_task": task.hf_task, "routes": routes, "limits": asdict(limits),
                "gradtune_version": meta.get("gradtune_version"),
                "served": {"model_calls": served.batcher.batches, "inputs": served.batcher.inputs}}

    async def predict(body: Any) -> dict[str, Any]:
        first, *others = task.request_fields
        inputs, pairs = getattr(body, first), getattr(body, others[0]) if others else None
        if pairs is not None and len(pairs) != len(inputs):
            raise invalid(f"give one of {others[0]!r} per item of {first!r} ({len(inputs)} {first}, "
                          f"{len(pairs)} {others[0]})", param=others[0])
        if not task.writes_text:
            return {"results": await served.predict(inputs, pairs)}
        options = GenerationOptions(max_new_tokens=token_budget(body.max_new_tokens, limits, "max_new_tokens"),
                                    temperature=body.temperature, top_p=body.top_p, greedy=body.greedy,
                                    stop=tuple(body.stop), chat=body.chat, seed=body.seed)
        prompts = [p if isinstance(p, str) else [m.as_dict() for m in p] for p in inputs]
        written = await served.generate(prompts, options)
        return {"results": [{"generated_text": g.text, "finish_reason": g.finish_reason} for g in written]}

    predict.__annotations__["body"] = predict_request(task)
    app.post("/predict", summary=f"Predict, as `gradtune predict` ({', '.join(task.request_fields)})")(predict)

    protocol = PROTOCOLS.get(task.hf_task) if task.hf_task else None
    if protocol is not None:
        async def hugging_face(body: Any) -> Any:
            return await protocol.answer(served, body)

        hugging_face.__annotations__["body"] = protocol.request
        app.post("/", summary=f"Hugging Face Inference API: {task.hf_task}", tags=["Hugging Face API"])(hugging_face)
    if task.writes_text:
        app.include_router(openai_router(served, model_name))

    # outermost last: the key is checked before a body is read
    app.add_middleware(JsonBody, max_bytes=limits.max_body_bytes)
    if api_key:
        app.add_middleware(BearerAuth, api_key=api_key)
    return app
