"""The Hugging Face Inference API payloads, at `POST /`: `huggingface_hub.InferenceClient(model=URL)`
posts a task's payload to the URL itself, so `InferenceClient(model="http://127.0.0.1:8000")
.text_classification("great film")` works unchanged. Which payload a run speaks is its task's
`hf_task`; a new task picks one of these (or adds one here) and the server needs no other change.

    text-classification   {"inputs": "text" | {"text", "text_pair"} | [...], "parameters": {"top_k"}}
                          -> [[{"label", "score"}, ...] per input], highest score first
    question-answering    {"inputs": {"question", "context"} | [...]} -> {"answer", "score", "start", "end"}
    text2text-generation  {"inputs": "text" | [...]} -> [{"generated_text"} per input] (also under
                          "translation_text" and "summary_text", the keys of translation and summarization)
    tabular               {"table": {column: [values]}} -> [label or value per row] (tabular-classification
                          and tabular-regression)
    text-generation       {"inputs": "prompt", "parameters": {max_new_tokens, temperature, top_p, do_sample,
                          seed, stop, return_full_text}, "stream": bool} -> [{"generated_text"}], or
                          server-sent events as Text Generation Inference streams them

A parameter the server does not support is refused (400) with the message Text Generation Inference
gives, so InferenceClient drops it, warns, and asks again without it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gradtune.serve.limits import invalid, token_budget
from gradtune.serve.served_model import Generated, GenerationOptions, ServedModel


class TextPair(BaseModel):
    text: str
    text_pair: str


class QuestionContext(BaseModel):
    question: str
    context: str


class Parameters(BaseModel):
    model_config = ConfigDict(extra="allow")  # anything else is named in the refusal, not dropped silently


class ClassificationParameters(Parameters):
    top_k: int | None = Field(None, ge=1)


class TextClassificationRequest(BaseModel):
    inputs: str | TextPair | list[str | TextPair]
    parameters: ClassificationParameters = ClassificationParameters()


class QuestionAnsweringRequest(BaseModel):
    inputs: QuestionContext | list[QuestionContext]
    parameters: Parameters = Parameters()


class Text2TextRequest(BaseModel):
    inputs: str | list[str]
    parameters: Parameters = Parameters()


class TabularRequest(BaseModel):
    table: dict[str, list[float | int | str | None]]


class TextGenerationParameters(Parameters):
    max_new_tokens: int | None = None
    temperature: float | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    do_sample: bool | None = None
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, max_length=8)
    return_full_text: bool = False


class TextGenerationRequest(BaseModel):
    inputs: str | list[str]
    parameters: TextGenerationParameters = TextGenerationParameters()
    stream: bool = False


def refuse_extra(parameters: BaseModel, status: int = 422) -> None:
    """Parameters given that the server does not read."""
    extra = [k for k, v in (parameters.model_extra or {}).items() if v is not None]
    if extra:
        # TGI's wording: InferenceClient.text_generation retries without these parameters
        raise invalid(f"The following `model_kwargs` are not used by the model: {extra} (gradtune serve "
                      "does not support them)", param=extra[0], status=status)


async def text_classification(served: ServedModel, body: TextClassificationRequest) -> Any:
    refuse_extra(body.parameters)
    items = body.inputs if isinstance(body.inputs, list) else [body.inputs]
    pairs = [i.text_pair for i in items if isinstance(i, TextPair)]
    if pairs and len(pairs) != len(items):
        raise invalid("give every input as a {text, text_pair} pair, or none", param="inputs")
    texts = [i.text if isinstance(i, TextPair) else i for i in items]
    results = await served.predict(texts, pairs or None)
    top_k = body.parameters.top_k
    label = served.meta.get("label_column") or "value"
    shaped = []
    for r in results:
        scores = r.get("probabilities") or {label: r["value"]}  # regression: its value as the score
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])[:top_k]
        shaped.append([{"label": name, "score": score} for name, score in ranked])
    return shaped


async def question_answering(served: ServedModel, body: QuestionAnsweringRequest) -> Any:
    refuse_extra(body.parameters)
    items = body.inputs if isinstance(body.inputs, list) else [body.inputs]
    results = await served.predict([i.question for i in items], [i.context for i in items])
    shaped = [{k: r[k] for k in ("answer", "score", "start", "end")} for r in results]
    return shaped if isinstance(body.inputs, list) else shaped[0]


async def text2text_generation(served: ServedModel, body: Text2TextRequest) -> Any:
    refuse_extra(body.parameters)
    texts = body.inputs if isinstance(body.inputs, list) else [body.inputs]
    results = await served.predict(texts)
    return [{"generated_text": t, "translation_text": t, "summary_text": t}
            for t in (r["generated_text"] for r in results)]


async def tabular(served: ServedModel, body: TabularRequest) -> Any:
    lengths = {len(values) for values in body.table.values()}
    if len(lengths) > 1:
        raise invalid(f"the table's columns have different lengths ({sorted(lengths)})", param="table")
    n = lengths.pop() if lengths else 0
    rows = [{column: values[i] for column, values in body.table.items()} for i in range(n)]
    results = await served.predict(rows)
    return [r["label"] if "label" in r else r["value"] for r in results]


async def text_generation(served: ServedModel, body: TextGenerationRequest) -> Any:
    p = body.parameters
    refuse_extra(p, status=400)
    sampled = bool(p.do_sample) or p.temperature is not None or p.top_p is not None  # as TGI: else greedy
    options = GenerationOptions(max_new_tokens=token_budget(p.max_new_tokens, served.limits, "max_new_tokens"),
                                temperature=p.temperature or 1.0, top_p=p.top_p or 1.0, greedy=not sampled,
                                stop=tuple(p.stop), seed=p.seed)
    prompts = body.inputs if isinstance(body.inputs, list) else [body.inputs]
    if body.stream:
        if len(prompts) != 1:
            raise invalid("stream one prompt at a time", param="inputs")
        return await stream_tgi(served, prompts[0], options, p.return_full_text)
    written = await served.generate(prompts, options)
    return [{"generated_text": (prompt if p.return_full_text else "") + g.text} for prompt, g in zip(prompts, written)]


def sse(data: dict[str, Any]) -> str:
    return f"data:{json.dumps(data, ensure_ascii=False)}\n\n"


async def stream_tgi(served: ServedModel, prompt: str, options: GenerationOptions, full_text: bool) -> Any:
    pieces = served.stream(prompt, options)
    first = await pieces.__anext__()  # an error before the first piece is an error response, not a stream

    async def events() -> AsyncIterator[str]:
        piece, index = first, 0
        while not isinstance(piece, Generated):
            yield sse({"index": index, "token": {"text": piece, "special": False}, "generated_text": None,
                       "details": None})
            index += 1
            piece = await pieces.__anext__()
        reason = {"stop": "eos_token", "length": "length"}[piece.finish_reason]
        yield sse({"index": index, "token": {"text": "", "special": True},
                   "generated_text": (prompt if full_text else "") + piece.text,
                   "details": {"finish_reason": reason, "generated_tokens": piece.completion_tokens,
                               "seed": options.seed}})

    return StreamingResponse(events(), media_type="text/event-stream")


@dataclass(frozen=True)
class HFProtocol:
    request: type[BaseModel]
    answer: Callable[[ServedModel, Any], Awaitable[Any]]


PROTOCOLS: dict[str, HFProtocol] = {
    "text-classification": HFProtocol(TextClassificationRequest, text_classification),
    "question-answering": HFProtocol(QuestionAnsweringRequest, question_answering),
    "text2text-generation": HFProtocol(Text2TextRequest, text2text_generation),
    "tabular": HFProtocol(TabularRequest, tabular),
    "text-generation": HFProtocol(TextGenerationRequest, text_generation),
}
