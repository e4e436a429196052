"""Clip and Relu merges: consecutive clamps become one clamp.

- ``relu_relu``: Relu(Relu(x)) -> Relu(x).
- ``clip_relu``: Relu(Clip(x, lo, hi)) -> Clip(x, max(lo, 0), hi) (the Relu alone goes when
  lo >= 0).
- ``relu_clip``: Clip(Relu(x), lo, hi) -> Clip(x, max(lo, 0), hi).
- ``clip_clip``: Clip(Clip(x, a, b), c, d) -> Clip(x, max(a, c), min(b, d)) when the ranges meet.

Clip bounds must be scalar initializers (opset >= 11 inputs; absent means unbounded). A merged
range that would be empty is declined: Clip's behaviour for min > max changed between opsets.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from graphopt.passes.fusion.framework import (
    CheckResult,
    Match,
    Rule,
    constant_array,
    is_standard,
    register_rule,
)
from graphopt.passes.rewrite_utils import (
    add_initializer,
    bypass,
    bypass_blocker,
    drop_unused_initializer,
    remove_if_dead,
    replace_node,
    single_consumer,
)

__all__ = ["ReluRelu", "ClipRelu", "ReluClip", "ClipClip", "ClipRange"]


@dataclasses.dataclass(frozen=True)
class ClipRange:
    """A Clip's constant bounds; None means unbounded on that side."""

    low: float | None
    high: float | None

    def intersect(self, other: ClipRange) -> ClipRange:
        return ClipRange(_pick(max, self.low, other.low), _pick(min, self.high, other.high))

    @property
    def empty(self) -> bool:
        return self.low is not None and self.high is not None and self.low > self.high


def _pick(choose, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)


_NON_NEGATIVE = ClipRange(0.0, None)
_UNKNOWN_TYPE = "the element type of the clipped tensor is unknown"


def _bound(node: ir.Node, index: int, label: str) -> float | None | str:
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None:
        return None
    array = constant_array(value)
    if array is None:
        return f"Clip {label} {value.name!r} is not a constant initializer"
    if array.size != 1:
        return f"Clip {label} {value.name!r} is not a scalar"
    return array.item()


def clip_range(node: ir.Node) -> ClipRange | str:
    """The constant range of a Clip node, or why it has none."""
    if "min" in node.attributes or "max" in node.attributes:
        return "Clip bounds are attributes (opset < 11): upgrade the opset first"
    low = _bound(node, 1, "min")
    high = _bound(node, 2, "max")
    for bound in (low, high):
        if isinstance(bound, str):
            return bound
    return ClipRange(low, high)


def _producer(value: ir.Value, op_type: str) -> ir.Node | None:
    node = value.producer()
    if node is None or node.op_type != op_type or not is_standard(node):
        return None
    return node


def _new_clip(graph: ir.Graph, like: ir.Node, x: ir.Value, bounds: ClipRange) -> ir.Node:
    """A Clip of ``x`` to ``bounds`` with fresh scalar initializers of x's element type."""
    dtype = x.dtype.numpy()
    inputs: list[ir.Value | None] = [x, None, None]
    for index, (bound, label) in enumerate(((bounds.low, "min"), (bounds.high, "max")), 1):
        if bound is not None:
            hint = f"{like.name or 'clip'}_{label}"
            inputs[index] = add_initializer(graph, np.array(bound, dtype), hint)
    while inputs[-1] is None:
        inputs.pop()
    return ir.node("Clip", inputs, name=like.name)


def _replace_with_clip(outer: ir.Node, inner: ir.Node, x: ir.Value, bounds: ClipRange) -> None:
    graph = outer.graph
    old_bounds = list(outer.inputs[1:]) + list(inner.inputs[1:])
    replace_node(outer, _new_clip(graph, outer, x, bounds))
    remove_if_dead(inner)
    for value in old_bounds:
        drop_unused_initializer(graph, value)


def _merged_match(
    node: ir.Node, inner: ir.Node, merged: ClipRange, empty_reason: str, inner_label: str
) -> CheckResult:
    """The checks every range merge shares once the merged range is known."""
    if merged.empty:
        return empty_reason
    if single_consumer(node.inputs[0]) is not node:
        return f"the {inner_label} has other consumers"
    if inner.inputs[0].dtype is None:
        return _UNKNOWN_TYPE
    return Match(node, {"redundant": False, "inner": inner, "bounds": merged})


def _negative_clip(bounds: ClipRange) -> str:
    return f"Clip max {bounds.high} < 0: Relu and Clip do not merge into one range"


class _RangeMerge(Rule):
    """Rewrite shared by the merges: one Clip to the merged range replaces both nodes."""

    def rewrite(self, match: Match) -> None:
        node = match.node
        if match["redundant"]:
            bypass(node, node.inputs[0])
            return
        inner = match["inner"]
        _replace_with_clip(node, inner, inner.inputs[0], match["bounds"])


@register_rule
class ReluRelu(Rule):
    name = "relu_relu"
    anchors = ("Relu",)
    description = "Relu of a Relu is the inner Relu"

    def check(self, node: ir.Node) -> CheckResult:
        inner = _producer(node.inputs[0], "Relu")
        if inner is None:
            return None
        return bypass_blocker(node, node.inputs[0]) or Match(node)

    def rewrite(self, match: Match) -> None:
        bypass(match.node, match.node.inputs[0])


@register_rule
class ClipRelu(_RangeMerge):
    name = "clip_relu"
    anchors = ("Relu",)
    description = "Relu after a Clip raises the Clip's min to 0"

    def check(self, node: ir.Node) -> CheckResult:
        inner = _producer(node.inputs[0], "Clip")
        if inner is None:
            return None
        bounds = clip_range(inner)
        if isinstance(bounds, str):
            return bounds
        if bounds.low is not None and bounds.low >= 0:
            return bypass_blocker(node, node.inputs[0]) or Match(node, {"redundant": True})
        merged = bounds.intersect(_NON_NEGATIVE)
        return _merged_match(node, inner, merged, _negative_clip(bounds), "Clip")


@register_rule
class ReluClip(_RangeMerge):
    name = "relu_clip"
    anchors = ("Clip",)
    description = "Clip after a Relu absorbs it (min raised to 0)"

    def check(self, node: ir.Node) -> CheckResult:
        inner = _producer(node.inputs[0], "Relu")
        if inner is None:
            return None
        bounds = clip_range(node)
        if isinstance(bounds, str):
            return bounds
        merged = bounds.intersect(_NON_NEGATIVE)
        return _merged_match(node, inner, merged, _negative_clip(bounds), "Relu")


@register_rule
class ClipClip(_RangeMerge):
    name = "clip_clip"
    anchors = ("Clip",)
    description = "Clip of a Clip becomes one Clip to the intersected range"

    def check(self, node: ir.Node) -> CheckResult:
        inner = _producer(node.inputs[0], "Clip")
        if inner is None:
            return None
        outer_bounds, inner_bounds = clip_range(node), clip_range(inner)
        for bounds in (outer_bounds, inner_bounds):
            if isinstance(bounds, str):
                return bounds
        merged = inner_bounds.intersect(outer_bounds)
        reason = f"the Clip ranges do not intersect ({merged.low} > {merged.high})"
        return _merged_match(node, inner, merged, reason, "first Clip")
