"""Cost model: parameters, MACs, weight and activation bytes per node and in total.

Shapes come from ONNX shape inference. MACs count multiply-accumulates of the compute-heavy
operators (Conv, ConvTranspose, Gemm, MatMul and their quantized forms); element-wise operators
count zero MACs but their activations count in ``activation_bytes``. Parameters are counted once
per initializer, however many nodes read it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import onnx_ir as ir

from graphopt.shapes import infer_shapes as run_shape_inference
from graphopt.shapes import missing_shapes

__all__ = ["NodeCost", "ModelCost", "model_cost", "register_macs"]

_MacFn = Callable[[ir.Node], int]
_MAC_RULES: dict[str, _MacFn] = {}


@dataclasses.dataclass(frozen=True)
class NodeCost:
    name: str
    op_type: str
    params: int
    macs: int
    weight_bytes: int
    activation_bytes: int


@dataclasses.dataclass(frozen=True)
class ModelCost:
    nodes: int
    params: int
    macs: int
    weight_bytes: int
    activation_bytes: int
    per_node: tuple[NodeCost, ...]

    def to_dict(self, *, per_node: bool = False) -> dict:
        data = {
            "nodes": self.nodes,
            "params": self.params,
            "macs": self.macs,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
        }
        if per_node:
            data["per_node"] = [dataclasses.asdict(n) for n in self.per_node]
        return data


def register_macs(*op_types: str):
    """Register a MAC counter for operator types (a function ``node -> int``)."""

    def decorate(fn: _MacFn) -> _MacFn:
        for op_type in op_types:
            _MAC_RULES[op_type] = fn
        return fn

    return decorate


def _dims(value: ir.Value | None) -> list[int] | None:
    if value is None or value.shape is None:
        return None
    dims = [d if isinstance(d, int) else 1 for d in value.shape]
    return dims


def _numel(dims: list[int] | None) -> int:
    return math.prod(dims) if dims is not None else 0


@register_macs("Conv", "QLinearConv", "ConvInteger")
def _conv_macs(node: ir.Node) -> int:
    weight_index = 3 if node.op_type == "QLinearConv" else 1
    weight = _dims(node.inputs[weight_index])
    out = _dims(node.outputs[0])
    if weight is None or out is None or len(weight) < 2:
        return 0
    # out elements x (Cin / groups) x kernel size: the weight's dims after Cout.
    return _numel(out) * math.prod(weight[1:])


@register_macs("ConvTranspose")
def _conv_transpose_macs(node: ir.Node) -> int:
    weight = _dims(node.inputs[1])
    x = _dims(node.inputs[0])
    if weight is None or x is None:
        return 0
    # Every input element is multiplied into (Cout / groups) x kernel outputs.
    return _numel(x) * math.prod(weight[1:])


@register_macs("Gemm")
def _gemm_macs(node: ir.Node) -> int:
    a, b = _dims(node.inputs[0]), _dims(node.inputs[1])
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return 0
    trans_a = node.attributes.get_int("transA", 0)
    trans_b = node.attributes.get_int("transB", 0)
    m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
    n = b[0] if trans_b else b[1]
    return m * k * n


@register_macs("MatMul", "MatMulInteger", "QLinearMatMul")
def _matmul_macs(node: ir.Node) -> int:
    b_index = 3 if node.op_type == "QLinearMatMul" else 1
    a, b, out = _dims(node.inputs[0]), _dims(node.inputs[b_index]), _dims(node.outputs[0])
    if a is None or b is None or out is None or not a:
        return 0
    k = a[-1]
    return _numel(out) * k


def _initializer_inputs(node: ir.Node) -> list[ir.Value]:
    return [v for v in node.inputs if v is not None and v.const_value is not None]


def _bytes_of(value: ir.Value) -> int:
    dims = _dims(value)
    if dims is None or value.dtype is None:
        return 0
    return math.ceil(_numel(dims) * value.dtype.itemsize)


def _tensor_size(value: ir.Value) -> tuple[int, int]:
    """(elements, bytes) of an initializer, from the value's static shape when it has one."""
    tensor = value.const_value
    shape = value.shape
    if shape is not None and value.dtype is not None and all(isinstance(d, int) for d in shape):
        size = math.prod(shape)
        return size, math.ceil(size * value.dtype.itemsize)
    return tensor.size, tensor.nbytes


def model_cost(model: ir.Model, *, infer_shapes: bool = True) -> ModelCost:
    """Cost of ``model``'s main graph (shape inference fills in missing shapes first)."""
    if infer_shapes and missing_shapes(model.graph):
        run_shape_inference(model)
    counted: set[int] = set()
    per_node = []
    for node in model.graph:
        params = weight_bytes = 0
        for value in _initializer_inputs(node):
            if id(value) in counted:
                continue
            counted.add(id(value))
            size, nbytes = _tensor_size(value)
            params += size
            weight_bytes += nbytes
        rule = _MAC_RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        macs = rule(node) if rule is not None else 0
        activation_bytes = sum(_bytes_of(v) for v in node.outputs)
        per_node.append(
            NodeCost(node.name or "", node.op_type, params, macs, weight_bytes, activation_bytes)
        )
    # Initializers read only by graph outputs or by nothing still occupy the file.
    for value in model.graph.initializers.values():
        if id(value) not in counted and value.const_value is not None:
            size, nbytes = _tensor_size(value)
            per_node.append(NodeCost(value.name or "", "<initializer>", size, 0, nbytes, 0))
    real_nodes = [n for n in per_node if n.op_type != "<initializer>"]
    return ModelCost(
        nodes=len(real_nodes),
        params=sum(n.params for n in per_node),
        macs=sum(n.macs for n in per_node),
        weight_bytes=sum(n.weight_bytes for n in per_node),
        activation_bytes=sum(n.activation_bytes for n in per_node),
        per_node=tuple(per_node),
    )
