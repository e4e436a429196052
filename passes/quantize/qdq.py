"""Graph edits that write QDQ: Q/DQ pairs on activations, int8 weights and int32 biases.

All edits go through onnx-ir's use-def API; new initializers get unique names derived from the
tensor they quantize (``conv1.weight_quantized``, ``relu_3_scale`` ...).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphopt.passes.opset_upgrade import upgrade_opset
from graphopt.passes.quantize.qparams import (
    ActivationParams,
    quantize_bias,
    quantize_weight,
    quantize_weight_blocked,
)
from graphopt.passes.rewrite_utils import (
    add_initializer,
    drop_unused_initializer,
    unique_name,
)

__all__ = ["MIN_QDQ_OPSET", "UPGRADE_OPSET", "BLOCKED_QDQ_OPSET", "ensure_qdq_opset",
           "insert_qdq", "quantize_layer_weight", "quantize_layer_weight_blocked",
           "quantize_layer_bias", "remove_absorbed_relu"]

MIN_QDQ_OPSET = 13
"""Per-channel DequantizeLinear (``axis``) needs opset 13."""
UPGRADE_OPSET = 17
BLOCKED_QDQ_OPSET = 21
"""Block-wise DequantizeLinear (``block_size``) and int4 need opset 21."""


def ensure_qdq_opset(model: ir.Model, minimum: int = MIN_QDQ_OPSET) -> bool:
    """Raise the opset to ``minimum`` (at least :data:`UPGRADE_OPSET`) when it is below it;
    True when it did."""
    if model.opset_imports.get("", 1) >= minimum:
        return False
    upgrade_opset(model, max(UPGRADE_OPSET, minimum))
    return True


def _name(value: ir.Value, suffix: str) -> str:
    return f"{value.name or 'tensor'}_{suffix}"


def _output_name(graph: ir.Graph, value: ir.Value, suffix: str) -> str:
    return unique_name(graph, _name(value, suffix))


def insert_qdq(graph: ir.Graph, value: ir.Value, params: ActivationParams,
               source: ir.Value | None = None, only: set[int] | None = None) -> ir.Value:
    """``Q -> DQ`` on ``value``: every reader of ``value`` reads the dequantized copy.

    ``source`` (default ``value``) is what the Q reads: an absorbed ReLU's input, whose clamp
    the Q then performs. Returns the DQ output.
    """
    source = source if source is not None else value
    scale = add_initializer(graph, np.array(params.scale, np.float32), _name(value, "scale"))
    zero = add_initializer(graph, np.array(params.zero_point, params.qtype.numpy),
                           _name(value, "zero_point"))
    quantize = ir.Node("", "QuantizeLinear", [source, scale, zero],
                       name=_name(value, "QuantizeLinear"))
    quantized = quantize.outputs[0]
    quantized.name = _output_name(graph, value, "quantized")
    quantized.dtype = params.qtype.ir_type
    quantized.shape = value.shape
    dequantize = ir.Node("", "DequantizeLinear", [quantized, scale, zero],
                         name=_name(value, "DequantizeLinear"))
    dequantized = dequantize.outputs[0]
    dequantized.name = _output_name(graph, value, "dequantized")
    dequantized.dtype = ir.DataType.FLOAT
    dequantized.shape = value.shape
    producer = source.producer()
    if producer is None:  # a graph input: the pair goes first
        graph.insert_before(next(iter(graph)), [quantize, dequantize])
    else:
        graph.insert_after(producer, [quantize, dequantize])
    for reader, index in list(value.uses()):
        if reader is not quantize and (only is None or id(reader) in only):
            reader.replace_input_with(index, dequantized)
    return dequantized


def remove_absorbed_relu(relu: ir.Node) -> None:
    """Drop a ReLU whose output is now only read through a Q that clamps at 0."""
    output = relu.outputs[0]
    if output.uses() or output.is_graph_output():
        raise ValueError(f"ReLU {relu.name!r} still has readers")
    relu.graph.remove(relu, safe=True)


def _replace_with_dequantized(node: ir.Node, index: int, stored: np.ndarray,
                              scales: np.ndarray, axis: int | None,
                              block_size: int | None = None) -> None:
    """Input ``index`` of ``node`` becomes ``DequantizeLinear(stored, scales, 0)``."""
    graph = node.graph
    original = node.inputs[index]
    quantized = add_initializer(graph, stored, _name(original, "quantized"))
    scale = add_initializer(graph, scales, _name(original, "scale"))
    zero = add_initializer(graph, np.zeros(scales.shape, stored.dtype),
                           _name(original, "zero_point"))
    attributes = [ir.AttrInt64("axis", axis)] if axis is not None and scales.ndim else []
    if block_size is not None:
        attributes.append(ir.AttrInt64("block_size", block_size))
    dequantize = ir.Node("", "DequantizeLinear", [quantized, scale, zero],
                         attributes=attributes, name=_name(original, "DequantizeLinear"))
    dequantized = dequantize.outputs[0]
    dequantized.name = _output_name(graph, original, "dequantized")
    dequantized.dtype = ir.DataType.FLOAT
    dequantized.shape = original.shape
    graph.insert_before(node, dequantize)
    node.replace_input_with(index, dequantized)
    drop_unused_initializer(graph, original)


def quantize_layer_weight(node: ir.Node, axis: int) -> np.ndarray:
    """Replace the node's weight by int8 + per-channel DequantizeLinear; returns the scales."""
    q, scales = quantize_weight(node.inputs[1].const_value.numpy(), axis)
    _replace_with_dequantized(node, 1, q, scales, axis)
    return scales


def quantize_layer_weight_blocked(node: ir.Node, axis: int, block_size: int) -> None:
    """Replace the node's weight by int4 + block-wise DequantizeLinear along ``axis``
    (opset >= 21)."""
    q, scales = quantize_weight_blocked(node.inputs[1].const_value.numpy(), axis, block_size)
    _replace_with_dequantized(node, 1, q, scales, axis, block_size)


def quantize_layer_bias(node: ir.Node, input_scale: float, weight_scales: np.ndarray) -> bool:
    """An int32 bias (scale = input scale x weight scale, zero point 0) for a Conv's input 2 or
    a Gemm's 1-D C; False when there is none or it cannot be (a broadcast C)."""
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return False
    bias = node.inputs[2]
    if bias.const_value is None:
        return False
    array = bias.const_value.numpy()
    if array.ndim != 1 or (weight_scales.ndim and array.shape[0] != weight_scales.shape[0]):
        return False
    if node.op_type == "Gemm" and node.attributes.get_float("beta", 1.0) != 1.0:
        return False
    q, scales = quantize_bias(array, input_scale, weight_scales)
    _replace_with_dequantized(node, 2, q, scales, 0)
    return True
