"""The `gradtune` command's shared parts: the typer app, turning a GradtuneError into one readable
line (and Ctrl-C into exit code 130), and the consoles. Each command is a module of this folder."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="Fine-tune pretrained language models, or train small ones from scratch, from one config file.",
)
# markup off: messages hold user text (paths, values like [8, 16]) that must print as typed
out = Console(markup=False)
err = Console(stderr=True, markup=False)


def friendly_errors(command: Callable) -> Callable:
    """Bad input ends with one readable message and exit code 2, Ctrl-C with 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from gradtune.errors import GradtuneError

        try:
            return command(*args, **kwargs)
        except GradtuneError as e:
            # soft wrap: a long path stays one piece that can be copied
            err.print(Text.assemble(("error:", "bold red"), f" {e}"), highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted", style="yellow")
            raise typer.Exit(130) from None

    return wrapper
