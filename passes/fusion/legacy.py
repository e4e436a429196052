"""Legacy operators modernised: Sum of one input -> nothing, Sum of two -> Add."""

from __future__ import annotations

import onnx_ir as ir

from graphopt.passes.fusion.framework import CheckResult, Match, Rule, register_rule
from graphopt.passes.fusion.rewrite_utils import bypass, replace_node

__all__ = ["SumToAdd", "SingleInputSum"]


@register_rule
class SingleInputSum(Rule):
    name = "sum_single"
    anchors = ("Sum",)
    description = "Sum of one input is its input"

    def check(self, node: ir.Node) -> CheckResult:
        if len(node.inputs) != 1:
            return None
        return Match(node)

    def rewrite(self, match: Match) -> None:
        bypass(match.node, match.node.inputs[0])


@register_rule
class SumToAdd(Rule):
    name = "sum_to_add"
    anchors = ("Sum",)
    description = "Sum of two inputs becomes Add (same broadcasting)"

    def check(self, node: ir.Node) -> CheckResult:
        if len(node.inputs) != 2:
            return None
        return Match(node)

    def rewrite(self, match: Match) -> None:
        node = match.node
        replace_node(node, ir.node("Add", list(node.inputs), name=node.name))
