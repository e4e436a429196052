"""Cost model: parameters, MACs, weight and activation bytes per node and in total.

Shapes come from ONNX shape inference. MACs count multiply-accumulates of the compute-heavy
operators (Conv, ConvTranspose, Gemm, MatMul and their quantized forms); element-wise operators
count zero MACs but their activations count in ``activation_bytes``. Parameters are counted once
per initializer, however many nodes read it; bytes follow each weight's dtype (an fp16 weight
is half an fp32 one) and ``weight_bytes_by_dtype`` splits the total by dtype. Every MAC node
carries its arithmetic precision (:mod:`graphopt.precision`: ``int8``, ``int8-weights``,
``fp16`` ...), ``macs_by_precision`` splits the MACs by it and ``precision`` names the graph's.

Costs are addressable by node (``cost.of(node)``), since node names may be empty or repeated.
After a pass that changed shapes, ``model_cost(model, refresh_shapes=True)`` re-infers them
first, so a conv pruned from 16 to 8 channels shows its new MACs and so does its consumer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import onnx_ir as ir

from graphopt.precision import FLOAT_PRECISIONS, model_precision, node_precision
from graphopt.shapes import infer_shapes as run_shape_inference
from graphopt.shapes import missing_shapes
from graphopt.shapes import refresh_shapes as rerun_shape_inference

__all__ = ["NodeCost", "ModelCost", "model_cost", "register_macs", "float_precision"]

_MacFn = Callable[[ir.Node], int]
_MAC_RULES: dict[str, _MacFn] = {}


@dataclasses.dataclass(frozen=True)
class NodeCost:
    """Cost of one node (or, with ``op_type == "<initializer>"``, of a weight no node reads).

    ``weight_dtype`` is the dtype of the node's first counted weight (``""`` without one);
    ``precision`` classifies a MAC node (``int8``, ``int4-weights``, ``fp16`` ...) and
    ``arithmetic`` is what its multiply-accumulates run in (``int8`` or a float name); both
    are ``""`` for other nodes. ``node`` is the node itself, for lookups by identity.
    """

    name: str
    op_type: str
    params: int
    macs: int
    weight_bytes: int
    activation_bytes: int
    weight_dtype: str = ""
    precision: str = ""
    arithmetic: str = ""
    node: ir.Node | None = dataclasses.field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "node"}


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Totals and per-node costs; ``precision`` is the graph's (``""`` when not classified)."""

    nodes: int
    params: int
    macs: int
    weight_bytes: int
    activation_bytes: int
    per_node: tuple[NodeCost, ...]
    weight_bytes_by_dtype: dict[str, int] = dataclasses.field(default_factory=dict)
    precision: str = ""

    @property
    def macs_by_precision(self) -> dict[str, int]:
        """MACs per node precision (``int8``, ``int8-weights``, ``fp32`` ...)."""
        return _macs_by(self.per_node, "precision")

    @property
    def macs_by_arithmetic(self) -> dict[str, int]:
        """MACs per arithmetic precision (``int8`` or a float name)."""
        return _macs_by(self.per_node, "arithmetic")

    def of(self, node: ir.Node) -> NodeCost:
        """The cost of ``node`` (by identity; ``KeyError`` if it is not in this model)."""
        index = self.__dict__.get("_index")
        if index is None:
            index = {id(c.node): c for c in self.per_node if c.node is not None}
            object.__setattr__(self, "_index", index)
        try:
            return index[id(node)]
        except KeyError:
            raise KeyError(f"node {node.name or node.op_type!r} is not in this cost") from None

    def to_dict(self, *, per_node: bool = False) -> dict:
        data = {
            "nodes": self.nodes,
            "params": self.params,
            "macs": self.macs,
            "weight_bytes": self.weight_bytes,
            "weight_bytes_by_dtype": dict(self.weight_bytes_by_dtype),
            "activation_bytes": self.activation_bytes,
            "precision": self.precision,
            "macs_by_precision": self.macs_by_precision,
        }
        if per_node:
            data["per_node"] = [n.to_dict() for n in self.per_node]
        return data


def _macs_by(per_node: tuple[NodeCost, ...], field: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for cost in per_node:
        key = getattr(cost, field)
        if key:
            totals[key] = totals.get(key, 0) + cost.macs
    return totals


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


def _macs(rule: _MacFn, node: ir.Node) -> int:
    """The rule's count; 0 (unknown) for a node without the inputs its operator has."""
    try:
        return rule(node)
    except IndexError:
        return 0


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


def _dtype_name(value: ir.Value) -> str:
    dtype = value.dtype if value.dtype is not None else value.const_value.dtype
    return dtype.name.lower() if dtype is not None else ""


def model_cost(
    model: ir.Model, *, infer_shapes: bool = True, refresh_shapes: bool = False
) -> ModelCost:
    """Cost of ``model``'s main graph. Shape inference fills in missing shapes first;
    ``refresh_shapes`` re-infers every shape (after a pass that may have changed them)."""
    if refresh_shapes:
        rerun_shape_inference(model)
    elif infer_shapes and missing_shapes(model.graph):
        run_shape_inference(model)
    counted: set[int] = set()
    per_node = []
    by_dtype: dict[str, int] = {}
    for node in model.graph:
        params = weight_bytes = 0
        weight_dtype = ""
        for value in _initializer_inputs(node):
            if id(value) in counted:
                continue
            counted.add(id(value))
            size, nbytes = _tensor_size(value)
            params += size
            weight_bytes += nbytes
            dtype = _dtype_name(value)
            weight_dtype = weight_dtype or dtype
            by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
        rule = _MAC_RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        macs = _macs(rule, node) if rule is not None else 0
        activation_bytes = sum(_bytes_of(v) for v in node.outputs)
        precision = node_precision(node)
        name, arithmetic = (precision.name, precision.arithmetic) if precision else ("", "")
        if macs and not precision:  # a registered rule for an operator not classified
            name = arithmetic = _float_of_outputs(node)
        per_node.append(NodeCost(node.name or "", node.op_type, params, macs, weight_bytes,
                                 activation_bytes, weight_dtype, name, arithmetic, node))
    # Initializers read only by graph outputs or by nothing still occupy the file.
    for value in model.graph.initializers.values():
        if id(value) not in counted and value.const_value is not None:
            size, nbytes = _tensor_size(value)
            dtype = _dtype_name(value)
            by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
            per_node.append(
                NodeCost(value.name or "", "<initializer>", size, 0, nbytes, 0, dtype)
            )
    real_nodes = [n for n in per_node if n.op_type != "<initializer>"]
    return ModelCost(
        nodes=len(real_nodes),
        params=sum(n.params for n in per_node),
        macs=sum(n.macs for n in per_node),
        weight_bytes=sum(n.weight_bytes for n in per_node),
        activation_bytes=sum(n.activation_bytes for n in per_node),
        per_node=tuple(per_node),
        weight_bytes_by_dtype=by_dtype,
        precision=model_precision(model),
    )


def _float_of_outputs(node: ir.Node) -> str:
    return next((FLOAT_PRECISIONS[v.dtype] for v in node.outputs if v.dtype in FLOAT_PRECISIONS),
                "fp32")


_HALF_TYPES = {t: FLOAT_PRECISIONS[t] for t in (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)}


def float_precision(model: ir.Model) -> str:
    """The lowest float precision the main graph computes in: ``bf16``, ``fp16`` or ``fp32``
    (judged by the dtypes of node outputs; bf16 wins over fp16 as the coarser)."""
    found = {_HALF_TYPES[v.dtype] for node in model.graph for v in node.outputs
             if v.dtype in _HALF_TYPES}
    return "bf16" if "bf16" in found else "fp16" if "fp16" in found else "fp32"
