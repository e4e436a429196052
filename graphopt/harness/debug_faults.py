"""Faults planted in one node, to check that ``graphopt debug`` finds them.

Each kind edits one constant of one node in place and nothing else:

- ``bias``: one channel's bias (a Conv/Gemm bias, a BatchNormalization's B, or the constant
  of an Add) moved by ``1.0`` (activations of the zoo models are of unit scale);
- ``swap``: output channels 0 and 1 of a Conv/Gemm/MatMul weight swapped;
- ``scale``: a Conv/Gemm/MatMul weight (or a BatchNormalization's scale) times 1.1.

Nodes are named as :class:`~graphopt.harness.debug_graph.PreparedModel` names them: the
node's name, or ``OP#INDEX`` (its position in the graph) when it has none.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphopt.errors import GraphoptError

__all__ = ["FAULT_KINDS", "fault_sites", "plant_fault", "node_label"]

FAULT_KINDS = ("bias", "swap", "scale")
_WEIGHTED = frozenset({"Conv", "Gemm", "MatMul"})
_SCALE = 1.1
_BIAS_SHIFT = 1.0


def node_label(node: ir.Node, index: int) -> str:
    return node.name or f"{node.op_type}#{index}"


def _constant(node: ir.Node, slot: int) -> ir.Value | None:
    if slot >= len(node.inputs):
        return None
    value = node.inputs[slot]
    if value is None or value.const_value is None:
        return None
    return value if value.const_value.dtype.is_floating_point() else None


def _target(node: ir.Node, kind: str) -> tuple[ir.Value, int] | None:
    """(constant to edit, output-channel axis) for ``kind`` on ``node``, or None."""
    op = node.op_type
    if kind in ("swap", "scale") and op in _WEIGHTED:
        weight = _constant(node, 1)
        if weight is None or len(weight.const_value.shape) < 2:
            return None
        axis = 1 if op == "MatMul" or (op == "Gemm" and not node.attributes.get_int(
            "transB", 0)) else 0
        return weight, axis
    if kind == "scale" and op == "BatchNormalization":
        scale = _constant(node, 1)
        return None if scale is None else (scale, 0)
    if kind == "bias":
        slot = {"Conv": 2, "Gemm": 2, "BatchNormalization": 2}.get(op)
        if op == "Add":
            slot = next((s for s in (1, 0) if _constant(node, s) is not None), None)
        bias = _constant(node, slot) if slot is not None else None
        if bias is None or bias.const_value.size < 2:
            return None
        return bias, bias.const_value.numpy().ndim - 1 if op == "Add" else 0
    return None


def fault_sites(model: ir.Model, kind: str) -> list[str]:
    """Labels of the nodes where ``kind`` can be planted, in graph order (constants that
    several nodes share are left out: the fault must sit in one node)."""
    if kind not in FAULT_KINDS:
        raise GraphoptError(f"unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
    sites = []
    for index, node in enumerate(model.graph):
        target = _target(node, kind)
        if target is not None and len(target[0].uses()) == 1:
            sites.append(node_label(node, index))
    return sites


def plant_fault(model: ir.Model, kind: str, node: str | None = None) -> str:
    """Plant ``kind`` in ``node`` (default: the middle site of :func:`fault_sites`), in
    place; returns the node's label."""
    sites = fault_sites(model, kind)
    if not sites:
        raise GraphoptError(f"the model has no node where a {kind!r} fault can be planted")
    label = node or sites[len(sites) // 2]
    if label not in sites:
        raise GraphoptError(f"cannot plant a {kind!r} fault in {label!r}")
    index, target = next((i, n) for i, n in enumerate(model.graph) if node_label(n, i) == label)
    value, axis = _target(target, kind)
    array = value.const_value.numpy().copy()
    if kind == "scale":
        array = array * np.asarray(_SCALE, array.dtype)
    elif kind == "swap":
        moved = np.moveaxis(array, axis, 0)
        moved[[0, 1]] = moved[[1, 0]]
        array = np.moveaxis(moved, 0, axis)
    else:
        moved = np.moveaxis(array, axis, 0)
        moved[0] += np.asarray(_BIAS_SHIFT, array.dtype)
        array = np.moveaxis(moved, 0, axis)
    value.const_value = ir.tensor(np.ascontiguousarray(array), name=value.name)
    return label
