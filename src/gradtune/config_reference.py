"""docs/config.md, generated from the config schema so the docs cannot drift from the code:
`python -m gradtune.config > docs/config.md` (a test checks the file is current)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gradtune.config import Config


def config_reference() -> str:
    """docs/config.md, generated from the schema so the docs cannot drift from the code."""
    lines = ["# Config reference", "",
             "Generated from `gradtune/config.py` (`python -m gradtune.config > docs/config.md`).",
             "Every key can be set in the YAML file or on the command line as `section.key=value`.", ""]
    is_section = lambda f: isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, f in Config.model_fields.items():
        if not is_section(f):
            lines.append(f"| `{name}` | {_type_name(f.annotation)} | `{f.default}` | {f.description or ''} |")
    for section_name, f in Config.model_fields.items():
        if not is_section(f):
            continue
        section = f.annotation
        lines += ["", f"## `{section_name}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, f in section.model_fields.items():
            default = "required" if f.is_required() else f"`{f.default}`"
            kind = _type_name(f.annotation)
            lines.append(f"| `{section_name}.{name}` | {kind} | {default} | {f.description or ''} |")
    return "\n".join(lines) + "\n"


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return text.replace("|", "\\|")
