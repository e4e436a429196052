"""``prune``: remove whole channels of Conv / Gemm / MatMul layers and all that depends on them.

Steps: the dependency analysis (:mod:`.groups`) finds which channels must go together and
which cannot go at all; a criterion (:mod:`.importance`) scores them; the target (a ratio per
group, per-layer ratios, or a share of the MACs to keep, searched by bisection on the cost
model) decides how many go (:mod:`.select`); the graph is cut (:mod:`.apply`); the layers that
lost inputs are refitted by least squares on calibration data and BatchNormalizations
downstream re-estimated (:mod:`.repair`). With a MAC target and a budget, the pass prunes as
far toward the target as the budget allows on calibration data, and says where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from typing import ClassVar, Literal

import numpy as np
import onnx_ir as ir

from graphopt.cost import model_cost
from graphopt.errors import GraphoptError
from graphopt.observe import ActivationTap, MeanMagnitude
from graphopt.pass_api import GraphPass, register_pass
from graphopt.passes.prune.apply import apply_pruning, inconsistent_reshapes
from graphopt.passes.prune.groups import Dependencies, analyze
from graphopt.passes.prune.importance import (
    activation_scores,
    bn_scores,
    class_scores,
    filter_scores,
)
from graphopt.passes.prune.repair import (
    batchnorm_input_moments,
    collect_statistics,
    downstream_batchnorms,
    recalibrate_batchnorms,
    refit,
)
from graphopt.passes.prune.select import (
    choose,
    estimate_macs,
    find_groups,
    keep_mask,
    restore_within,
)
from graphopt.passes.rewrite_utils import node_label, set_constant_input
from graphopt.shapes import infer_shapes, missing_shapes
from graphopt.trials import BudgetTrials

__all__ = ["PrunePass", "MAX_RATIO"]

logger = logging.getLogger(__name__)

MAX_RATIO = 0.9
"""The largest share of a group a MAC target may remove."""
_SEARCH_STEPS = 14
_BUDGET_STEPS = 6


@dataclasses.dataclass
class _Plan:
    deps: Dependencies
    pruned: set[int]
    ratio: float


@register_pass("prune")
@dataclasses.dataclass(kw_only=True)
class PrunePass(GraphPass):
    """Structured channel pruning with dependency groups and least-squares repair.

    ``ratio``: share of every group's channels to remove; ``ratios``: per-layer overrides as
    ``name=ratio`` (a group takes the largest of its layers'); ``target_macs``: share of the
    MACs to keep instead (searched); ``criterion``: l1 | l2 | bn | activation;
    ``round_to`` / ``min_channels``: kept counts; ``reconstruct``: least-squares refit of the
    layers after; ``recalibrate_bn``: re-estimate BatchNormalizations downstream;
    ``protect_first``: keep the first layer's outputs; ``exclude``: layers never pruned.
    """

    summary = "structured channel pruning: dependency groups, importance, least-squares repair"
    lossless: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"calibration"})

    ratio: float = 0.3
    ratios: tuple[str, ...] = ()
    target_macs: float | None = None
    criterion: Literal["l1", "l2", "bn", "activation"] = "l1"
    round_to: int = 8
    min_channels: int = 8
    reconstruct: bool = True
    recalibrate_bn: bool = True
    protect_first: bool = True
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise GraphoptError(f"prune: ratio must be in [0, 1), got {self.ratio}")
        if self.target_macs is not None and not 0.0 < self.target_macs <= 1.0:
            raise GraphoptError(f"prune: target_macs is the share of MACs to keep, in (0, 1],"
                                f" got {self.target_macs}")
        if self.round_to < 1 or self.min_channels < 1:
            raise GraphoptError("prune: round_to and min_channels must be at least 1")
        self._layer_ratios = {}
        for item in self.ratios:
            name, sep, value = item.rpartition("=")
            try:
                ratio = float(value)
            except ValueError:
                ratio = -1.0
            if not sep or not name or not 0.0 <= ratio < 1.0:
                raise GraphoptError(f"prune: ratios entries are name=ratio with ratio in [0, 1),"
                                    f" got {item!r}")
            self._layer_ratios[name] = ratio

    # -- the pass --------------------------------------------------------------------------
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        _name_nodes(model)
        if missing_shapes(model.graph):
            infer_shapes(model)
        snapshot = ir.to_proto(model) if self._searches_budget() else None
        deps = self._analyze(model, record=True)
        cost = model_cost(model, infer_shapes=False)
        scores = self._scores(model, deps)
        statistics = self._statistics(model, deps) if self.reconstruct else {}
        self._bn_before = (batchnorm_input_moments(
            model, [node for node, _ in deps.batchnorms], self.context.calibration)
            if self.recalibrate_bn else {})
        plan = self._plan(deps, scores, cost, record=True)
        if snapshot is not None and plan.pruned:
            plan = self._within_budget(model, snapshot, plan, scores, statistics, cost)
        if not plan.pruned:
            self.explain("prune: nothing to remove")
            return ir.passes.PassResult(model, modified=False)
        self._cut(model, plan, statistics, record=True)
        after = model_cost(model, infer_shapes=False)
        self.stats["macs_before"] = cost.macs
        self.stats["macs_after"] = after.macs
        self.stats["params_before"] = cost.params
        self.stats["params_after"] = after.params
        self.explain(f"prune: MACs {cost.macs / 1e6:.1f}M -> {after.macs / 1e6:.1f}M"
                     f" ({after.macs / max(cost.macs, 1):.2f}x), params {cost.params} ->"
                     f" {after.params}")
        return ir.passes.PassResult(model, modified=True)

    def _searches_budget(self) -> bool:
        context = self.context
        return bool(self.target_macs is not None and context is not None and context.budget)

    def _analyze(self, model: ir.Model, *, record: bool = False) -> Dependencies:
        deps = analyze(model, protect_first=self.protect_first, exclude=self.exclude)
        if record:
            unknown = set(self.exclude) - {n.name for n in model.graph}
            if unknown:
                raise GraphoptError(f"prune: exclude names no node: {sorted(unknown)}")
            reasons: Counter[str] = Counter()
            for root in np.unique(deps.roots).tolist():
                for reason in deps.uf.reasons(root)[:1]:
                    reasons[reason] += 1
            for reason, count in reasons.most_common():
                self.explain(f"prune: {count} channel class(es) kept: {reason}")
            self.stats["classes_blocked"] = sum(reasons.values())
        return deps

    def _scores(self, model: ir.Model, deps: Dependencies) -> dict[int, float]:
        if self.criterion in ("l1", "l2"):
            atoms = filter_scores(deps, 1 if self.criterion == "l1" else 2)
        elif self.criterion == "bn":
            if not deps.batchnorms:
                raise GraphoptError("prune: criterion=bn needs BatchNormalization nodes, and"
                                    " this graph has none (run prune before fuse, or use l1)")
            atoms = bn_scores(deps)
        else:
            atoms = activation_scores(deps, self._mean_magnitudes(model, deps))
        return class_scores(deps, atoms)

    def _mean_magnitudes(self, model: ir.Model, deps: Dependencies):
        observers: dict[str, list[MeanMagnitude]] = {}
        for layer in deps.sinks:
            axis = 1 if layer.node.op_type == "Conv" else -1
            observers.setdefault(layer.value.name, [MeanMagnitude(axis)])
        with ActivationTap(model, list(observers)) as tap:
            tap.stream(self.context.calibration, observers,
                       progress=self.context.step("activation statistics"))
        values = {v.name: v for v in deps.spans}
        return {values[name]: obs[0].mean for name, obs in observers.items()}

    def _statistics(self, model: ir.Model, deps: Dependencies):
        sinks = [layer for layer in deps.sinks if layer.node.op_type != "MatMul" and not all(
            deps.uf.blocked(int(r)) for r in np.unique(deps.class_of(layer.atoms)))]
        seed = self.context.seed if self.context is not None else 0
        statistics = collect_statistics(model, sinks, self.context.calibration, seed)
        self.stats["layers_observed_for_repair"] = len(statistics)
        return {layer.node.name: statistics[id(layer.node)] for layer in sinks}

    # -- how much ---------------------------------------------------------------------------
    def _ratio_of(self, ratio: float):
        def ratio_of(group) -> float:
            named = [self._layer_ratios[n] for n in group.sources if n in self._layer_ratios]
            return max(named) if named else ratio
        return ratio_of

    def _choose(self, deps: Dependencies, groups, scores, ratio: float) -> set[int]:
        for _ in range(8):
            pruned = choose(deps, groups, scores, self._ratio_of(ratio), round_to=self.round_to,
                            min_channels=self.min_channels)
            bad = inconsistent_reshapes(deps, pruned)
            if not bad:
                return pruned
            for edit in bad:
                deps.uf.block(edit.span.atoms, f"{edit.node.name} would not reshape the kept"
                                               " channels consistently")
        return set()

    def _plan(self, deps: Dependencies, scores, cost, *, record: bool = False,
              ratio: float | None = None) -> _Plan:
        groups = find_groups(deps)
        if ratio is not None:
            return _Plan(deps, self._choose(deps, groups, scores, ratio), ratio)
        if self.target_macs is None:
            return _Plan(deps, self._choose(deps, groups, scores, self.ratio), self.ratio)
        goal = self.target_macs * cost.macs
        low, high = 0.0, MAX_RATIO
        best = _Plan(deps, self._choose(deps, groups, scores, high), high)
        reachable = estimate_macs(cost, deps, best.pruned) <= goal
        for _ in range(_SEARCH_STEPS if reachable else 0):
            middle = (low + high) / 2
            pruned = self._choose(deps, groups, scores, middle)
            if estimate_macs(cost, deps, pruned) <= goal:
                high, best = middle, _Plan(deps, pruned, middle)
            else:
                low = middle
        if reachable:
            best.pruned = restore_within(cost, deps, groups, scores, best.pruned, goal,
                                         round_to=self.round_to)
        if record:
            left = estimate_macs(cost, deps, best.pruned) / max(cost.macs, 1)
            verdict = "reached" if reachable else "not reachable (the most it can remove)"
            self.explain(f"prune: target_macs={self.target_macs} {verdict}: ratio"
                         f" {best.ratio:.3f} per group leaves {left:.2f} of the MACs")
        return best

    def _within_budget(self, model, snapshot, plan: _Plan, scores, statistics, cost) -> _Plan:
        """The largest ratio up to the target's that keeps the budget on calibration data."""
        budget = self.context.budget
        trials = BudgetTrials(model, self.context.calibration,
                              getattr(self.context.calibration, "labels", None), budget)

        def attempt(ratio: float):
            trial = ir.from_proto(snapshot)
            deps = self._analyze(trial)
            candidate = self._plan(deps, scores, cost, ratio=ratio)
            if not candidate.pruned:
                return True, candidate
            self._cut(trial, candidate, statistics)
            judged, _ = trials.judge(trial)
            return judged.ok, candidate

        ok, _ = attempt(plan.ratio)
        if ok:
            self.explain(f"prune: the budget {budget} holds at the MAC target on calibration"
                         f" data ({trials.count} trial)")
            return plan
        low, high, best_ratio = 0.0, plan.ratio, 0.0
        for _ in range(_BUDGET_STEPS):
            middle = (low + high) / 2
            ok, _ = attempt(middle)
            if ok:
                low = best_ratio = middle
            else:
                high = middle
        final = self._plan(plan.deps, scores, cost, ratio=best_ratio)
        left = estimate_macs(cost, plan.deps, final.pruned) / max(cost.macs, 1)
        self.explain(f"prune: the budget {budget} stops pruning at ratio {best_ratio:.3f}"
                     f" ({left:.2f} of the MACs, target {self.target_macs}) after"
                     f" {trials.count} trials on calibration data")
        return final

    # -- the cut ----------------------------------------------------------------------------
    def _cut(self, model: ir.Model, plan: _Plan, statistics, *, record: bool = False) -> None:
        deps, pruned = plan.deps, plan.pruned
        replacements = {}
        refitted = []
        for layer in deps.sinks:
            stats = statistics.get(layer.node.name)
            keep_in = keep_mask(deps, layer.atoms, pruned)
            if stats is None or keep_in.all():
                continue
            fitted = refit(layer, stats, keep_in)
            if fitted is None:
                continue
            weight, bias = fitted
            replacements[(id(layer.node), 1)] = (weight, layer.weight_axis)
            refitted.append((layer, bias))
        apply_pruning(model, deps, pruned, replacements)
        for layer, bias in refitted:
            _set_bias(layer, bias, deps, pruned)
        recalibrated = 0
        if self.recalibrate_bn:
            nodes = downstream_batchnorms(model, _cut_sinks(deps, pruned))
            kept = {node.name: keep_mask(deps, atoms, pruned) for node, atoms in deps.batchnorms}
            if nodes:
                recalibrated = recalibrate_batchnorms(model, nodes, self.context.calibration,
                                                      self._bn_before, kept, set_constant_input)
        if record:
            self.stats["channels_removed"] = int(sum(
                (~keep_mask(deps, layer.atoms, pruned)).sum() for layer in deps.sources))
            self.stats["classes_removed"] = len(pruned)
            self.stats["layers_refitted"] = len(refitted)
            self.stats["batchnorms_recalibrated"] = recalibrated
            self.stats["ratio"] = round(plan.ratio, 4)
            for layer in deps.sources:
                mask = keep_mask(deps, layer.atoms, pruned)
                if not mask.all():
                    self.explain(f"prune: {node_label(layer.node)}: {mask.size} ->"
                                 f" {int(mask.sum())}"
                                 " output channels")


def _set_bias(layer, bias: np.ndarray, deps: Dependencies, pruned: set[int]) -> None:
    """Write a refitted bias, cut to the layer's kept outputs if it is also a source."""
    node = layer.node
    source = next((s for s in deps.sources if s.node is node), None)
    if source is not None:
        bias = bias[keep_mask(deps, source.atoms, pruned)]
    set_constant_input(node, 2, bias, f"{node.name}_bias_pruned")


def _cut_sinks(deps: Dependencies, pruned: set[int]) -> list[ir.Node]:
    """The layers that lost inputs: what they compute has changed."""
    return [layer.node for layer in deps.sinks if not keep_mask(deps, layer.atoms, pruned).all()]


def _name_nodes(model: ir.Model) -> None:
    """Every node gets a unique name (statistics and trials find layers by name)."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
            while node.name in seen:
                node.name += "_"
        seen.add(node.name)
