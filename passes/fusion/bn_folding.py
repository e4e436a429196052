"""BatchNormalization folding: into the Conv / ConvTranspose / Gemm / MatMul / BatchNormalization
that produces its input, or forward into the unpadded Conv that consumes its output.

Inference-mode BatchNormalization is ``y = scale * x + shift`` per channel of axis 1, with
``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale``. Folded weights are
computed in float64 and cast back. A BatchNormalization after anything else (a Concat, a Relu)
stays one node: it is already the single-node form of a per-channel affine map.
"""

from __future__ import annotations

import onnx_ir as ir

from graphopt.passes.channels import (
    absorb_into_next_conv,
    batchnorm_affine,
    check_next_conv,
    extend_chain,
    fold_chain_into_producer,
    plan_producer_fold,
)
from graphopt.passes.fusion.framework import CheckResult, Match, Rule, register_rule
from graphopt.passes.rewrite_utils import rank, remove_if_dead, single_consumer

__all__ = ["BatchNormIntoProducer", "BatchNormIntoNextConv"]


@register_rule
class BatchNormIntoProducer(Rule):
    name = "bn_fold"
    anchors = ("BatchNormalization",)
    description = "BatchNormalization folded into the preceding Conv/ConvTranspose/Gemm/MatMul/BN"

    def check(self, node: ir.Node) -> CheckResult:
        affine = batchnorm_affine(node)
        if isinstance(affine, str):
            return affine
        plan = plan_producer_fold(node, node.inputs[0])
        if isinstance(plan, str):
            return plan
        producer = plan.producer.op_type
        if plan.axis != 1:
            return (
                f"BatchNormalization normalises axis 1 but the rank-{plan.rank} {producer}"
                f" output has its channels on axis {plan.axis}"
            )
        if plan.channels != affine.scale.size:
            return (
                f"BatchNormalization has {affine.scale.size} channels,"
                f" the {producer} output {plan.channels}"
            )
        reason = plan.absorber.decline(plan.producer, affine)
        if reason is not None:
            return f"BatchNormalization after {producer}: {reason}"
        affine, chain = extend_chain(node, affine, plan)
        return Match(node, {"plan": plan, "affine": affine, "chain": chain})

    def rewrite(self, match: Match) -> None:
        fold_chain_into_producer(match["plan"], match["affine"], match["chain"])


@register_rule
class BatchNormIntoNextConv(Rule):
    name = "bn_forward_conv"
    anchors = ("BatchNormalization",)
    description = "BatchNormalization folded forward into the unpadded Conv it feeds"

    def check(self, node: ir.Node) -> CheckResult:
        affine = batchnorm_affine(node)
        if isinstance(affine, str):
            return None  # already explained by bn_fold
        output = node.outputs[0]
        consumer = single_consumer(output)
        if consumer is None:
            return "BatchNormalization output has several consumers or is a graph output"
        layout = check_next_conv(consumer, output)
        if isinstance(layout, str):
            return f"BatchNormalization {layout}"
        conv_rank, channels = layout
        if rank(node.inputs[0]) not in (None, conv_rank) or channels != affine.scale.size:
            return "BatchNormalization and the next Conv disagree on rank or channels"
        return Match(node, {"conv": consumer, "affine": affine})

    def rewrite(self, match: Match) -> None:
        node, conv = match.node, match["conv"]
        absorb_into_next_conv(conv, match["affine"])
        conv.replace_input_with(0, node.inputs[0])
        remove_if_dead(node)
