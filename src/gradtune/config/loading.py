"""Loading a config: one YAML file plus `key=value` dotted overrides, validated against the schema.
Every error names the key's full path, with a "did you mean" suggestion, so that a typo never
silently falls back to a default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from gradtune.config.checks import did_you_mean
from gradtune.config.schema import Config
from gradtune.errors import GradtuneError


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema class that owns the key at `loc` (for suggestions)."""
    section: type[BaseModel] = Config
    for part in loc[:-1]:
        field = section.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        section = annotation
    return section


def _choices(loc: tuple[Any, ...]) -> list[str]:
    """The names a Literal key at `loc` accepts (for a "did you mean")."""
    section = _section_at(loc)
    field = section.model_fields.get(str(loc[-1])) if section else None
    found: list[str] = []
    todo = [field.annotation] if field else []
    while todo:
        annotation = todo.pop()
        if get_origin(annotation) is Literal:
            found += [str(a) for a in get_args(annotation)]
        else:
            todo += list(get_args(annotation))
    return found


def _key_of(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The config key an error is about: the field names of `loc` (and a list item's index), without
    the tags pydantic adds for the members of a union (`literal['epoch']`, `int`)."""
    section: Any = Config
    key: list[Any] = []
    for part in loc:
        if isinstance(part, str) and section is not None and part in section.model_fields:
            key.append(part)
            annotation = section.model_fields[part].annotation
            section = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        elif isinstance(part, int) and section is None and key:
            key.append(part)  # an item of a list value
        else:
            break
    return tuple(key)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in err.errors():  # a value that fits no member of a union gives one error per member: one line
        loc = e["loc"] if e["type"] == "extra_forbidden" else _key_of(e["loc"])
        grouped.setdefault(tuple(loc), []).append(e)
    for loc, errors in grouped.items():
        e = errors[0]
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] in ("model_type", "model_attributes_type", "dict_type"):  # a value where a section belongs
            section = _section_at((*loc, "key"))
            example = next(iter(section.model_fields)) if section else "key"
            lines.append(f"  {key}: is a section of keys, not a value (got {e.get('input')!r}); set one of its keys, "
                         f"e.g. {key}.{example}=...")
        elif e["type"] == "extra_forbidden":
            section = _section_at(loc)
            hint = did_you_mean(loc[-1], list(section.model_fields)) if section else ""
            lines.append(f"  {key}: unknown key{hint}")
        elif not loc or _section_at((*loc, "key")) is not None:  # loc names a section
            # a check across keys (of the config or a section): its message names them, and the
            # input is the whole mapping
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
        else:
            wants = list(dict.fromkeys(x["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
                                       for x in errors))
            msg = wants[0] if len(errors) == 1 else "Input should be " + " or ".join(w.split(",")[0] for w in wants)
            if len(errors) == 1 and e["msg"].startswith("Input should be "):
                msg = e["msg"]
            if any(x["type"] == "literal_error" for x in errors):  # one of a fixed set of names: suggest the closest
                msg += did_you_mean(e.get("input"), _choices(loc))
            lines.append(f"  {key}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["train.lr=3e-5", "data.train=x.csv"]` -> nested dict; values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise GradtuneError(f"override {pair!r} is not key=value (example: train.lr=3e-5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:  # not a YAML value (":", "[1, 2"): the text as typed, for the schema to judge
            value = raw
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise GradtuneError(f"override {pair!r} conflicts with another override")
        node[leaf] = value
    return nested


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_config(raw: dict[str, Any], overrides: list[str] | None = None, source: str = "config") -> Config:
    data = _deep_merge(raw, parse_overrides(overrides or []))
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise GradtuneError(_format_errors(err, source)) from None


def _duplicate_key(node: yaml.Node, path: str = "") -> tuple[str, int, int] | None:
    """The first key written twice in one mapping of a YAML document (PyYAML silently keeps the
    last), as (dotted key, first line, second line)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen:
                return f"{path}{key}", seen[key], line
            seen[key] = line
            found = _duplicate_key(value_node, f"{path}{key}.")
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item, path)
            if found:
                return found
    return None


def read_yaml(path: Path) -> Any:
    """A YAML file's content; an error names the line of a syntax error or of a key written twice."""
    text = path.read_text(encoding="utf-8")
    try:
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        if duplicate:
            key, first, second = duplicate
            raise GradtuneError(f"{path}: {key} is set twice, on line {first} and on line {second}; YAML would keep "
                                "only the last: keep one")
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise GradtuneError(f"{path}{where}: not valid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise GradtuneError(f"{path}: not valid YAML: {err}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply dotted overrides, validate. Relative data paths stay relative
    to the current directory (as the user typed them)."""
    path = Path(path)
    if path.is_dir():
        raise GradtuneError(f"{path} is a folder; give the config's YAML file")
    if not path.is_file():
        raise GradtuneError(f"config file not found: {path} (looked for {path.resolve()})")
    try:
        raw = read_yaml(path) or {}
    except UnicodeDecodeError as err:
        raise GradtuneError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x}); re-save it as UTF-8") \
            from None
    if not isinstance(raw, dict):
        raise GradtuneError(f"{path}: the top level must be a mapping of sections (task, model, ...)")
    return build_config(raw, overrides, source=str(path))


def as_config(config: Config | dict[str, Any] | str | Path, overrides: list[str] | None = None) -> Config:
    """Accept what users pass to the Python API: a Config, a dict, or a path to YAML."""
    if isinstance(config, Config):
        if not overrides:
            return config
        raw = config.model_dump(mode="json")
        for key in config._filled:  # back to null: the (new) task's defaults again
            section, name = key.split(".")
            raw[section][name] = None
        return build_config(raw, overrides)
    if isinstance(config, dict):
        return build_config(config, overrides)
    return load_config(config, overrides)
