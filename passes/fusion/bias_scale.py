"""Add / Mul of a per-channel constant folded into the operator that produces the other operand.

``Conv(x) + c`` becomes a Conv bias, ``Conv(x) * k`` scaled weights (and bias); likewise for
ConvTranspose, Gemm and BatchNormalization, and ``MatMul(x, W) * k`` (``MatMul + Add`` is
``matmul_add_to_gemm``'s). Both operand orders are tried (``framework.commuted``). The constant
must be an initializer that varies only along the producer's channel axis.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from graphopt.passes.channels import (
    ChannelAffine,
    channel_vector,
    extend_chain,
    fold_chain_into_producer,
    plan_producer_fold,
)
from graphopt.passes.fusion.framework import (
    CheckResult,
    Match,
    Rule,
    commuted,
    constant_array,
    register_rule,
)

__all__ = ["AddIntoBias", "MulIntoWeights"]


class _ChannelConstantRule(Rule):
    """Shared check/rewrite: ``op(data, constant)`` with ``data`` from an absorbing producer."""

    skip_producers: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def affine(self, vector: np.ndarray) -> ChannelAffine:
        ...

    def check(self, node: ir.Node) -> CheckResult:
        for data, other in commuted(node):
            if data.const_value is not None:
                continue
            if other.const_value is not None and other.is_graph_input():
                return f"{node.op_type} operand {other.name} is a graph input, not a constant"
            constant = constant_array(other)
            if constant is not None:
                return self._check_pair(node, data, constant)
        return None

    def _check_pair(self, node: ir.Node, data: ir.Value, constant: np.ndarray) -> CheckResult:
        producer = data.producer()
        if producer is not None and producer.op_type in self.skip_producers:
            return None
        plan = plan_producer_fold(node, data)
        if isinstance(plan, str):
            return plan
        vector = channel_vector(constant, rank=plan.rank, axis=plan.axis, channels=plan.channels)
        if vector is None:
            return (
                f"{node.op_type} constant of shape {list(constant.shape)} is not per-channel"
                f" for the {plan.producer.op_type} output (channels on axis {plan.axis})"
            )
        affine = self.affine(vector)
        reason = plan.absorber.decline(plan.producer, affine)
        if reason is not None:
            return f"{node.op_type} after {plan.producer.op_type}: {reason}"
        affine, chain = extend_chain(node, affine, plan)
        return Match(node, {"plan": plan, "affine": affine, "chain": chain})

    def rewrite(self, match: Match) -> None:
        fold_chain_into_producer(match["plan"], match["affine"], match["chain"])


@register_rule
class AddIntoBias(_ChannelConstantRule):
    name = "add_bias"
    anchors = ("Add",)
    description = "Add of a per-channel constant folded into the producer's bias"
    skip_producers = frozenset({"MatMul"})

    def affine(self, vector: np.ndarray) -> ChannelAffine:
        return ChannelAffine.from_shift(vector)


@register_rule
class MulIntoWeights(_ChannelConstantRule):
    name = "mul_scale"
    anchors = ("Mul",)
    description = "Mul by a per-channel constant folded into the producer's weights and bias"

    def affine(self, vector: np.ndarray) -> ChannelAffine:
        return ChannelAffine.from_scale(vector)
