"""docs/config.md, generated from the config schema so that the docs cannot drift from the code:
`python -m gradtune.config.reference > docs/config.md` (a test checks the file is current)."""

from __future__ import annotations

import types
import typing
from typing import Any

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from gradtune.config.schema import Config

# pydantic's Field(ge=..., gt=..., le=..., lt=...) constraint -> its attribute and how the docs write it
_BOUNDS = {Ge: ("ge", "≥"), Gt: ("gt", ">"), Le: ("le", "≤"), Lt: ("lt", "<")}


def config_reference() -> str:
    lines = ["# Config reference", "",
             "Generated from `gradtune/config/schema.py` (`python -m gradtune.config.reference > docs/config.md`).",
             "Every key can be set in the YAML file or on the command line as `section.key=value`.", ""]
    is_section = lambda f: isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, f in Config.model_fields.items():
        if not is_section(f):
            lines.append(f"| `{name}` | {type_name(f.annotation, f.metadata)} | `{value(f.default)}` | "
                         f"{f.description or ''} |")
    for section_name, f in Config.model_fields.items():
        if not is_section(f):
            continue
        lines += ["", f"## `{section_name}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in f.annotation.model_fields.items():
            default = "required" if field.is_required() else f"`{value(field.get_default(call_default_factory=True))}`"
            lines.append(f"| `{section_name}.{name}` | {type_name(field.annotation, field.metadata)} | {default} | "
                         f"{field.description or ''} |")
    return "\n".join(lines) + "\n"


def value(default: Any) -> str:
    """A default as it is written in YAML: null, true, [0.9, 0.999]."""
    return yaml.safe_dump(list(default) if isinstance(default, tuple) else default, default_flow_style=True,
                          width=1000).strip().removesuffix("...").strip()


def type_name(annotation: Any, constraints: list[Any] | tuple = ()) -> str:
    """A type as a user writes the value: `list[int]`, `'epoch' \\| int`, `0 ≤ float < 1 \\| null`, `mapping`.
    `constraints` are a field's bounds (Field(ge=..., lt=...)); they go to its numbers."""
    return _name(annotation, list(constraints)).replace("|", "\\|")


def _name(annotation: Any, constraints: list[Any]) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # list[Annotated[int, Field(ge=1)]]: the bounds of the list's items
        inner = [m for a in args[1:] for m in getattr(a, "metadata", [a])]
        return _name(args[0], constraints + inner)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_name(a, constraints) for a in args)
    if origin is dict:  # YAML's word; keys are always strings
        return "mapping" if args[1] is Any else f"mapping[{_name(args[0], [])}, {_name(args[1], [])}]"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_name(a, []) for a in args)}]"
    if annotation is type(None):
        return "null"
    name = getattr(annotation, "__name__", str(annotation))
    return _bounded(name, constraints) if annotation in (int, float) else name


def _bounded(name: str, constraints: list[Any]) -> str:
    """`int ≥ 1`, `float > 0`, `8 ≤ int ≤ 8192`, `0 ≤ float < 1`."""
    bounds = {_BOUNDS[type(c)][1]: getattr(c, _BOUNDS[type(c)][0]) for c in constraints if type(c) in _BOUNDS}
    low = next(((sign, v) for sign, v in bounds.items() if sign in "≥>"), None)
    high = next(((sign, v) for sign, v in bounds.items() if sign in "≤<"), None)
    if low and high:  # a range reads left to right
        return f"{low[1]} {'≤' if low[0] == '≥' else '<'} {name} {high[0]} {high[1]}"
    bound = low or high
    return f"{name} {bound[0]} {bound[1]}" if bound else name


if __name__ == "__main__":
    print(config_reference(), end="")
