"""Whole-graph deduplication steps of ``fuse``: common subexpressions and repeated initializers.

Both wrap onnx-ir's maintained passes (``CommonSubexpressionEliminationPass``,
``DeduplicateInitializersPass``) and count what they removed, so ``fuse`` reports them beside
its rules and repeats the rules when deduplication exposes new matches (two identical
Transposes merged into one may now sit between two other Transposes, for example).
"""

from __future__ import annotations

import logging

import onnx_ir as ir
import onnx_ir.passes.common as common_passes

from graphopt.passes.fusion.framework import GraphStep, register_step

__all__ = ["CommonSubexpressions", "DuplicateInitializers", "CSE_TENSOR_SIZE_LIMIT"]

logger = logging.getLogger(__name__)

# Constant attributes up to this many elements take part in CSE (onnx-ir's default is 10).
CSE_TENSOR_SIZE_LIMIT = 1024
# Initializers up to this many elements are compared byte for byte: the constants rules create
# (shapes, bounds, reciprocals); hashing every weight on each round would dominate fuse time.
DEDUPE_SIZE_LIMIT = 1024


def _node_count(graph: ir.Graph) -> int:
    return sum(1 for _ in graph)


@register_step
class DuplicateInitializers(GraphStep):
    name = "dedupe_initializers"
    description = "initializers with equal dtype, shape and bytes stored once"

    def run(self, model: ir.Model) -> int:
        before = len(model.graph.initializers)
        common_passes.DeduplicateInitializersPass(size_limit=DEDUPE_SIZE_LIMIT)(model)
        removed = before - len(model.graph.initializers)
        if removed:
            logger.debug("dedupe_initializers: %d initializer(s) removed", removed)
        return removed


@register_step
class CommonSubexpressions(GraphStep):
    name = "cse"
    description = "nodes with the same operator, inputs and attributes computed once"

    def run(self, model: ir.Model) -> int:
        before = _node_count(model.graph)
        common_passes.CommonSubexpressionEliminationPass(size_limit=CSE_TENSOR_SIZE_LIMIT)(model)
        removed = before - _node_count(model.graph)
        if removed:
            logger.debug("cse: %d node(s) removed", removed)
        return max(removed, 0)
