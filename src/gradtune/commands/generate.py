"""`gradtune generate RUN --prompt TEXT [--prompt TEXT ...] [--greedy | --temperature T --top-p P]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors


@app.command()
@friendly_errors
def generate(
    run: Path = typer.Argument(..., help="run directory of a causal_lm or instruct run"),
    prompt: list[str] = typer.Option(..., "--prompt", help="a text to continue, or (instruct) to answer; repeatable"),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens", help="most tokens to write"),
    temperature: float = typer.Option(1.0, "--temperature", help="sampling: < 1 sharper, > 1 more varied"),
    top_p: float = typer.Option(1.0, "--top-p", help="sampling: keep the likeliest tokens holding this probability"),
    greedy: bool = typer.Option(False, "--greedy", help="always the likeliest next token (deterministic)"),
    seed: int | None = typer.Option(None, "--seed", help="make a sampled text reproducible"),
    stop: list[str] | None = typer.Option(None, "--stop", help="stop writing at this text (repeatable)"),
    chat: bool | None = typer.Option(None, "--chat/--no-chat", help="format the prompt with the chat template "
                                     "(default: yes for an instruct run)"),
) -> None:
    """Write text with a trained language model: one prompt streams its text as it is written; several
    prompts are written as one batch and printed as JSON lines {"prompt", "text"}."""
    from gradtune.api import load

    model = load(run)
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, greedy=greedy, seed=seed,
                   stop=stop or None, chat=chat)
    if len(prompt) > 1:
        for p, text in zip(prompt, model.generate(list(prompt), **options)):
            print(json.dumps({"prompt": p, "text": text}, ensure_ascii=False))
        return
    answers = model.task.chat if chat is None else chat
    if not answers:  # a continuation reads on from its prompt
        print(prompt[0], end="", flush=True)
    model.generate(prompt[0], on_text=lambda piece: print(piece, end="", flush=True), **options)
    print()
    sys.stdout.flush()
