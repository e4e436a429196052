"""Gemm formation: 2-D ``MatMul + Add`` (or a Gemm without C, + Add) becomes one Gemm, and 2-D
Transposes feeding a Gemm (or a 2-D MatMul) become its ``transA`` / ``transB`` flags.

Gemm computes ``alpha * A' @ B' + beta * C`` on 2-D A and B, with C unidirectionally
broadcastable to the [M, N] result, so both rules insist on known 2-D shapes.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from graphopt.passes.channels import FLOAT_TYPES
from graphopt.passes.fusion.framework import CheckResult, Match, Rule, commuted, register_rule
from graphopt.passes.rewrite_utils import rank, replace_node, single_consumer

__all__ = ["MatMulAddToGemm", "TransposeIntoGemm"]

logger = logging.getLogger(__name__)

_TRANS_FLAGS = ("transA", "transB")


def _broadcasts_onto(bias: ir.Value, target: ir.Value) -> bool:
    """True if ``bias`` broadcasts onto ``target``'s 2-D shape without growing it."""
    if bias.shape is None or target.shape is None or len(bias.shape) > 2:
        return False
    dims = [1] * (2 - len(bias.shape)) + list(bias.shape)
    return all(d == 1 or d == t for d, t in zip(dims, target.shape, strict=True))


def _matmul_2d_reason(matmul: ir.Node) -> str | None:
    """Why a MatMul cannot become a Gemm (None when it can)."""
    a, b = matmul.inputs
    if rank(a) != 2 or rank(b) != 2:
        return "MatMul operands are not both known to be 2-D"
    if a.dtype not in FLOAT_TYPES:
        return "MatMul is not floating point"
    return None


@register_rule
class MatMulAddToGemm(Rule):
    name = "matmul_add_to_gemm"
    anchors = ("Add",)
    description = "2-D MatMul (or Gemm without C) followed by Add of a broadcastable tensor: Gemm"

    def check(self, node: ir.Node) -> CheckResult:
        for data, bias in commuted(node):
            product = data.producer()
            if product is None or product.domain not in ("", "ai.onnx"):
                continue
            if product.op_type == "MatMul" or (
                product.op_type == "Gemm" and _gemm_without_c(product)
            ):
                return self._check_pair(node, product, data, bias)
        return None

    @staticmethod
    def _check_pair(node: ir.Node, product: ir.Node, data: ir.Value, bias: ir.Value) -> CheckResult:
        what = product.op_type
        reason = _matmul_2d_reason(product) if what == "MatMul" else None
        if reason is not None:
            return f"Add after MatMul: {reason}"
        if single_consumer(data) is not node:
            return (
                f"Add after {what}: the {what} output is also used elsewhere or is a graph output"
            )
        if bias is data:
            return f"Add after {what}: both operands are the {what} output"
        if not _broadcasts_onto(bias, data):
            return f"Add after {what}: the other operand does not broadcast onto [M, N]"
        return Match(node, {"product": product, "bias": bias})

    def rewrite(self, match: Match) -> None:
        product, bias = match["product"], match["bias"]
        logger.debug("%s %s + Add -> Gemm", product.op_type, product.name)
        attributes = [a for a in product.attributes.values() if a.name != "beta"]
        gemm = ir.Node(
            "", "Gemm", [product.inputs[0], product.inputs[1], bias], attributes, name=product.name
        )
        replace_node(match.node, gemm)
        product.graph.remove(product, safe=True)


def _gemm_without_c(gemm: ir.Node) -> bool:
    return len(gemm.inputs) < 3 or gemm.inputs[2] is None


def _foldable_transpose(value: ir.Value, reader: ir.Node) -> ir.Node | None:
    """The 2-D Transpose producing ``value`` if only ``reader`` reads it."""
    transpose = value.producer()
    if transpose is None or transpose.op_type != "Transpose":
        return None
    if transpose.domain not in ("", "ai.onnx") or rank(transpose.inputs[0]) != 2:
        return None
    if tuple(transpose.attributes.get_ints("perm", (1, 0))) != (1, 0):
        return None
    return transpose if single_consumer(value) is reader else None


@register_rule
class TransposeIntoGemm(Rule):
    name = "transpose_into_gemm"
    anchors = ("Gemm", "MatMul")
    description = "2-D Transpose feeding Gemm (or MatMul) folded into transA/transB"

    def check(self, node: ir.Node) -> CheckResult:
        if len(node.inputs) < 2 or node.inputs[0] is node.inputs[1]:
            return None
        found = {
            index: transpose
            for index in (0, 1)
            if (transpose := _foldable_transpose(node.inputs[index], node)) is not None
        }
        if not found:
            return None
        if node.op_type == "MatMul":
            reason = _matmul_2d_reason(node)
            if reason is not None:
                return f"Transpose before MatMul: {reason}"
        return Match(node, {"transposes": found})

    def rewrite(self, match: Match) -> None:
        node = match.node
        if node.op_type == "MatMul":
            gemm = ir.node("Gemm", list(node.inputs), name=node.name)
            replace_node(node, gemm)
            node = gemm
        for index, transpose in match["transposes"].items():
            flag = _TRANS_FLAGS[index]
            flipped = 1 - node.attributes.get_int(flag, 0)
            node.attributes[flag] = ir.AttrInt64(flag, flipped)
            node.replace_input_with(index, transpose.inputs[0])
            transpose.graph.remove(transpose, safe=True)
