"""docs/config.md, generated from the config schema so that the docs cannot drift from the code:
`python -m gradtune.config.reference > docs/config.md` (a test checks the file is current)."""

from __future__ import annotations

import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from gradtune.config.schema import Config


def config_reference() -> str:
    lines = ["# Config reference", "",
             "Generated from `gradtune/config/schema.py` (`python -m gradtune.config.reference > docs/config.md`).",
             "Every key can be set in the YAML file or on the command line as `section.key=value`.", ""]
    is_section = lambda f: isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, f in Config.model_fields.items():
        if not is_section(f):
            lines.append(f"| `{name}` | {type_name(f.annotation)} | `{value(f.default)}` | {f.description or ''} |")
    for section_name, f in Config.model_fields.items():
        if not is_section(f):
            continue
        lines += ["", f"## `{section_name}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in f.annotation.model_fields.items():
            default = "required" if field.is_required() else f"`{value(field.get_default(call_default_factory=True))}`"
            lines.append(f"| `{section_name}.{name}` | {type_name(field.annotation)} | {default} | "
                         f"{field.description or ''} |")
    return "\n".join(lines) + "\n"


def value(default: Any) -> str:
    """A default as it is written in YAML: null, true, [0.9, 0.999]."""
    return yaml.safe_dump(list(default) if isinstance(default, tuple) else default, default_flow_style=True,
                          width=1000).strip().removesuffix("...").strip()


def type_name(annotation: Any) -> str:
    """A type as a user writes the value: `list[int]`, `'epoch' \\| int`, `float \\| null`."""
    return _name(annotation).replace("|", "\\|")


def _name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # constraints (ge=1, ...) live in the meaning, not the type
        return _name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_name(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_name(a) for a in args)}]"
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


if __name__ == "__main__":
    print(config_reference(), end="")
