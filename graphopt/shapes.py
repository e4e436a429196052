"""Shape inference for onnx-ir models without copying weights.

onnx's C++ shape inference runs on a weightless copy of the graph (large initializers become
unread external-data stand-ins) and the inferred types are written back onto the IR values by
name. Values that already have a shape keep it unless inference found a more precise one.
"""

from __future__ import annotations

import logging

import onnx
import onnx_ir as ir

from graphopt.passes_support import weightless_proto

__all__ = ["infer_shapes", "missing_shapes", "refresh_shapes"]

logger = logging.getLogger(__name__)


def missing_shapes(graph: ir.Graph) -> bool:
    """True if some node output that anything reads has no shape or type yet."""
    return any(
        value.shape is None or value.dtype is None
        for node in graph
        for value in node.outputs
        if value.uses() or value.is_graph_output()  # unused optional outputs do not count
    )


def _shape_of(type_proto: onnx.TypeProto) -> tuple[ir.DataType, ir.Shape | None] | None:
    if not type_proto.HasField("tensor_type"):
        return None
    tensor_type = type_proto.tensor_type
    if not tensor_type.HasField("shape"):
        return ir.DataType(tensor_type.elem_type), None
    dims = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in tensor_type.shape.dim
    ]
    return ir.DataType(tensor_type.elem_type), ir.Shape(dims)


def infer_shapes(model: ir.Model) -> int:
    """Fill in shapes and types of the main graph's values; returns how many were updated."""
    try:
        inferred = onnx.shape_inference.infer_shapes(weightless_proto(model), strict_mode=False)
    except Exception as exc:  # inference is best effort: costs then count what is known
        logger.info("shape inference failed: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return 0
    values = {v.name: v for node in model.graph for v in node.outputs if v.name}
    updated = 0
    for info in (*inferred.graph.value_info, *inferred.graph.output):
        value = values.get(info.name)
        found = _shape_of(info.type) if value is not None else None
        if found is None:
            continue
        dtype, shape = found
        if value.dtype is None and dtype != ir.DataType.UNDEFINED:
            value.dtype = dtype
            updated += 1
        if shape is not None and (value.shape is None or value.shape != shape):
            value.shape = shape
            updated += 1
    return updated


def refresh_shapes(model: ir.Model) -> int:
    """Re-infer the shapes of every node output after a rewrite changed some of them (a conv
    pruned from 16 to 8 channels changes every shape downstream). Values inference cannot
    type keep what they had. Returns how many values were updated."""
    stale = {}
    for node in model.graph:
        for value in node.outputs:
            if value.is_graph_output() or value.shape is None:
                continue
            stale[id(value)] = (value, value.shape)
            value.shape = None
    updated = infer_shapes(model)
    for value, shape in stale.values():
        if value.shape is None:
            value.shape = shape
        elif value.shape == shape:
            updated -= 1
    return updated
