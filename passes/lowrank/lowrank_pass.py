"""``lowrank``: replace Conv, Gemm and MatMul layers by products of cheaper layers.

Steps, per layer in graph order: the layer becomes a site (:mod:`.rewrite`, or a reason it
cannot), the planner (:mod:`.plan`) picks the method and rank(s) by the selection rule
(``select=energy|vbmf|macs``, ranks rounded to ``round_to``), then ``only_if_faster`` decides
whether the split pays:

- with a latency probe in the pass context (``--target BACKEND``), the layer alone and its
  factors alone are measured paired on the target (one small model each, the layer's input
  shape, batch 1) and the split is kept only when it is detectably faster; after the per-layer
  decisions the whole split model is compared with the input model, and unless it is
  detectably faster the model is left as it was;
- without a probe, the cost model decides: the split pays when its MACs are at most
  ``max_macs_ratio`` of the layer's (the margin stands for what MACs do not count: the extra
  nodes' activation traffic and launches).

With ``repair=true`` the last factor of every split layer is refit by least squares on the
calibration data (:mod:`.repair`). Every per-layer decision (method, ranks, MACs, weight error,
measured times) is one line of ``--explain`` and one :class:`LayerDecision` in
``decisions``; ``stats`` counts layers split per method and their MACs before and after.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar, Literal

import onnx_ir as ir

from graphopt.latency import FASTER, LatencyComparison, LatencyProbe
from graphopt.pass_api import GraphPass, register_pass
from graphopt.pass_context import PassContext
from graphopt.passes.lowrank.plan import Selection, plan_layer
from graphopt.passes.lowrank.repair import RepairTarget, refit_last_factors
from graphopt.passes.lowrank.rewrite import (
    ConvSite,
    MatrixSite,
    Split,
    apply_split,
    conv_site,
    layer_model,
    matrix_site,
)
from graphopt.passes.rewrite_utils import forget_names
from graphopt.shapes import infer_shapes, missing_shapes

__all__ = ["LowRankPass", "LayerDecision", "DEFAULT_MAX_MACS_RATIO", "DEFAULT_OP_TYPES"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MACS_RATIO = 0.8
"""Without a latency probe a split pays when its MACs are at most this fraction of the layer's."""
DEFAULT_OP_TYPES = ("Conv", "Gemm", "MatMul")

Site = ConvSite | MatrixSite


@dataclasses.dataclass
class LayerDecision:
    """What the pass decided for one layer (``split`` False: kept, ``reason`` says why)."""

    layer: str
    op_type: str
    split: bool
    reason: str
    method: str | None = None
    ranks: tuple[int, ...] = ()
    macs_before: int = 0
    macs_after: int = 0
    weight_error: float | None = None
    measured_ms_before: float | None = None
    measured_ms_after: float | None = None

    def line(self) -> str:
        text = f"lowrank: {self.layer} ({self.op_type})"
        if self.method is not None:
            text += (f": {self.method} rank {'x'.join(map(str, self.ranks))},"
                     f" MACs {self.macs_before:,} -> {self.macs_after:,}"
                     f" ({self.macs_after / max(self.macs_before, 1):.2f}x)")
            if self.weight_error is not None:
                text += f", weight error {self.weight_error:.3f}"
            if self.measured_ms_before is not None and self.measured_ms_after is not None:
                text += (f", measured {self.measured_ms_before:.3g} ms ->"
                         f" {self.measured_ms_after:.3g} ms")
        return f"{text}: {'split' if self.split else 'kept'}, {self.reason}"


class _Needs:
    """Calibration data only when ``repair`` is on (on the class: everything it may need)."""

    def __get__(self, instance, owner=None) -> frozenset[str]:
        if instance is None or instance.repair:
            return frozenset({"calibration"})
        return frozenset()


@register_pass("lowrank")
@dataclasses.dataclass(kw_only=True)
class LowRankPass(GraphPass):
    """Low-rank splitting (see the module docstring); options as in the spec
    ``lowrank(method=auto, select=energy, energy=0.9, ...)``."""

    summary = ("low-rank splitting: Conv by spatial/channel SVD or Tucker-2, Gemm/MatMul by SVD,"
               " only where it pays")
    lossless: ClassVar[bool] = False
    needs = _Needs()  # type: ignore[assignment]

    method: Literal["auto", "spatial_svd", "channel_svd", "tucker2", "svd"] = "auto"
    select: Literal["energy", "vbmf", "macs"] = "energy"
    energy: float = 0.9
    target_macs: float = 0.5
    only_if_faster: bool = True
    round_to: int = 8
    repair: bool = False
    hooi: int = 0
    max_macs_ratio: float = DEFAULT_MAX_MACS_RATIO
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.energy <= 1:
            raise ValueError(f"lowrank: energy must be in (0, 1], got {self.energy}")
        if not 0 < self.target_macs < 1:
            raise ValueError(f"lowrank: target_macs must be in (0, 1), got {self.target_macs}")
        if self.round_to < 1 or self.hooi < 0:
            raise ValueError("lowrank: round_to must be >= 1 and hooi >= 0")
        self.decisions: list[LayerDecision] = []

    @property
    def selection(self) -> Selection:
        return Selection(self.select, self.energy, self.target_macs, self.round_to, self.hooi)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        forget_names(model.graph)
        if missing_shapes(model.graph):
            infer_shapes(model)
        self.decisions = []
        context = self.context or PassContext()
        probe = context.latency if self.only_if_faster else None
        chosen: dict[int, Split] = {}
        for index, node in enumerate(model.graph):
            if node.op_type not in self.op_types or node.domain not in ("", "ai.onnx"):
                continue
            split = self._decide(model, node, probe)
            if split is not None:
                chosen[index] = split
        if chosen and self.repair:
            chosen = self._repaired(model, chosen, context)
        if chosen and probe is not None and not self._whole_model_faster(model, chosen, probe):
            for decision in self.decisions:
                decision.split = False
            chosen = {}
        for decision in self.decisions:
            self.explain(decision.line())
        if not chosen:
            self.stats["layers_kept"] = len(self.decisions)
            return ir.passes.PassResult(model, modified=False)
        _apply(model, chosen)
        for decision in self.decisions:
            if decision.split:
                self.stats["layers_split"] += 1
                self.stats[f"split_{decision.method}"] += 1
                self.stats["macs_split_layers_before"] += decision.macs_before
                self.stats["macs_split_layers_after"] += decision.macs_after
            else:
                self.stats["layers_kept"] += 1
        return ir.passes.PassResult(model, modified=True)

    # -- per layer ------------------------------------------------------------------------

    def _decide(self, model: ir.Model, node: ir.Node, probe: LatencyProbe | None
                ) -> Split | None:
        name = node.name or node.outputs[0].name or node.op_type
        decision = LayerDecision(name, node.op_type, False, "")
        self.decisions.append(decision)
        if name in self.keep or node.name in self.keep:
            decision.reason = "listed in keep"
            return None
        site = _site(node)
        if isinstance(site, str):
            decision.reason = site
            return None
        if isinstance(site, ConvSite) and site.group_inputs == 1 and site.group_outputs == 1:
            decision.reason = "depthwise: one channel per group, nothing to split"
            return None
        split = plan_layer(site, self.method, self.selection)
        if isinstance(split, str):
            decision.reason = split
            return None
        decision.method, decision.ranks = split.method, split.ranks
        decision.macs_before, decision.macs_after = site.macs, split.macs
        decision.weight_error = split.error
        if not self.only_if_faster:
            decision.split, decision.reason = True, "only_if_faster=false"
            return split
        if split.macs >= site.macs:
            decision.reason = "the split has no fewer MACs than the layer"
            return None
        if probe is None:
            ratio = split.macs / max(site.macs, 1)
            if ratio > self.max_macs_ratio:
                decision.reason = (f"the cost model says it does not pay (MACs ratio"
                                   f" {ratio:.2f} > max_macs_ratio {self.max_macs_ratio:g})")
                return None
            decision.split, decision.reason = True, "the cost model says it pays"
            return split
        opset = model.opset_imports.get("", 13)
        comparison = probe.compare(layer_model(site, None, opset), layer_model(site, split, opset))
        decision.measured_ms_before = comparison.baseline.median_ms
        decision.measured_ms_after = comparison.candidate.median_ms
        summary = _speedup(comparison)
        if comparison.verdict != FASTER:
            decision.reason = f"not faster on {probe.target}: {summary}"
            return None
        decision.split, decision.reason = True, f"faster on {probe.target}: {summary}"
        return split

    # -- whole model ----------------------------------------------------------------------

    def _whole_model_faster(self, model: ir.Model, chosen: dict[int, Split],
                            probe: LatencyProbe) -> bool:
        comparison = probe.compare(model, _applied_copy(model, chosen))
        summary = _speedup(comparison)
        self.stats["whole_model_speedup_permille"] = round(1000 * comparison.speedup)
        if comparison.verdict == FASTER:
            self.explain(f"lowrank: the split model is faster on {probe.target}: {summary}")
            return True
        self.explain(f"lowrank: the split model is not faster on {probe.target} ({summary}),"
                     " so every layer is kept")
        return False

    def _repaired(self, model: ir.Model, chosen: dict[int, Split],
                  context: PassContext) -> dict[int, Split]:
        """``chosen`` with every last factor refit on the calibration data."""
        if context.calibration is None:
            self.explain("lowrank: repair=true without calibration data: no refit")
            return chosen
        trial = _applied_copy(model, chosen)
        nodes = list(model.graph)
        targets = []
        produced = {value.name: node for node in trial.graph for value in node.outputs}
        for index, split in chosen.items():
            node = nodes[index]
            last = produced[node.outputs[0].name]
            factor_weight = split.weights[-1]
            conv = None
            if last.op_type == "Conv":
                spatial = factor_weight.ndim - 2
                conv = {"kernel": factor_weight.shape[2:],
                        "strides": last.attributes.get_ints("strides", [1] * spatial),
                        "dilations": last.attributes.get_ints("dilations", [1] * spatial),
                        "pads": last.attributes.get_ints("pads", [0] * 2 * spatial)}
            targets.append(RepairTarget(
                z=last.inputs[0].name, y=node.outputs[0].name, node=last,
                weight_shape=factor_weight.shape, dtype=node.inputs[1].const_value.numpy().dtype,
                groups=last.attributes.get_int("group", 1) if conv else 1,
                conv=conv, fit_bias=node.op_type != "MatMul"))
        fits, batches = refit_last_factors(model, trial, targets, context.calibration)
        self.stats["repair_calibration_batches"] = batches
        self.stats["layers_repaired"] = len(fits)
        repaired = {}
        for (index, split), (weight, bias) in zip(chosen.items(), fits, strict=True):
            repaired[index] = dataclasses.replace(
                split, weights=(*split.weights[:-1], weight), bias=bias)
        return repaired


def _site(node: ir.Node) -> Site | str:
    return conv_site(node) if node.op_type == "Conv" else matrix_site(node)


def _speedup(comparison: LatencyComparison) -> str:
    return (f"{comparison.speedup:.3f}x [{comparison.ci_low:.3f}-{comparison.ci_high:.3f}]"
            f" {comparison.verdict}")


def _apply(model: ir.Model, chosen: dict[int, Split]) -> None:
    """Write the splits of ``chosen`` (by node index in graph order) into ``model``."""
    nodes = list(model.graph)
    for index, split in chosen.items():
        site = _site(nodes[index])
        if isinstance(site, str):  # the same graph as planned on: cannot happen
            raise RuntimeError(f"lowrank: layer {index} is no longer a site: {site}")
        apply_split(site, split)
    forget_names(model.graph)


def _applied_copy(model: ir.Model, chosen: dict[int, Split]) -> ir.Model:
    copy = ir.from_proto(ir.to_proto(model))
    if missing_shapes(copy.graph):
        infer_shapes(copy)
    _apply(copy, chosen)
    return copy
