"""`gradtune generate RUN --prompt TEXT [--greedy | --temperature T --top-p P] [--seed S]`."""

from __future__ import annotations

from pathlib import Path

import typer

from gradtune.commands.app import app, friendly_errors


@app.command()
@friendly_errors
def generate(
    run: Path = typer.Argument(..., help="run directory of a causal_lm run"),
    prompt: str = typer.Option(..., "--prompt", help="the text to continue"),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens", help="most tokens to write"),
    temperature: float = typer.Option(1.0, "--temperature", help="sampling: < 1 sharper, > 1 more varied"),
    top_p: float = typer.Option(1.0, "--top-p", help="sampling: keep the likeliest tokens holding this probability"),
    greedy: bool = typer.Option(False, "--greedy", help="always the likeliest next token (deterministic)"),
    seed: int | None = typer.Option(None, "--seed", help="make a sampled text reproducible"),
) -> None:
    """Continue a prompt with a trained language model (task causal_lm)."""
    from gradtune.api import load

    text = load(run).generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                              greedy=greedy, seed=seed)
    print(prompt + text)
