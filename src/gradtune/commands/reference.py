"""docs/cli.md, generated from the `gradtune` command itself so that the docs cannot drift from the CLI:
`python -m gradtune.commands.reference > docs/cli.md` (a test checks the file is current).

It walks the command tree typer builds from the app (`typer.main.get_command`): every command, its help,
its usage line, and every argument and option with its type, default and help."""

from __future__ import annotations

import inspect
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import typer.main

from gradtune.commands import app


def cli_reference() -> str:
    group = typer.main.get_command(app)
    ctx = group.make_context("gradtune", [], resilient_parsing=True)
    commands = [group.get_command(ctx, name) for name in group.list_commands(ctx)]
    commands = [c for c in commands if not c.hidden]
    lines = ["# CLI reference", "",
             "Generated from the `gradtune` command itself (`python -m gradtune.commands.reference > docs/cli.md`);",
             "`gradtune COMMAND --help` prints the same. Every command also takes `--help`. Errors in what you give",
             "(a missing file, a bad config key) end with one line `error: ...` and exit code 2; Ctrl-C ends with 130.",
             "", paragraphs(group.help or ""), "",
             "| command | what it does |", "|---|---|"]
    lines += [f"| [`gradtune {c.name}`](#gradtune-{c.name}) | {cell(summary(c.help or ''))} |" for c in commands]
    for command in commands:
        lines += ["", *command_section(command, ctx)]
    return "\n".join(lines) + "\n"


def command_section(command: Any, parent: Any) -> list[str]:
    """One command: its help, its usage line and a table of its arguments and options."""
    ctx = command.make_context(command.name, [], parent=parent, resilient_parsing=True)
    usage = command.get_usage(ctx).removeprefix("Usage: ").strip()
    params = [p for p in command.get_params(ctx) if not p.hidden and p.name != "help"]
    lines = [f"## `gradtune {command.name}`", "", paragraphs(command.help or ""), "", "```", usage, "```"]
    if params:
        lines += ["", "| argument / option | type | default | meaning |", "|---|---|---|---|"]
        for p in params:
            lines.append(f"| {param_name(p)} | {cell(param_type(p))} | {param_default(p)} | {cell(p.help or '')} |")
    return lines


def param_name(p: Any) -> str:
    if p.param_type_name == "argument":
        return f"`{p.name}`" + (" ..." if p.nargs == -1 else "")
    return ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])


def param_type(p: Any) -> str:
    """The value as a user types it: `path`, `int ≥ 1`, `'hf' | 'onnx'`; a flag takes none."""
    if getattr(p, "is_flag", False):
        return "flag"
    desc = p.type_descriptor
    annotation = desc.annotation
    if typing.get_origin(annotation) in (list, tuple):  # repeated: the element's type
        annotation = typing.get_args(annotation)[0]
    if desc.choices is not None:
        name = " | ".join(repr(c.value if isinstance(c, Enum) else c) for c in desc.choices)
    else:
        name = value_name(annotation)
        if p.min is not None and p.max is not None:
            name = f"{p.min} ≤ {name} ≤ {p.max}"
        elif p.min is not None:
            name = f"{name} ≥ {p.min}"
        elif p.max is not None:
            name = f"{name} ≤ {p.max}"
    if p.multiple:
        return f"{name}, repeatable"
    if p.nargs == -1:
        return f"{name}, any number"
    return name


def value_name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    return {str: "text", int: "int", float: "float", bool: "bool"}.get(annotation, getattr(annotation, "__name__",
                                                                                            str(annotation)))


def param_default(p: Any) -> str:
    if p.required:
        return "required"
    default = p.default
    if getattr(p, "is_flag", False) and not p.secondary_opts:
        return "off" if not default else "on"
    if default is None or default in ((), []):
        return ""
    if isinstance(default, Enum):
        default = default.value
    return f"`{default}`"


def paragraphs(text: str) -> str:
    """A docstring as markdown: its paragraphs, each joined into one line."""
    blocks = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(escape(" ".join(block.split())) for block in blocks).strip()


def summary(text: str) -> str:
    """A docstring's first paragraph."""
    return inspect.cleandoc(text).split("\n\n")[0]


def cell(text: str) -> str:
    """Text for one markdown table cell."""
    return escape(" ".join(text.split())).replace("|", "\\|")


def escape(text: str) -> str:
    """Help text is plain: `<output_dir>` must not read as an HTML tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


if __name__ == "__main__":
    print(cli_reference(), end="")
