"""``--shape NAME:1x3x224x224``: input shapes fixed by the user, and the dims left to defaults.

As trtexec ``--shapes`` and onnxsim ``--overwrite-input-shape``: :func:`parse_shapes` reads
``NAME:DIMS`` items (repeated options or comma-separated), :func:`fix_input_shapes` writes
them onto the model's inputs (names, ranks and static dims checked; shapes downstream
re-inferred), so that verification, the cost model (MACs, the energy bound) and benchmarks all
see the same sizes. :func:`used_shapes` says what random inputs of a model will be and which
dims were defaulted because they are dynamic (:mod:`graphopt.feeds` picks batch for axis 0,
32 for spatial axes, 1 otherwise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import onnx_ir as ir

from graphopt.errors import GraphoptError
from graphopt.feeds import concrete_dims, model_inputs

__all__ = ["UsedShape", "parse_shapes", "fix_input_shapes", "used_shapes", "shapes_text",
           "defaulted_warning"]

SYNTAX = "NAME:DIMS, e.g. data:1x3x224x224 (several: repeat --shape or separate by commas)"


def parse_shapes(texts: Iterable[str] | None) -> dict[str, tuple[int, ...]]:
    """``["data:1x3x224x224", "a:1x4,b:2"]`` -> ``{"data": (1, 3, 224, 224), ...}``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts or ():
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, dims_text = item.rpartition(":")
            if not sep or not name:
                raise GraphoptError(f"--shape {item!r}: expected {SYNTAX}")
            try:
                dims = tuple(int(d) for d in dims_text.lower().split("x"))
            except ValueError:
                raise GraphoptError(f"--shape {item!r}: dims must be whole numbers separated"
                                    f" by x; expected {SYNTAX}") from None
            if any(d < 1 for d in dims):
                raise GraphoptError(f"--shape {item!r}: every dim must be at least 1")
            if name in shapes and shapes[name] != dims:
                raise GraphoptError(f"--shape {name}: given twice ({_dims(shapes[name])} and"
                                    f" {_dims(dims)})")
            shapes[name] = dims
    return shapes


def _dims(dims: Iterable[object]) -> str:
    return "x".join(str(d) if d is not None else "?" for d in dims)


def fix_input_shapes(model: ir.Model, shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """Write ``shapes`` onto the model's inputs in place; True if a shape changed."""
    if not shapes:
        return False
    from graphopt.shapes import refresh_shapes

    inputs = {v.name: v for v in model_inputs(model)}
    unknown = [name for name in shapes if name not in inputs]
    if unknown:
        raise GraphoptError(f"--shape {unknown[0]}: the model has no input of that name"
                            f" (inputs: {', '.join(inputs)})")
    changed = False
    for name, dims in shapes.items():
        value = inputs[name]
        if value.shape is not None:
            if len(value.shape) != len(dims):
                raise GraphoptError(f"--shape {name}:{_dims(dims)}: input {name!r} has rank"
                                    f" {len(value.shape)} ({_dims(_text_dims(value.shape))})")
            for axis, (old, new) in enumerate(zip(value.shape, dims, strict=True)):
                if isinstance(old, int) and old != new:
                    raise GraphoptError(
                        f"--shape {name}:{_dims(dims)}: axis {axis} of {name!r} is fixed at"
                        f" {old} ({_dims(_text_dims(value.shape))})")
        if value.shape is None or tuple(value.shape) != dims:
            value.shape = ir.Shape(list(dims))
            changed = True
    if changed:
        refresh_shapes(model)
    return changed


def _text_dims(shape: ir.Shape) -> list[object]:
    return [d if isinstance(d, int) else (str(d) if str(d) not in ("", "None") else None)
            for d in shape]


@dataclasses.dataclass(frozen=True)
class UsedShape:
    """The dims random inputs of one input get; ``defaulted`` names the dynamic axes."""

    name: str
    dims: tuple[int, ...]
    defaulted: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"dims": list(self.dims), "defaulted": list(self.defaulted)}


def used_shapes(model: ir.Model, *, batch_size: int = 1) -> list[UsedShape]:
    """The shape each input's random data gets, and which dynamic dims past the batch axis
    were defaulted."""
    result = []
    for value in model_inputs(model):
        if value.shape is None:
            continue
        dims = concrete_dims(value.shape, batch_size)
        defaulted = tuple(  # the batch axis follows batch_size: not a default to warn of
            f"{d if str(d) not in ('', 'None') else f'axis {axis}'}={dims[axis]}"
            for axis, d in enumerate(value.shape) if axis > 0 and not isinstance(d, int))
        result.append(UsedShape(value.name, dims, defaulted))
    return result


def shapes_text(shapes: Iterable[UsedShape]) -> str:
    """``data 1x3x224x224, mask 1x16`` for a line of output."""
    return ", ".join(f"{s.name} {_dims(s.dims)}" for s in shapes)


def defaulted_warning(model_label: str, shapes: Iterable[UsedShape]) -> str | None:
    """A warning naming dims that were defaulted (``None`` when every dim was fixed)."""
    parts = [f"{s.name} ({', '.join(s.defaulted)})" for s in shapes if s.defaulted]
    if not parts:
        return None
    example = next(s for s in shapes if s.defaulted)
    return (f"{model_label}: dynamic input dims set by default: {'; '.join(parts)}; give the"
            f" size you use with --shape {example.name}:DIMS (now {_dims(example.dims)})")
