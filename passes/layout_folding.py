"""Fast constant folding of data-movement operators on initializers, in numpy.

Unsqueeze, Squeeze, Reshape, Flatten, Transpose, Cast and Identity applied to initializers
(as legacy exporters write per-channel constants: ``Unsqueeze(bn_scale, [1, 2])``) are computed
directly; onnxscript's general folder then only sees what is left. Inputs must be initializers
that are not graph inputs, and graph outputs are never folded away.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

__all__ = ["fold_layout_constants"]

_Fold = Callable[[ir.Node, list[np.ndarray]], np.ndarray | None]
_FOLDS: dict[str, _Fold] = {}
_MAX_ELEMENTS = 1 << 24


def _fold(op_type: str):
    def decorate(fn: _Fold) -> _Fold:
        _FOLDS[op_type] = fn
        return fn

    return decorate


def _axes(node: ir.Node, arrays: list[np.ndarray]) -> list[int] | None:
    if len(arrays) > 1:
        return [int(a) for a in arrays[1].ravel()]
    attr = node.attributes.get("axes")
    return list(attr.as_ints()) if attr is not None else None


@_fold("Unsqueeze")
def _unsqueeze(node, arrays):
    axes = _axes(node, arrays)
    if axes is None:
        return None
    rank = arrays[0].ndim + len(axes)
    return np.expand_dims(arrays[0], tuple(sorted(a % rank for a in axes)))


@_fold("Squeeze")
def _squeeze(node, arrays):
    axes = _axes(node, arrays)
    data = arrays[0]
    if axes is None:
        return np.squeeze(data)
    return np.squeeze(data, axis=tuple(a % data.ndim for a in axes))


@_fold("Reshape")
def _reshape(node, arrays):
    if len(arrays) < 2:
        return None
    data, shape = arrays[0], [int(d) for d in arrays[1].ravel()]
    if node.attributes.get_int("allowzero", 0) == 0:
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return data.reshape(shape)


@_fold("Flatten")
def _flatten(node, arrays):
    data = arrays[0]
    axis = node.attributes.get_int("axis", 1) % (data.ndim + 1) if data.ndim else 0
    rows = int(np.prod(data.shape[:axis], dtype=np.int64))
    return data.reshape(rows, -1) if data.size else data.reshape(rows, 0)


@_fold("Transpose")
def _transpose(node, arrays):
    perm = node.attributes.get("perm")
    return np.transpose(arrays[0], list(perm.as_ints()) if perm is not None else None)


@_fold("Cast")
def _cast(node, arrays):
    target = ir.DataType(node.attributes.get_int("to", 0))
    if not (target.is_floating_point() or target.is_integer()) or target.itemsize < 1:
        return None
    try:
        return arrays[0].astype(target.numpy())
    except TypeError:
        return None


@_fold("Identity")
def _identity(node, arrays):
    return arrays[0]


def _constant_inputs(node: ir.Node) -> list[np.ndarray] | None:
    arrays = []
    for value in node.inputs:
        if value is None or value.const_value is None or value.is_graph_input():
            return None
        if value.const_value.size > _MAX_ELEMENTS:
            return None
        arrays.append(value.const_value.numpy())
    return arrays


def fold_layout_constants(model: ir.Model) -> int:
    """Fold data-movement nodes on initializers into new initializers; returns nodes folded."""
    graph = model.graph
    folded = 0
    for node in list(graph):
        fold = _FOLDS.get(node.op_type)
        output = node.outputs[0] if node.outputs else None
        if fold is None or node.domain not in ("", "ai.onnx") or output is None:
            continue
        if output.is_graph_output() or len(node.outputs) != 1:
            continue
        arrays = _constant_inputs(node)
        if arrays is None:
            continue
        try:
            result = fold(node, arrays)
        except (ValueError, IndexError):
            continue  # malformed attributes: leave the node for the general folder to judge
        if result is None:
            continue
        result = np.ascontiguousarray(result)
        name = output.name or f"{node.name}_folded"
        output.name = None
        value = ir.Value(
            name=name,
            shape=ir.Shape(result.shape),
            type=ir.TensorType(ir.DataType.from_numpy(result.dtype)),
            const_value=ir.Tensor(result, name=name),
        )
        graph.register_initializer(value)
        output.replace_all_uses_with(value)
        graph.remove(node, safe=True)
        folded += 1
    return folded
