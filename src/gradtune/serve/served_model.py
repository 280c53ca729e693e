"""The model behind the server: a Predictor loaded once, fed through the batcher. The protocols
(serve/app.py, hf_protocol.py, openai_protocol.py) call these three coroutines; what an input is and
what a result looks like is the run's task's business (Task.prediction_rows, decode), as for
`gradtune predict`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gradtune.errors import GradtuneError
from gradtune.inference.generation import encode_prompts
from gradtune.inference.predictor import Predictor
from gradtune.serve.batching import Batcher
from gradtune.serve.limits import Limits, check_inputs, invalid


@dataclass(frozen=True)
class GenerationOptions:
    """One generation's settings; requests with equal settings are written as one batch."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False
    stop: tuple[str, ...] = ()
    chat: bool | None = None  # None: as the run's task (instruct formats prompts as a chat)
    seed: int | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "greedy": self.greedy, "stop": list(self.stop) or None, "chat": self.chat, "seed": self.seed}


@dataclass
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop": its end-of-text token or a stop string; "length": max_new_tokens written


def prompt_texts(prompt: Any, where: str) -> list[tuple[str, str]]:
    """(where, text) of a prompt: a text, or a conversation's messages."""
    if isinstance(prompt, str):
        return [(where, prompt)]
    return [(f"{where} message {i}", m["content"]) for i, m in enumerate(prompt)]


@dataclass
class ServedModel:
    predictor: Predictor
    limits: Limits = field(default_factory=Limits)
    batcher: Batcher | None = None

    def __post_init__(self) -> None:
        self.batcher = self.batcher or Batcher(self.limits.max_batch, self.limits.max_wait_ms / 1000)
        self.task, self.meta = self.predictor.task, self.predictor.metadata

    async def predict(self, inputs: Any, pairs: list[str] | None = None) -> list[dict[str, Any] | None]:
        """Predictor.predict's results for `inputs` (texts, {question, context}s, table rows)."""
        try:
            rows = self.task.prediction_rows(inputs, pairs, self.meta)
        except (GradtuneError, ValueError, TypeError, KeyError) as err:
            raise invalid(str(err)) from None
        n = len(next(iter(rows.values()))) if rows else 0
        columns = self.task.text_columns(self.meta).values()
        check_inputs(n, [(f"input {i} ({c})", str(rows[c][i])) for c in columns for i in range(n)], self.limits)
        items = [{c: values[i] for c, values in rows.items()} for i in range(n)]
        return await self.batcher.submit("predict", items, self._predict_rows)

    def _predict_rows(self, items: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        rows = {c: [item[c] for item in items] for c in items[0]}
        return self.predictor.predict_rows(rows)

    def check_prompts(self, prompts: list[Any]) -> None:
        check_inputs(len(prompts), [t for i, p in enumerate(prompts) for t in prompt_texts(p, f"prompt {i}")],
                     self.limits)

    async def generate(self, prompts: list[Any], options: GenerationOptions) -> list[Generated]:
        """What the model writes after each prompt; prompts of requests with the same options (and
        no seed: a seeded text must not depend on what it was batched with) are written together."""
        self.check_prompts(prompts)
        key = ("generate", options) if options.seed is None else object()
        return await self.batcher.submit(key, prompts, lambda batch: self._generate(batch, options))

    def _chat(self, options: GenerationOptions) -> bool:
        return self.task.chat if options.chat is None else options.chat

    def _generate(self, prompts: list[Any], options: GenerationOptions) -> list[Generated]:
        texts = self.predictor.generate(list(prompts), **options.kwargs())
        return [self._described(p, t, options) for p, t in zip(prompts, texts)]

    def _described(self, prompt: Any, text: str, options: GenerationOptions) -> Generated:
        """Token counts and why the text ended. The written tokens are counted by encoding the text
        again (the generator returns text): "length" when they fill max_new_tokens, else "stop"."""
        tokenizer = self.predictor.tokenizer
        prompt_tokens = len(encode_prompts(tokenizer, [prompt], self._chat(options))[0])
        written = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        reason = "length" if written >= options.max_new_tokens else "stop"
        return Generated(text, prompt_tokens, min(written, options.max_new_tokens), reason)

    async def stream(self, prompt: Any, options: GenerationOptions) -> AsyncIterator[str | Generated]:
        """The text in pieces as it is written, then the whole Generated. Errors found before the
        first piece (a prompt too long for the model) are raised by the first `__anext__`."""
        self.check_prompts([prompt])
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        def put(piece: str | None) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        def run() -> Generated:
            try:
                text = self.predictor.generate(prompt, on_text=put, **options.kwargs())
            finally:
                put(None)
            return self._described(prompt, text, options)

        done = asyncio.ensure_future(self.batcher.call(run))
        cut = StopCut(options.stop)
        while (piece := await pieces.get()) is not None:
            if shown := cut.add(piece):
                yield shown
        result = await done
        if result.text.startswith(cut.shown) and (rest := result.text[len(cut.shown):]):
            yield rest  # what was held back for a possible stop string, up to where the text was cut
        yield result


class StopCut:
    """Streamed pieces up to the first stop string: a piece that could be the start of one is held
    back until the next piece shows whether it is."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop, self.text, self.shown, self.ended = stop, "", "", False

    def add(self, piece: str) -> str:
        if self.ended:
            return ""
        self.text += piece
        ends = [self.text.index(s) for s in self.stop if s in self.text]
        if ends:
            self.ended = True
            safe = min(ends)
        else:
            hold = max((len(s) - 1 for s in self.stop), default=0)
            safe = max(len(self.shown), len(self.text) - hold)
        new, self.shown = self.text[len(self.shown):safe], self.text[:safe]
        return new
