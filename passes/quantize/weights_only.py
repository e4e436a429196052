"""``quantize_weights``: int8 or int4 weights behind DequantizeLinear, float compute.

For memory-bound models (large Gemm/MatMul weights, small batches) the file and the weight
traffic shrink by 4x while activations stay float, so no calibration data is needed. Each
Conv, Gemm and MatMul weight at least ``min_elements`` large becomes a per-output-channel
symmetric int8 initializer and a DequantizeLinear (opset >= 13; older models are upgraded);
biases stay float. Runtimes either dequantize once at load (onnxruntime constant-folds the
DequantizeLinear of an initializer) or fuse it into an int8-weight kernel.

``bits=4``: int4 weights with one scale per ``block_size`` (32) consecutive entries along the
reduction axis (a Conv's input channels, a Gemm's / MatMul's K), the block-wise
DequantizeLinear of opset 21 (models below are upgraded): an eighth of the float32 weight
bytes plus the scales. A layer whose reduction axis is not a whole number of blocks stays
per-channel int8, with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import onnx_ir as ir

from graphopt.errors import GraphoptError
from graphopt.pass_api import GraphPass, register_pass
from graphopt.passes.quantize.placement import DEFAULT_OP_TYPES, weighted_layers
from graphopt.passes.quantize.qdq import (
    BLOCKED_QDQ_OPSET,
    MIN_QDQ_OPSET,
    ensure_qdq_opset,
    quantize_layer_weight,
    quantize_layer_weight_blocked,
)
from graphopt.passes.rewrite_utils import forget_names, node_label

__all__ = ["QuantizeWeightsPass", "DEFAULT_MIN_ELEMENTS", "DEFAULT_BLOCK_SIZE"]

DEFAULT_MIN_ELEMENTS = 1024
DEFAULT_BLOCK_SIZE = 32


@register_pass("quantize_weights")
@dataclasses.dataclass(kw_only=True)
class QuantizeWeightsPass(GraphPass):
    """int8 weight-only quantization: per-channel int8 weights, float activations."""

    summary = ("weight-only: per-channel int8 (or block-wise int4) weights behind"
               " DequantizeLinear, float compute")
    lossless: ClassVar[bool] = False

    bits: Literal[8, 4] = 8
    block_size: int = DEFAULT_BLOCK_SIZE
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    min_elements: int = DEFAULT_MIN_ELEMENTS
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.block_size < 2 or self.block_size & (self.block_size - 1):
            raise GraphoptError(f"quantize_weights: block_size must be a power of two >= 2,"
                                f" got {self.block_size}")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        forget_names(model.graph)
        modified = ensure_qdq_opset(model, BLOCKED_QDQ_OPSET if self.bits == 4 else
                                    MIN_QDQ_OPSET)
        if modified:
            self.stats["opset_upgraded_to"] = model.opset_imports[""]
        layers, declined = weighted_layers(model, op_types=self.op_types,
                                           keep=frozenset(self.keep))
        for reason in declined:
            self.explain(f"quantize_weights: {reason}")
        for node, axis in layers:
            if node.inputs[1].const_value.size < self.min_elements:
                self.stats["weights_too_small"] += 1
                continue
            modified = True
            if self.bits == 4:
                shape = node.inputs[1].const_value.shape
                reduction = 1 if len(shape) != 2 else 1 - axis
                length = shape[reduction]
                if length % self.block_size == 0:
                    quantize_layer_weight_blocked(node, reduction, self.block_size)
                    self.stats["weights_int4"] += 1
                    continue
                self.explain(f"quantize_weights: {node_label(node)} stays int8 per"
                             f" channel: its reduction axis ({length}) is not a multiple of"
                             f" block_size={self.block_size}")
            quantize_layer_weight(node, axis)
            self.stats["weights_quantized"] += 1
        return ir.passes.PassResult(model, modified=modified)
