"""Small graph-editing helpers shared by the rules (always through onnx-ir's use-def API)."""

from __future__ import annotations

import weakref

import numpy as np
import onnx_ir as ir

__all__ = [
    "constant_tensor",
    "constant_array",
    "forget_names",
    "node_label",
    "unique_name",
    "bypass",
    "replace_node",
    "single_consumer",
    "only_used_by",
    "bypass_blocker",
    "add_initializer",
    "remove_if_dead",
    "drop_unused_initializer",
    "static_shape",
    "rank",
    "set_constant_input",
]


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


def bypass_blocker(node: ir.Node, source: ir.Value) -> str | None:
    """Why ``bypass(node, source)`` would change a graph output's name, or None if it is safe.

    A graph output produced by ``node`` can only take over ``source``'s producer if ``source``
    can be renamed: graph inputs, other graph outputs and initializers cannot.
    """
    output = node.outputs[0]
    if not output.is_graph_output():
        return None
    if source.is_graph_input():
        return f"output {output.name!r} is a graph output fed directly by graph input"
    if source.is_graph_output():
        return f"output {output.name!r} and its source {source.name!r} are both graph outputs"
    if source.is_initializer():
        return f"output {output.name!r} is a graph output fed directly by an initializer"
    return None


def remove_if_dead(node: ir.Node) -> bool:
    """Remove ``node`` if none of its outputs is read or is a graph output; True if removed."""
    if node.graph is None:
        return False
    if any(out.uses() or out.is_graph_output() for out in node.outputs):
        return False
    graph = node.graph
    inputs = list(node.inputs)
    graph.remove(node, safe=True)
    for value in inputs:
        drop_unused_initializer(graph, value)
    return True


def drop_unused_initializer(graph: ir.Graph, value: ir.Value | None) -> None:
    """Forget an initializer that no node reads any more (graph inputs/outputs are kept)."""
    if value is None or not value.is_initializer() or value.uses():
        return
    if value.is_graph_input() or value.is_graph_output():
        return
    if value.name in graph.initializers and graph.initializers[value.name] is value:
        graph.initializers.pop(value.name)


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape if every dimension is a known integer, else None."""
    if value is None or value.shape is None:
        return None
    dims = tuple(value.shape)
    if not all(isinstance(d, int) for d in dims):
        return None
    return dims


def rank(value: ir.Value | None) -> int | None:
    """The value's rank if its shape is known, else None."""
    if value is None or value.shape is None:
        return None
    return len(value.shape)


# Names in use per graph, built once per fuse run (a superset is safe: it only adds suffixes).
_TAKEN_NAMES: weakref.WeakKeyDictionary[ir.Graph, set[str]] = weakref.WeakKeyDictionary()


def node_label(node: ir.Node) -> str:
    """How an explanation names ``node``: what a person can find in the model file.

    A node named in the file by its name and operator (``conv1 (Conv)``); an unnamed one by
    its operator and first named output tensor (``Conv (output 'conv1_1')``), since that
    tensor name is in the file (Netron and onnx.helper show it); failing that, the operator."""
    if node.name:
        return f"{node.name} ({node.op_type})"
    named = next((v.name for v in node.outputs if v is not None and v.name), None)
    return f"{node.op_type} (output {named!r})" if named else f"unnamed {node.op_type}"


def forget_names(graph: ir.Graph) -> None:
    """Drop the name index of ``graph`` (call when other code may have added names)."""
    _TAKEN_NAMES.pop(graph, None)


def _taken_names(graph: ir.Graph) -> set[str]:
    taken = _TAKEN_NAMES.get(graph)
    if taken is None:
        taken = set(graph.initializers)
        taken.update(v.name for v in graph.inputs if v.name)
        taken.update(v.name for node in graph for v in node.outputs if v.name)
        _TAKEN_NAMES[graph] = taken
    return taken


def unique_name(graph: ir.Graph, hint: str) -> str:
    """A value name not yet used in ``graph``, derived from ``hint`` (reserved at once)."""
    return _unique_name(graph, hint)


def _unique_name(graph: ir.Graph, hint: str) -> str:
    taken = _taken_names(graph)
    name, index = hint, 0
    while name in taken or name in graph.initializers:
        index += 1
        name = f"{hint}_{index}"
    taken.add(name)
    return name


def add_initializer(graph: ir.Graph, array: np.ndarray, name_hint: str) -> ir.Value:
    """A new initializer holding ``array`` under a name derived from ``name_hint``."""
    name = _unique_name(graph, name_hint)
    array = np.asarray(array)
    tensor = ir.Tensor(np.ascontiguousarray(array).reshape(array.shape), name=name)  # keep 0-d
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(tensor.dtype),
        const_value=tensor,
    )
    graph.register_initializer(value)
    return value


def set_constant_input(node: ir.Node, index: int, array: np.ndarray, name_hint: str) -> ir.Value:
    """Make input ``index`` of ``node`` a new initializer holding ``array``.

    The node grows inputs if needed; the initializer it read before is removed when unused.
    """
    graph = node.graph
    if len(node.inputs) <= index:
        node.resize_inputs(index + 1)
    old = node.inputs[index]
    value = add_initializer(graph, array, name_hint)
    node.replace_input_with(index, value)
    drop_unused_initializer(graph, old)
    return value


def constant_tensor(value: ir.Value | None) -> ir.TensorProtocol | None:
    """The value's tensor if it is an initializer (not a graph input), without reading data."""
    if value is None or value.const_value is None or value.is_graph_input():
        return None
    return value.const_value


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's data if it is an initializer (never a graph input), else None."""
    if value is None or value.const_value is None or value.is_graph_input():
        return None
    return value.const_value.numpy()
