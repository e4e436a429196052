"""``equalize``: cross-layer equalization (Nagel et al. 2019), for per-tensor-friendly weights.

Two layers ``y = W2 f(W1 x + b1) + b2`` with ``f`` positively homogeneous (ReLU, LeakyReLU,
PRelu, max / average pooling, zero padding: ``f(x / s) = f(x) / s`` for ``s > 0``) compute the
same thing after ``W1[i], b1[i] /= s_i`` and ``W2[:, i] *= s_i``. Choosing
``s_i = sqrt(r1_i / r2_i)`` (``r1_i``: largest magnitude in output channel ``i`` of ``W1``,
``r2_i``: in input channel ``i`` of ``W2``) gives both channels the same range, so an 8-bit grid
covers every channel of both weights and the activation between them more evenly.

Pairs are a Conv or Gemm with constant weights whose output reaches exactly one Conv (not
grouped) or Gemm through single-use homogeneous operators, nothing of it a graph output.
``rounds`` sweeps over all pairs repeat (a chain conv1 -> conv2 -> conv3 converges in a few).
Exact in real arithmetic; in float32 the outputs move by rounding only (checked as lossless).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from graphopt.errors import GraphoptError
from graphopt.pass_api import GraphPass, register_pass
from graphopt.passes.rewrite_utils import (
    constant_array,
    node_label,
    set_constant_input,
    single_consumer,
)

__all__ = ["EqualizePass", "HOMOGENEOUS_OPS", "equalization_pairs"]

HOMOGENEOUS_OPS = frozenset({"Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool",
                             "GlobalAveragePool", "Identity", "Dropout"})
"""Operators with ``f(x / s) = f(x) / s`` per channel for ``s > 0``."""
_MIN_RANGE = 1e-12


@dataclasses.dataclass
class _Pair:
    first: ir.Node
    second: ir.Node


def _weight_ok(node: ir.Node) -> bool:
    if node.op_type == "Conv":
        return (constant_array(node.inputs[1]) is not None
                and (len(node.inputs) < 3 or node.inputs[2] is None
                     or constant_array(node.inputs[2]) is not None))
    if node.op_type == "Gemm":
        return (node.attributes.get_int("transA", 0) == 0
                and constant_array(node.inputs[1]) is not None
                and (len(node.inputs) < 3 or node.inputs[2] is None
                     or constant_array(node.inputs[2]) is not None))
    return False


def _second_ok(node: ir.Node, value: ir.Value) -> bool:
    if not _weight_ok(node) or node.inputs[0] is not value:
        return False
    return node.op_type != "Conv" or node.attributes.get_int("group", 1) == 1


def equalization_pairs(model: ir.Model) -> list[_Pair]:
    """Every (first, second) layer pair joined by single-use homogeneous operators."""
    pairs = []
    for node in model.graph:
        if node.op_type not in ("Conv", "Gemm") or not _weight_ok(node):
            continue
        if node.op_type == "Conv" and node.attributes.get_int("group", 1) != 1:
            continue
        value = node.outputs[0]
        while True:
            reader = single_consumer(value)
            if reader is None:
                break
            if reader.op_type in HOMOGENEOUS_OPS and reader.inputs[0] is value and \
                    all(o is reader.outputs[0] or not o.uses() for o in reader.outputs):
                value = reader.outputs[0]
                continue
            if _second_ok(reader, value):
                pairs.append(_Pair(node, reader))
            break
    return pairs


def _rows(node: ir.Node, weight: np.ndarray) -> np.ndarray:
    """Output-channel-major view of a layer's weight: [outputs, ...]."""
    if node.op_type == "Gemm" and not node.attributes.get_int("transB", 0):
        return weight.T
    return weight


def _columns_axis(node: ir.Node) -> int:
    if node.op_type == "Gemm" and not node.attributes.get_int("transB", 0):
        return 0
    return 1


@register_pass("equalize")
@dataclasses.dataclass(kw_only=True)
class EqualizePass(GraphPass):
    """Cross-layer equalization of consecutive layers (exact up to float rounding)."""

    summary = "cross-layer equalization: equal per-channel weight ranges across layer pairs"
    lossless: ClassVar[bool] = True

    rounds: int = 2

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise GraphoptError(f"equalize: rounds must be at least 1, got {self.rounds}")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        pairs = equalization_pairs(model)
        modified = False
        for _ in range(self.rounds):
            for pair in pairs:
                modified |= self._equalize(pair)
        self.stats["pairs"] = len(pairs)
        if not pairs:
            self.explain("equalize: no pair of layers joined by homogeneous operators")
        return ir.passes.PassResult(model, modified=modified)

    def _equalize(self, pair: _Pair) -> bool:
        first, second = pair.first, pair.second
        w1 = constant_array(first.inputs[1])
        w2 = constant_array(second.inputs[1])
        rows1 = _rows(first, w1).astype(np.float64)
        axis2 = _columns_axis(second)
        channels = rows1.shape[0]
        bias = constant_array(first.inputs[2]) if len(first.inputs) > 2 and \
            first.inputs[2] is not None else None
        if bias is not None and bias.size != channels:
            self.explain(f"equalize: {node_label(first)}: its bias is not per channel")
            return False
        if w2.shape[axis2] != channels:
            self.explain(f"equalize: {node_label(first)} -> {node_label(second)}: channel"
                         " counts differ (a reshape between them)")
            return False
        r1 = np.abs(rows1.reshape(channels, -1)).max(axis=1)
        r2 = np.abs(np.moveaxis(w2.astype(np.float64), axis2, 0).reshape(channels, -1)).max(axis=1)
        scale = np.where((r1 > _MIN_RANGE) & (r2 > _MIN_RANGE),
                         np.sqrt(r1 / np.maximum(r2, _MIN_RANGE)), 1.0)
        if np.allclose(scale, 1.0, rtol=1e-6):
            return False
        view = (channels,) + (1,) * (rows1.ndim - 1)
        new_rows1 = rows1 / scale.reshape(view)
        new_w1 = (new_rows1.T if first.op_type == "Gemm" and not
                  first.attributes.get_int("transB", 0) else new_rows1)
        set_constant_input(first, 1, new_w1.astype(w1.dtype), f"{first.name}_w_equalized")
        if bias is not None:
            set_constant_input(first, 2, (bias / scale.reshape(bias.shape)).astype(bias.dtype),
                               f"{first.name}_b_equalized")
        shape2 = [1] * w2.ndim
        shape2[axis2] = channels
        new_w2 = w2.astype(np.float64) * scale.reshape(shape2)
        set_constant_input(second, 1, new_w2.astype(w2.dtype), f"{second.name}_w_equalized")
        self.stats["channels_scaled"] += int(np.sum(~np.isclose(scale, 1.0)))
        return True
