"""Pipeline specs: ``"cleanup,fuse,quantize(method=entropy,per_channel=true)"`` -> passes.

A spec is a comma-separated list of items; an item is a pass name with optional keyword
arguments in parentheses, or a preset name (expanded in place). Values are converted to the
type of the pass's dataclass field; unknown names and options are errors.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal

from graphopt.errors import PipelineSpecError
from graphopt.pass_api import GraphPass, get_pass_class, get_preset

__all__ = ["parse_spec", "build_passes", "option_fields", "describe_type"]

_ITEM = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_MAX_PRESET_DEPTH = 8


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                raise PipelineSpecError(f"unbalanced parentheses in {text!r}")
        if char == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise PipelineSpecError(f"unbalanced parentheses in {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_spec(spec: str, _depth: int = 0) -> list[tuple[str, dict[str, str]]]:
    """Split a spec into ``(pass_name, raw_options)`` with presets expanded."""
    if _depth > _MAX_PRESET_DEPTH:
        raise PipelineSpecError(f"presets nest too deeply while expanding {spec!r}")
    items: list[tuple[str, dict[str, str]]] = []
    for item in _split_top_level(spec):
        if not item:
            raise PipelineSpecError(f"empty item in pipeline spec {spec!r}")
        match = _ITEM.match(item)
        if match is None:
            raise PipelineSpecError(f"cannot parse {item!r} (expected name or name(key=value,...))")
        name, args = match.group(1), match.group(2)
        preset = get_preset(name)
        if preset is not None:
            if args and args.strip():
                raise PipelineSpecError(f"preset {name!r} takes no options")
            items.extend(parse_spec(preset.spec, _depth + 1))
            continue
        options: dict[str, str] = {}
        for pair in _split_top_level(args) if args and args.strip() else []:
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                hint = (f" (a list goes in brackets: {list(options)[-1]}=[a,b])"
                        if options and key.strip() and not eq else "")
                raise PipelineSpecError(f"{name}: option {pair!r} is not key=value{hint}")
            options[key.strip()] = value.strip()
        items.append((name, options))
    return items


def option_fields(cls: type[GraphPass]) -> dict[str, tuple[Any, Any]]:
    """The pass's options: name -> (type, default)."""
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    return {
        f.name: (hints.get(f.name, str), f.default)
        for f in dataclasses.fields(cls)
        if f.init
    }


def describe_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(annotation))
    if origin in (tuple, list):
        (inner, *_) = typing.get_args(annotation) or (str,)
        return f"[{describe_type(inner)},...]"
    return getattr(annotation, "__name__", str(annotation))


def _convert(value: str, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if type(None) in args and value.lower() in {"none", "null"}:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except PipelineSpecError as exc:
                errors.append(str(exc))
        raise PipelineSpecError(errors[-1] if errors else f"{where}: bad value {value!r}")
    if origin is Literal:
        choices = typing.get_args(annotation)
        for choice in choices:
            if str(choice) == value:
                return choice
        raise PipelineSpecError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    if origin in (tuple, list):
        (inner, *_) = typing.get_args(annotation) or (str,)
        parts = [p for p in re.split(r"[;|,]", value.strip("[]")) if p.strip()]
        converted = [_convert(p.strip(), inner, where) for p in parts]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise PipelineSpecError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float):
        try:
            return annotation(value)
        except ValueError:
            raise PipelineSpecError(
                f"{where}: expected {annotation.__name__}, got {value!r}"
            ) from None
    if annotation is str:
        return value.strip("'\"")
    raise PipelineSpecError(f"{where}: options of type {annotation!r} cannot be set from a spec")


def instantiate(name: str, raw_options: dict[str, str]) -> GraphPass:
    """Create pass ``name`` with options given as strings."""
    cls = get_pass_class(name)
    fields = option_fields(cls)
    kwargs = {}
    for key, raw in raw_options.items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise PipelineSpecError(f"pass {name!r} has no option {key!r} (options: {known})")
        kwargs[key] = _convert(raw, fields[key][0], f"{name}({key}=...)")
    return cls(**kwargs)


def build_passes(spec: str) -> list[GraphPass]:
    """Passes for a spec string or preset name."""
    return [instantiate(name, options) for name, options in parse_spec(spec)]
