"""Cheap structural checks on an onnx-ir graph (no serialization, any model size).

Used to reject truncated files at load time and as every pass's postcondition: each value a
node reads must be a graph input, an initializer or the output of an earlier node, and every
graph output must be produced.
"""

from __future__ import annotations

import onnx_ir as ir

__all__ = ["structural_problems"]


def structural_problems(graph: ir.Graph, *, limit: int = 5) -> list[str]:
    """Up to ``limit`` human-readable problems; empty when the graph is well formed."""
    problems: list[str] = []
    available = {id(v) for v in graph.inputs} | {id(v) for v in graph.initializers.values()}
    for node in graph:
        label = node.name or node.op_type
        for value in node.inputs:
            if value is None or id(value) in available:
                continue
            if value.producer() is None:
                problems.append(f"node {label!r} reads {value.name!r}, which nothing produces")
            else:
                problems.append(f"node {label!r} reads {value.name!r} before it is produced")
            if len(problems) >= limit:
                return problems
        available.update(id(v) for v in node.outputs)
    for value in graph.outputs:
        if id(value) not in available:
            problems.append(f"output {value.name!r} is never produced")
    return problems[:limit]
