"""``quantize_weights``: int8 weights behind DequantizeLinear, float compute (weight-only).

For memory-bound models (large Gemm/MatMul weights, small batches) the file and the weight
traffic shrink by 4x while activations stay float, so no calibration data is needed. Each
Conv, Gemm and MatMul weight at least ``min_elements`` large becomes a per-output-channel
symmetric int8 initializer and a DequantizeLinear (opset >= 13; older models are upgraded);
biases stay float. Runtimes either dequantize once at load (onnxruntime constant-folds the
DequantizeLinear of an initializer) or fuse it into an int8-weight kernel.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import onnx_ir as ir

from graphopt.pass_api import GraphPass, register_pass
from graphopt.passes.quantize.placement import DEFAULT_OP_TYPES, weighted_layers
from graphopt.passes.quantize.qdq import UPGRADE_OPSET, ensure_qdq_opset, quantize_layer_weight
from graphopt.passes.rewrite_utils import forget_names

__all__ = ["QuantizeWeightsPass", "DEFAULT_MIN_ELEMENTS"]

DEFAULT_MIN_ELEMENTS = 1024


@register_pass("quantize_weights")
@dataclasses.dataclass(kw_only=True)
class QuantizeWeightsPass(GraphPass):
    """int8 weight-only quantization: per-channel int8 weights, float activations."""

    summary = "weight-only int8: per-channel int8 weights behind DequantizeLinear, float compute"
    lossless: ClassVar[bool] = False

    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    min_elements: int = DEFAULT_MIN_ELEMENTS
    keep: tuple[str, ...] = ()

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        forget_names(model.graph)
        modified = ensure_qdq_opset(model)
        if modified:
            self.stats["opset_upgraded_to"] = UPGRADE_OPSET
        layers, declined = weighted_layers(model, op_types=self.op_types,
                                           keep=frozenset(self.keep))
        for reason in declined:
            self.explain(f"quantize_weights: {reason}")
        for node, axis in layers:
            if node.inputs[1].const_value.size < self.min_elements:
                self.stats["weights_too_small"] += 1
                continue
            quantize_layer_weight(node, axis)
            self.stats["weights_quantized"] += 1
            modified = True
        return ir.passes.PassResult(model, modified=modified)
