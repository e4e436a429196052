"""Arithmetic precision of MAC nodes and of whole graphs, read from the graph's structure.

A MAC node (Conv, ConvTranspose, Gemm, MatMul and the integer forms QLinearConv, QLinearMatMul,
ConvInteger, MatMulInteger, onnxruntime's QGemm) computes in:

- ``int8``: an integer operator, or both the data input and the weight come through a
  DequantizeLinear of an 8-bit type (``DQ -> Conv`` is what runtimes fuse into an int8
  kernel; a 4-bit weight with 8-bit data counts too, runtimes unpack it to int8);
- ``int8-weights`` / ``int4-weights``: only the weight comes through an 8-bit / 4-bit
  DequantizeLinear; the multiply-accumulates run in the float type of the node's output;
- otherwise the float type it computes in: ``fp32``, ``fp16``, ``bf16`` (``fp64`` for double).

Layout operators between the DequantizeLinear and the node (Reshape, Transpose, ...) are
looked through. Other quantized types (int16, float8) are not recognised: such a node counts
at its float precision.

A graph is ``int8`` when every MAC node is, ``mixed`` when some are int8 and others float or
weight-only, ``int4-weights`` / ``int8-weights`` when weights are quantized but no activation
is (int4 when any layer has int4 weights), else the float precision of most MAC nodes. A
graph without MAC nodes is ``int8`` with quantization operators, else the float type of most
of its float initializers (``fp32`` on a tie, and without any).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable

import onnx_ir as ir

__all__ = [
    "FLOAT_PRECISIONS",
    "GRAPH_PRECISIONS",
    "MAC_OP_TYPES",
    "QUANTIZED_PRECISIONS",
    "WEIGHT_ONLY_PRECISIONS",
    "NodePrecision",
    "node_precision",
    "summarize",
    "model_precision",
]

FLOAT_PRECISIONS: dict[ir.DataType, str] = {
    ir.DataType.FLOAT: "fp32",
    ir.DataType.FLOAT16: "fp16",
    ir.DataType.BFLOAT16: "bf16",
    ir.DataType.DOUBLE: "fp64",
}
WEIGHT_ONLY_PRECISIONS = ("int8-weights", "int4-weights")
QUANTIZED_PRECISIONS = ("int8", "mixed", *WEIGHT_ONLY_PRECISIONS)
"""Graph precisions with quantized tensors: judged on int8's tolerance, never lowered."""
GRAPH_PRECISIONS = ("fp32", "bf16", "fp16", "fp64", *QUANTIZED_PRECISIONS)
"""Every name :func:`model_precision` returns."""

_FLOAT_MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_INTEGER_MAC_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"})
MAC_OP_TYPES = _FLOAT_MAC_OPS | _INTEGER_MAC_OPS
_MS_INTEGER_MAC_OPS = frozenset({"QGemm"})  # onnxruntime's com.microsoft contrib operators
_QUANTIZATION_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
                               "QLinearAdd", "QLinearMul", *_INTEGER_MAC_OPS,
                               *_MS_INTEGER_MAC_OPS})
_LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
_BITS = {ir.DataType.INT8: 8, ir.DataType.UINT8: 8, ir.DataType.INT4: 4, ir.DataType.UINT4: 4}
_FLOAT_ORDER = ("fp32", "fp16", "bf16", "fp64")  # a tie goes to the first


@dataclasses.dataclass(frozen=True)
class NodePrecision:
    """``name`` classifies the node (``int8-weights`` ...); ``arithmetic`` is what its
    multiply-accumulates run in (``int8`` or a float name)."""

    name: str
    arithmetic: str


def _standard(node: ir.Node | None) -> bool:
    return node is not None and node.domain in ("", "ai.onnx")


def _dequantized_bits(value: ir.Value | None) -> int | None:
    """Bits of the integer type ``value`` was dequantized from (through layout operators),
    ``None`` when it is not a DequantizeLinear output of a recognised type."""
    producer = value.producer() if value is not None else None
    while _standard(producer) and producer.op_type in _LAYOUT_OPS and producer.inputs:
        producer = producer.inputs[0].producer() if producer.inputs[0] is not None else None
    if not _standard(producer) or producer.op_type != "DequantizeLinear":
        return None
    return _BITS.get(_quantized_type(producer))


def _quantized_type(dequantize: ir.Node) -> ir.DataType | None:
    """The integer type a DequantizeLinear reads: its input's, else its zero point's, else
    what the QuantizeLinear before it writes (``output_dtype``, zero point, uint8)."""
    for value in (dequantize.inputs[0], *dequantize.inputs[2:3]):
        dtype = _dtype(value)
        if dtype is not None:
            return dtype
    source = dequantize.inputs[0].producer() if dequantize.inputs[0] is not None else None
    if not _standard(source) or source.op_type != "QuantizeLinear":
        return None
    written = source.attributes.get_int("output_dtype", 0)
    if written:
        return ir.DataType(written)
    zero = _dtype(source.inputs[2]) if len(source.inputs) > 2 else None
    return zero if zero is not None else ir.DataType.UINT8


def _dtype(value: ir.Value | None) -> ir.DataType | None:
    if value is None:
        return None
    if value.dtype is not None:
        return value.dtype
    return value.const_value.dtype if value.const_value is not None else None


def _float_of(node: ir.Node) -> str:
    """The float type the node computes in: its output's, else its inputs' (fp32 unknown)."""
    for value in (*node.outputs[:1], *node.inputs[:2]):
        name = FLOAT_PRECISIONS.get(_dtype(value))
        if name is not None:
            return name
    return "fp32"


def node_precision(node: ir.Node) -> NodePrecision | None:
    """The precision of a MAC node (module docstring); ``None`` for any other node."""
    if node.domain == "com.microsoft" and node.op_type in _MS_INTEGER_MAC_OPS:
        return NodePrecision("int8", "int8")
    if not _standard(node) or node.op_type not in MAC_OP_TYPES:
        return None
    if node.op_type in _INTEGER_MAC_OPS:
        return NodePrecision("int8", "int8")
    computes = _float_of(node)
    weight = _dequantized_bits(node.inputs[1]) if len(node.inputs) > 1 else None
    if weight is None:
        return NodePrecision(computes, computes)
    if _dequantized_bits(node.inputs[0]) == 8:
        return NodePrecision("int8", "int8")
    return NodePrecision(f"int{weight}-weights", computes)


def summarize(names: Iterable[str]) -> str | None:
    """The graph precision of MAC nodes with precisions ``names``; ``None`` without any."""
    counts = Counter(names)
    if not counts:
        return None
    int8 = counts.pop("int8", 0)
    weight_only = {name for name in counts if name in WEIGHT_ONLY_PRECISIONS}
    if int8:
        return "mixed" if counts else "int8"
    if weight_only:
        return "int4-weights" if "int4-weights" in weight_only else "int8-weights"
    return _most_common(counts)


def model_precision(model: ir.Model) -> str:
    """The precision ``model``'s main graph computes in (module docstring)."""
    precisions = [p for p in map(node_precision, model.graph) if p is not None]
    found = summarize(p.name for p in precisions)
    if found is not None:
        return found
    if any(n.op_type in _QUANTIZATION_OPS for n in model.graph):
        return "int8"
    return _most_common(Counter(FLOAT_PRECISIONS.get(_dtype(v))
                                for v in model.graph.initializers.values()))


def _most_common(counts: Counter) -> str:
    return max(_FLOAT_ORDER, key=lambda name: counts[name])
