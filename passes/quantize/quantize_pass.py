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

import collections
import dataclasses
import logging
from typing import ClassVar, Literal

import numpy as np
import onnx_ir as ir

from graphopt.observe import ActivationTap, ChannelMoments, Histogram, MinMax
from graphopt.pass_api import GraphPass, register_pass
from graphopt.passes.quantize.bias_correction import correct_bias, input_mean_axis
from graphopt.passes.quantize.calibrators import DEFAULT_PERCENTILE, calibrate_threshold
from graphopt.passes.quantize.latency_guard import Variant, choose_by_latency
from graphopt.passes.quantize.mixed import search_float_layers
from graphopt.passes.quantize.placement import DEFAULT_OP_TYPES, Placement, plan_placement
from graphopt.passes.quantize.qdq import (
    UPGRADE_OPSET,
    ensure_qdq_opset,
    insert_qdq,
    quantize_layer_bias,
    quantize_layer_weight,
    remove_absorbed_relu,
)
from graphopt.passes.quantize.qparams import QUANT_TYPES, ActivationParams, activation_params
from graphopt.passes.rewrite_utils import forget_names, node_label

__all__ = ["QuantizePass"]

logger = logging.getLogger(__name__)

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
    share_concat: bool = True
    grouped: bool = False
    bias_correction: bool = True
    mixed: bool = True
    latency_aware: bool = True
    outputs: bool = True
    unread_outputs: bool = True
    readers: Literal["all", "layers"] = "all"
    bins: int = DEFAULT_BINS

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        forget_names(model.graph)
        modified = ensure_qdq_opset(model)
        if modified:
            self.stats["opset_upgraded_to"] = UPGRADE_OPSET
        placement = self._place(model)
        for reason in placement.declined:
            self.explain(f"quantize: {reason}")
        if not placement.layers:
            return ir.passes.PassResult(model, modified=modified)
        calibration = self._calibrate(model, placement)
        float_layers: set[int] = set()
        if self.mixed and self.context.budget:
            float_layers = self._search_float_layers(model, placement, calibration)
        if self.latency_aware and self.context.latency is not None:
            placement, float_layers = self._keep_float_where_slower(
                model, placement, calibration, float_layers)
        if len(float_layers) == len(placement.layers):
            self.stats["layers_float"] = len(placement.layers)
            return ir.passes.PassResult(model, modified=modified)
        self._rewrite(model, placement, calibration, float_layers, record=True)
        return ir.passes.PassResult(model, modified=True)

    def _place(self, model: ir.Model, *, unread_outputs: bool | None = None) -> Placement:
        unread = self.unread_outputs if unread_outputs is None else unread_outputs
        return plan_placement(model, op_types=self.op_types, asymmetric=not self.symmetric,
                              keep=frozenset(self.keep), share_concat=self.share_concat,
                              grouped=self.grouped, outputs=self.outputs,
                              unread_outputs=unread)

    def _calibrate(self, model: ir.Model, placement: Placement) -> Calibration:
        """Parameters per quantized tensor name and input means per layer; tensors that do
        not survive the type are left out, with the reason explained."""
        observers = {v.name: [MinMax(), Histogram(self.bins, absolute=True)]
                     for v in placement.tensors}
        moments: dict[int, ChannelMoments] = {}
        if self.bias_correction:
            for index, layer in enumerate(placement.layers):
                moments[index] = ChannelMoments(axis=input_mean_axis(layer.node))
                observers[layer.data.name].append(moments[index])
        with ActivationTap(model, list(observers)) as tap:
            batches = tap.stream(self.context.calibration, observers,
                                 progress=self.context.step("calibrating"))
        self.stats["calibration_batches"] = batches
        qtype = QUANT_TYPES[self.activations]
        ranges = {}
        for value in placement.tensors:
            minmax, histogram = observers[value.name][:2]
            one_sided = not self.symmetric and float(minmax.min) >= 0
            steps = (qtype.qmax - qtype.qmin) / (1 if one_sided else 2)
            threshold = calibrate_threshold(self.calibrator, histogram, steps=steps,
                                            percentile=self.percentile)
            ranges[value.name] = (max(float(minmax.min), -threshold),
                                  min(float(minmax.max), threshold))
        params: dict[str, ActivationParams] = {}
        for group in placement.groups:
            low = min(ranges[v.name][0] for v in group)
            high = max(ranges[v.name][1] for v in group)
            shared = activation_params(low, high, qtype, symmetric=self.symmetric)
            reason = _does_not_survive(shared, group, observers)
            if reason is not None:
                for value in group:
                    self.explain(f"quantize: tensor {value.name!r} stays float: {reason}")
                continue
            for value in group:
                params[value.name] = shared
        means = {index: m.mean for index, m in moments.items() if m.mean is not None}
        return Calibration(params, means, [[v.name for v in g] for g in placement.groups])

    def _trials(self, model: ir.Model, calibration: Calibration, *,
                unread_outputs: bool | None = None):
        """A function building the quantized copy of ``model`` with some layers float."""
        snapshot = ir.to_proto(model)

        def quantized_except(float_layers: set[int]) -> ir.Model:
            trial = ir.from_proto(snapshot)
            placement = self._place(trial, unread_outputs=unread_outputs)
            self._rewrite(trial, placement, calibration, float_layers, record=False)
            return trial

        return quantized_except

    def _keep_float_where_slower(self, model: ir.Model, placement: Placement,
                                 calibration: Calibration,
                                 float_layers: set[int]) -> tuple[Placement, set[int]]:
        """Never slower than float on the target (see :mod:`.latency_guard`): the placement
        to write and the layers kept float."""
        variants = [Variant("as quantized", self._trials(model, calibration))]
        placements = [placement]
        if self.outputs and self.unread_outputs:
            without = self._place(model, unread_outputs=False)
            if _tensor_names(without) != _tensor_names(placement):
                variants.append(Variant(
                    "without Q/DQ on Conv outputs that nothing quantized reads",
                    self._trials(model, calibration, unread_outputs=False)))
                placements.append(without)
        choice = choose_by_latency(self.context.latency, model, variants,
                                   [layer.node for layer in placement.layers], float_layers)
        for line in choice.explanations:
            self.explain(f"quantize: {line}")
        self.stats["layers_kept_float_for_latency"] = len(choice.float_layers - float_layers)
        if choice.variant == 1:
            self.stats["unread_conv_outputs_float"] = True
        return placements[choice.variant], choice.float_layers

    def _search_float_layers(self, model: ir.Model, placement: Placement,
                             calibration: Calibration) -> set[int]:
        """The fewest layers to keep float for the run's budget (see :mod:`.mixed`)."""
        quantized_except = self._trials(model, calibration)

        names = [layer.node.name or f"{layer.node.op_type}#{i}"
                 for i, layer in enumerate(placement.layers)]
        search = search_float_layers(model, quantized_except, names, self.context.calibration,
                                     self.context.budget,
                                     progress=self.context.step("layer sensitivity"))
        for line in search.explanations:
            self.explain(f"quantize: {line}")
        self.stats["layers_kept_float_for_budget"] = len(search.float_layers)
        self.stats["mixed_precision_trials"] = search.trials
        return search.float_layers

    def _rewrite(self, model: ir.Model, placement: Placement, calibration: Calibration,
                 float_layers: set[int], *, record: bool) -> None:
        graph = model.graph
        params = calibration.params
        stats = self.stats if record else collections.Counter()
        explain = self.explain if record else (lambda _line: None)
        quantized: list = []
        for index, layer in enumerate(placement.layers):
            data = params.get(layer.data.name)
            output_float = layer.output_quantized and layer.output.name not in params
            if index in float_layers:
                stats["layers_float"] += 1
                continue
            if data is None or (output_float and not layer.output.is_graph_output()):
                explain(f"quantize: {node_label(layer.node)} stays float:"
                        " its input or output tensor stays float")
                stats["layers_float"] += 1
                continue
            mean = calibration.means.get(index)
            if mean is not None and correct_bias(layer.node, layer.weight_axis, mean):
                stats["biases_corrected"] += 1
            scales = quantize_layer_weight(layer.node, layer.weight_axis)
            if quantize_layer_bias(layer.node, data.scale, scales):
                stats["biases_int32"] += 1
            stats["layers_quantized"] += 1
            quantized.append(layer)
        # Q/DQ on the tensors of quantized layers, and on whatever shares their parameters.
        wanted = {layer.data.name for layer in quantized}
        wanted |= {layer.output.name for layer in quantized if layer.output_quantized}
        placed = _tensor_names(placement)
        for group in calibration.groups:
            if wanted.intersection(group):
                wanted.update(placed.intersection(group))
        # A ReLU can only go when every reader reads the Q/DQ copy (readers="all").
        absorbed = {layer.output.name: layer.relu for layer in quantized
                    if layer.relu is not None and layer.output.name in wanted
                    and self.readers == "all"}
        layer_nodes = {id(layer.node) for layer in quantized}
        for value in placement.tensors:
            if value.name not in params or value.name not in wanted:
                continue
            relu = absorbed.get(value.name)
            source = relu.inputs[0] if relu is not None else None
            only = None if self.readers == "all" else layer_nodes
            insert_qdq(graph, value, params[value.name], source=source, only=only)
            stats["tensors_quantized"] += 1
            if relu is not None:
                remove_absorbed_relu(relu)
                stats["relus_absorbed"] += 1


@dataclasses.dataclass
class Calibration:
    """What calibration found, keyed by tensor name and layer index (so that it applies to a
    copy of the model too)."""

    params: dict[str, ActivationParams]
    means: dict[int, np.ndarray]
    groups: list[list[str]]


def _tensor_names(placement: Placement) -> set[str]:
    return {value.name for value in placement.tensors}


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
