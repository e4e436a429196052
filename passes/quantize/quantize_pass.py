"""``quantize``: int8 QDQ with calibrated activations (per-channel weights, int32 biases).

Steps: the opset is raised to 17 when below 13 (per-channel DequantizeLinear needs 13); the
placement (:mod:`.placement`) picks the layers and tensors; one streamed pass of the
calibration data through the core activation observer collects each tensor's exact min/max
and a bounded magnitude histogram; the calibrator (:mod:`.calibrators`) turns each histogram
into a clipping range; tensors that share parameters take the union of their ranges; then
:mod:`.qdq` writes the graph. A tensor whose range would not survive the type (its whole range
below one quantization step, or empty) stays float with the reason in ``--explain``, and so do
the layers that read it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar, Literal

import onnx_ir as ir

from graphopt.observe import ActivationTap, ChannelMoments, Histogram, MinMax
from graphopt.pass_api import GraphPass, register_pass
from graphopt.passes.fusion.rewrite_utils import forget_names
from graphopt.passes.opset_upgrade import upgrade_opset
from graphopt.passes.quantize.bias_correction import correct_bias, input_mean_axis
from graphopt.passes.quantize.calibrators import DEFAULT_PERCENTILE, calibrate_threshold
from graphopt.passes.quantize.placement import DEFAULT_OP_TYPES, Placement, plan_placement
from graphopt.passes.quantize.qdq import (
    insert_qdq,
    quantize_layer_bias,
    quantize_layer_weight,
    remove_absorbed_relu,
)
from graphopt.passes.quantize.qparams import QUANT_TYPES, ActivationParams, activation_params

__all__ = ["QuantizePass", "MIN_QDQ_OPSET", "UPGRADE_OPSET"]

logger = logging.getLogger(__name__)

MIN_QDQ_OPSET = 13
UPGRADE_OPSET = 17
DEFAULT_BINS = 2048


@register_pass("quantize")
@dataclasses.dataclass(kw_only=True)
class QuantizePass(GraphPass):
    """int8 QDQ: per-channel symmetric weights, calibrated per-tensor activations."""

    summary = "int8 QDQ: per-channel weights, calibrated activations, int32 biases"
    lossless: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"calibration"})

    calibrator: Literal["minmax", "percentile", "entropy", "mse"] = "mse"
    percentile: float = DEFAULT_PERCENTILE
    activations: Literal["uint8", "int8"] = "uint8"
    symmetric: bool = False
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    keep: tuple[str, ...] = ()
    share_concat: bool = False
    bias_correction: bool = True
    outputs: bool = True
    readers: Literal["all", "layers"] = "all"
    bins: int = DEFAULT_BINS

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        forget_names(model.graph)
        modified = False
        if model.opset_imports.get("", 1) < MIN_QDQ_OPSET:
            upgrade_opset(model, UPGRADE_OPSET)
            self.stats["opset_upgraded_to"] = UPGRADE_OPSET
            modified = True
        placement = plan_placement(model, op_types=self.op_types,
                                   asymmetric=not self.symmetric, keep=frozenset(self.keep),
                                   share_concat=self.share_concat, outputs=self.outputs)
        for reason in placement.declined:
            self.explain(f"quantize: {reason}")
        if not placement.layers:
            return ir.passes.PassResult(model, modified=modified)
        params = self._calibrate(model, placement)
        self._rewrite(model, placement, params)
        return ir.passes.PassResult(model, modified=True)

    def _calibrate(self, model: ir.Model, placement: Placement) -> dict[int, ActivationParams]:
        """Parameters per quantized tensor (by value id); tensors that do not survive the type
        are left out, with the reason explained."""
        observers = {v.name: [MinMax(), Histogram(self.bins, absolute=True)]
                     for v in placement.tensors}
        self._means: dict[int, ChannelMoments] = {}
        if self.bias_correction:
            for layer in placement.layers:
                moments = ChannelMoments(axis=input_mean_axis(layer.node))
                self._means[id(layer.node)] = moments
                observers[layer.data.name].append(moments)
        with ActivationTap(model, list(observers)) as tap:
            batches = tap.stream(self.context.calibration, observers)
        self.stats["calibration_batches"] = batches
        qtype = QUANT_TYPES[self.activations]
        ranges = {}
        for value in placement.tensors:
            minmax, histogram = observers[value.name][:2]
            one_sided = not self.symmetric and float(minmax.min) >= 0
            steps = (qtype.qmax - qtype.qmin) / (1 if one_sided else 2)
            threshold = calibrate_threshold(self.calibrator, histogram, steps=steps,
                                            percentile=self.percentile)
            ranges[id(value)] = (max(float(minmax.min), -threshold),
                                 min(float(minmax.max), threshold))
        params: dict[int, ActivationParams] = {}
        for group in placement.groups:
            low = min(ranges[id(v)][0] for v in group)
            high = max(ranges[id(v)][1] for v in group)
            shared = activation_params(low, high, qtype, symmetric=self.symmetric)
            reason = _does_not_survive(shared, group, observers)
            if reason is not None:
                for value in group:
                    self.explain(f"quantize: tensor {value.name!r} stays float: {reason}")
                continue
            for value in group:
                params[id(value)] = shared
        return params

    def _rewrite(self, model: ir.Model, placement: Placement,
                 params: dict[int, ActivationParams]) -> None:
        graph = model.graph
        absorbed = {id(layer.output): layer.relu for layer in placement.layers
                    if layer.relu is not None}
        for layer in placement.layers:
            data = params.get(id(layer.data))
            output_float = self.outputs and id(layer.output) not in params
            if data is None or (output_float and not layer.output.is_graph_output()):
                self.explain(f"quantize: {layer.node.name or layer.node.op_type} stays float:"
                             " its input or output tensor stays float")
                self.stats["layers_float"] += 1
                absorbed.pop(id(layer.output), None)
                continue
            moments = self._means.get(id(layer.node))
            if moments is not None and moments.mean is not None and correct_bias(
                    layer.node, layer.weight_axis, moments.mean):
                self.stats["biases_corrected"] += 1
            scales = quantize_layer_weight(layer.node, layer.weight_axis)
            if quantize_layer_bias(layer.node, data.scale, scales):
                self.stats["biases_int32"] += 1
            self.stats["layers_quantized"] += 1
        layer_nodes = {id(layer.node) for layer in placement.layers}
        for value in placement.tensors:
            if id(value) not in params:
                continue
            relu = absorbed.get(id(value))
            source = relu.inputs[0] if relu is not None else None
            only = None if self.readers == "all" else layer_nodes
            insert_qdq(graph, value, params[id(value)], source=source, only=only)
            self.stats["tensors_quantized"] += 1
            if relu is not None:
                remove_absorbed_relu(relu)
                self.stats["relus_absorbed"] += 1


def _does_not_survive(params: ActivationParams, group, observers) -> str | None:
    """Why quantizing the group's tensors would wipe them out, or None."""
    largest = max(max(abs(float(observers[v.name][0].min)), abs(float(observers[v.name][0].max)))
                  for v in group)
    if largest == 0:
        return "it is zero on all calibration data"
    if largest < params.scale:
        return (f"its largest magnitude {largest:.3g} is below one {params.qtype.name} step"
                f" {params.scale:.3g}")
    return None
