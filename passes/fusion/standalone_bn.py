"""A BatchNormalization with nothing to fold into, rewritten as one per-channel Mul + Add.

Opt-in (``fuse(standalone_bn=affine)``): a single BatchNormalization is already the one-node
form of the affine map, so by default it stays. Some consumers prefer the explicit form:
quantizers that calibrate Mul/Add, runtimes without an inference BatchNormalization kernel.
A BatchNormalization that ``bn_fold`` or ``bn_forward_conv`` can take is left to them.
"""

from __future__ import annotations

import onnx_ir as ir

from graphopt.passes.channels import batchnorm_affine, check_next_conv, plan_producer_fold
from graphopt.passes.fusion.framework import CheckResult, Match, Rule, register_rule
from graphopt.passes.rewrite_utils import (
    add_initializer,
    drop_unused_initializer,
    rank,
    single_consumer,
)

__all__ = ["StandaloneBatchNormToAffine"]


@register_rule
class StandaloneBatchNormToAffine(Rule):
    name = "bn_to_affine"
    anchors = ("BatchNormalization",)
    description = "BatchNormalization with nothing to fold into -> Mul + Add (opt-in)"
    default_enabled = False

    def check(self, node: ir.Node) -> CheckResult:
        affine = batchnorm_affine(node)
        if isinstance(affine, str):
            return None  # bn_fold explains why
        if not isinstance(plan_producer_fold(node, node.inputs[0]), str):
            return None  # bn_fold takes it
        consumer = single_consumer(node.outputs[0])
        if consumer is not None and not isinstance(
            check_next_conv(consumer, node.outputs[0]), str
        ):
            return None  # bn_forward_conv takes it
        value_rank = rank(node.inputs[0])
        if value_rank is None or value_rank < 2:
            return "BatchNormalization input rank unknown: cannot shape the Mul/Add constants"
        dtype = node.inputs[0].dtype
        if dtype is None or not dtype.is_floating_point():
            return "BatchNormalization input type unknown"
        return Match(node, {"affine": affine, "rank": value_rank, "dtype": dtype.numpy()})

    def rewrite(self, match: Match) -> None:
        node, affine = match.node, match["affine"]
        graph = node.graph
        shape = (-1,) + (1,) * (match["rank"] - 2)
        hint = node.name or "bn"
        scale = add_initializer(
            graph, affine.scale.reshape(shape).astype(match["dtype"]), f"{hint}_scale"
        )
        shift = add_initializer(
            graph, affine.shift.reshape(shape).astype(match["dtype"]), f"{hint}_shift"
        )
        mul = ir.node("Mul", [node.inputs[0], scale], name=f"{hint}_mul")
        add = ir.node("Add", [mul.outputs[0], shift], name=f"{hint}_add")
        output, params = node.outputs[0], list(node.inputs[1:])
        for value in (mul.outputs[0], add.outputs[0]):
            value.shape, value.type = output.shape, output.type
        graph.insert_after(node, [mul, add])
        name = output.name
        output.replace_all_uses_with(add.outputs[0], replace_graph_outputs=True)
        output.name = None
        add.outputs[0].name = name
        graph.remove(node, safe=True)
        for value in params:
            drop_unused_initializer(graph, value)

