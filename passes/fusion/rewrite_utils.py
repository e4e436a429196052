"""Small graph-editing helpers shared by the rules (always through onnx-ir's use-def API)."""

from __future__ import annotations

import onnx_ir as ir

__all__ = ["bypass", "replace_node", "single_consumer", "only_used_by"]


def bypass(node: ir.Node, source: ir.Value) -> None:
    """Remove ``node``, whose single output equals ``source``; graph outputs keep their names."""
    output = node.outputs[0]
    if output.is_graph_output() and not (source.is_graph_input() or source.is_graph_output()):
        name = output.name
        output.name = None
        source.name = name
    output.replace_all_uses_with(source, replace_graph_outputs=True)
    node.graph.remove(node, safe=True)


def replace_node(old: ir.Node, new: ir.Node) -> None:
    """Insert ``new`` after ``old``, move every use of old's outputs to new's, remove ``old``."""
    graph = old.graph
    graph.insert_after(old, new)
    for old_out, new_out in zip(old.outputs, new.outputs, strict=False):
        new_out.shape, new_out.type = old_out.shape, old_out.type
        name = old_out.name
        is_output = old_out.is_graph_output()
        old_out.replace_all_uses_with(new_out, replace_graph_outputs=True)
        if is_output or name:
            old_out.name = None
            new_out.name = name
    graph.remove(old, safe=True)


def single_consumer(value: ir.Value) -> ir.Node | None:
    """The one node reading ``value``, if exactly one does and it is not a graph output."""
    if value.is_graph_output():
        return None
    users = {id(node): node for node, _ in value.uses()}
    return next(iter(users.values())) if len(users) == 1 else None


def only_used_by(value: ir.Value, node: ir.Node) -> bool:
    """True if ``node`` is the only reader of ``value`` and ``value`` is not a graph output."""
    return single_consumer(value) is node
