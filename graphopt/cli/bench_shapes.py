"""``graphopt bench --shape``: every model measured at known input shapes.

A model with dynamic input dims is measured through a copy whose inputs are fixed (the
``--shape`` given, else the defaults random inputs use, the batch axis left to
``--batch-size``), so that the timed inputs, the cost model and the compute-bound energy all
see the same sizes. The copies live in a scratch folder removed when the command ends; the
results are labelled with the model as the user wrote it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from graphopt.errors import GraphoptError
from graphopt.feeds import concrete_dims, model_inputs
from graphopt.input_shapes import UsedShape, fix_input_shapes, used_shapes
from graphopt.model_io import resolve_model, save_model, zoo_name

__all__ = ["ShapedModels", "shaped_models"]


@dataclasses.dataclass
class ShapedModels:
    """What to measure (``paths``, one per model), the labels to show for the copies, the
    shapes each model is measured at, and the dims that were defaulted."""

    paths: list[str]
    labels: dict[str, str]
    shapes: dict[str, list[UsedShape]]
    shown: set[str] = dataclasses.field(default_factory=set)  # dynamic or --shape: printed

    def relabel(self, data: object) -> object:
        """``data`` (strings, lists, dicts) with every copy's path replaced by its label."""
        if isinstance(data, str):
            for path, label in self.labels.items():
                data = data.replace(path, label)
            return data
        if isinstance(data, Mapping):
            return {key: self.relabel(value) for key, value in data.items()}
        if isinstance(data, list | tuple):
            return [self.relabel(value) for value in data]
        return data


def shaped_models(models: Sequence[str], shapes: Mapping[str, tuple[int, ...]], *,
                  batch_size: int, scratch: Path) -> ShapedModels:
    """Copies with fixed input shapes for the models that need them (see module docstring)."""
    result = ShapedModels(paths=[], labels={}, shapes={})
    used_names = set()
    for index, spec in enumerate(models):
        try:
            model = resolve_model(spec)
        except GraphoptError:
            if len(models) == 1:
                raise
            result.paths.append(spec)  # measured as given: its failure is recorded there
            continue
        inputs = {v.name: v for v in model_inputs(model)}
        fixed = {name: dims for name, dims in shapes.items() if name in inputs}
        used_names |= set(fixed)
        for name, value in inputs.items():
            if name in fixed or value.shape is None:
                continue
            if any(not isinstance(d, int) for d in list(value.shape)[1:]):
                dims = concrete_dims(value.shape, batch_size)
                fixed[name] = (None, *dims[1:])  # the batch axis stays --batch-size's
        shown = used_shapes(model, batch_size=batch_size)
        if fixed:
            result.shown.add(spec)
            defaulted = {s.name: s.defaulted for s in shown}
            _fix(model, fixed)
            name = zoo_name(spec) or Path(spec).stem
            path = scratch / str(index) / f"{name}.onnx"
            save_model(model, path)
            result.labels[os.fspath(path)] = spec
            result.paths.append(os.fspath(path))
            shown = [dataclasses.replace(s, defaulted=() if s.name in shapes else
                                         defaulted.get(s.name, ()))
                     for s in used_shapes(model, batch_size=batch_size)]
        else:
            result.paths.append(spec)
        result.shapes[spec] = shown
    unknown = sorted(set(shapes) - used_names)
    if unknown:
        raise GraphoptError(f"--shape {unknown[0]}: no model has an input of that name")
    return result


def _fix(model, fixed: Mapping[str, tuple]) -> None:
    """Fix the given dims; ``None`` in a tuple keeps that axis as the model has it."""
    import onnx_ir as ir

    inputs = {v.name: v for v in model_inputs(model)}
    given = {}
    for name, dims in fixed.items():
        if None in dims:
            old = list(inputs[name].shape)
            inputs[name].shape = ir.Shape([o if d is None else d
                                           for o, d in zip(old, dims, strict=True)])
        else:
            given[name] = dims
    if not fix_input_shapes(model, given):
        from graphopt.shapes import refresh_shapes

        refresh_shapes(model)
