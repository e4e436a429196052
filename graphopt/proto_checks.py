"""Models that onnx-ir and onnxruntime would read differently, refused before deserialisation.

graphopt rewrites onnx-ir's reading of a file while onnxruntime runs the file itself, so the
two must agree on what the file says. They do not when:

- a graph has two initializers with one name (onnxruntime keeps the first, onnx-ir the last);
- a graph has sparse initializers (onnx-ir drops them; a sparse initializer listed as a graph
  input then becomes an input that must be fed);
- a name is defined twice (two nodes, or a node and a graph input, write the same value).

Each is one :class:`~graphopt.errors.ModelLoadError` line naming the tensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx

from graphopt.errors import ModelLoadError

__all__ = ["check_proto"]


def _graphs(graph: onnx.GraphProto, where: str = "graph") -> Iterator[tuple[str, onnx.GraphProto]]:
    yield where, graph
    for node in graph.node:
        for attr in node.attribute:
            label = f"subgraph {attr.name!r} of node {node.name or node.op_type!r}"
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g, label)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graphs(sub, label)


def check_proto(proto: onnx.ModelProto, path: Path | str) -> None:
    """Raise one line for the first construct the two readers would disagree on."""
    for where, graph in _graphs(proto.graph):
        seen: set[str] = set()
        for tensor in graph.initializer:
            if tensor.name in seen:
                raise ModelLoadError(
                    f"{path}: {where} has two initializers named {tensor.name!r} (onnxruntime"
                    " uses the first, other tools the last); refusing an ambiguous model"
                )
            seen.add(tensor.name)
        if len(graph.sparse_initializer):
            name = graph.sparse_initializer[0].values.name
            raise ModelLoadError(
                f"{path}: {where} has a sparse initializer ({name!r}), which graphopt cannot"
                " keep; store it as a dense initializer"
            )
        defined = {v.name for v in graph.input} | seen
        for node in graph.node:
            for name in node.output:
                if not name:
                    continue
                if name in defined:
                    raise ModelLoadError(
                        f"{path}: {where}: value {name!r} is defined twice (node"
                        f" {node.name or node.op_type!r} writes a name already defined)"
                    )
                defined.add(name)
