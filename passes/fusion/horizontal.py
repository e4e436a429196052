"""Horizontal fusion: sibling Convs reading the same input become one Conv and a Split, and an
identical activation on every output of a Split moves above it.

- ``conv_siblings``: Convs with the same data input, the same attributes and initializer
  weights of the same shape (inception's parallel 1x1 branches of equal width) are one Conv
  with the weights stacked along output channels, followed by an equal Split along axis 1 (no
  sizes tensor, so the model gains no initializer). Merged only when it saves nodes: three or
  more siblings, or two that each feed the same activation (which ``split_activation`` then
  hoists). Siblings whose output still feeds a per-channel BatchNormalization / Mul / Add wait
  until that has been folded into them.
- ``split_activation``: Split whose every output is read only by the same single-input
  elementwise activation with the same attributes -> the activation once, before the Split.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from graphopt.passes.fusion.framework import (
    CheckResult,
    Match,
    Rule,
    constant_array,
    constant_tensor,
    is_standard,
    register_rule,
)
from graphopt.passes.rewrite_utils import (
    add_initializer,
    bypass,
    remove_if_dead,
    single_consumer,
)

__all__ = ["SiblingConvs", "SplitActivation", "ACTIVATIONS"]

logger = logging.getLogger(__name__)

# Elementwise, single-input, per-element: f(split(x)) == split(f(x)).
ACTIVATIONS = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "Sigmoid",
        "Tanh",
        "Elu",
        "Selu",
        "HardSigmoid",
        "HardSwish",
        "Softplus",
        "Softsign",
        "Abs",
        "Neg",
        "Exp",
        "Gelu",
        "Mish",
        "ThresholdedRelu",
        "Celu",
    }
)
_CONV_SIGNATURE_ATTRIBUTES = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _signature(conv: ir.Node) -> tuple | None:
    """What two Convs must share to merge: weight shape and having a bias included, so that the
    merged model holds exactly the same parameters (None: weights are not initializers)."""
    weight = constant_tensor(conv.inputs[1]) if len(conv.inputs) > 1 else None
    if weight is None or conv.attributes.get_int("group", 1) != 1:
        return None
    has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
    if has_bias and constant_tensor(conv.inputs[2]) is None:
        return None
    if any(len(v.uses()) != 1 for v in conv.inputs[1:] if v is not None):
        return None  # a shared weight would be stored twice
    attributes = tuple(
        (name, repr(conv.attributes[name].value))
        for name in _CONV_SIGNATURE_ATTRIBUTES
        if name in conv.attributes
    )
    return weight.dtype, tuple(weight.shape), has_bias, attributes


def _feeds_affine(conv: ir.Node) -> bool:
    """True if the Conv's output still goes to a per-channel op the folding rules could take."""
    for user, _ in conv.outputs[0].uses():
        if user.op_type == "BatchNormalization":
            return True
        if user.op_type in ("Mul", "Add") and any(
            constant_tensor(v) is not None for v in user.inputs
        ):
            return True
    return False


def _shared_activation(values: list[ir.Value]) -> tuple | None:
    """The (op, attributes) every value's only reader applies, if they all apply the same."""
    kinds = set()
    for value in values:
        user = single_consumer(value)
        if user is None or user.op_type not in ACTIVATIONS or not is_standard(user):
            return None
        if len(user.inputs) != 1:
            return None
        kinds.add(
            (user.op_type, tuple(sorted((k, repr(a.value)) for k, a in user.attributes.items())))
        )
    return kinds.pop() if len(kinds) == 1 else None


@register_rule
class SiblingConvs(Rule):
    name = "conv_siblings"
    anchors = ("Conv",)
    description = "sibling Convs on the same input merged into one Conv + Split"

    def check(self, node: ir.Node) -> CheckResult:
        data = node.inputs[0]
        signature = _signature(node)
        if data is None or signature is None:
            return None
        siblings = [node] + [
            user
            for user, index in data.uses()
            if index == 0
            and user is not node
            and user.op_type == "Conv"
            and is_standard(user)
            and _signature(user) == signature
        ]
        siblings = list({id(s): s for s in siblings}.values())
        if len(siblings) < 2:
            return None
        if any(_feeds_affine(s) for s in siblings):
            return None  # the per-channel folds come first
        outputs = [s.outputs[0] for s in siblings]
        saved = len(siblings) - 2 + (len(siblings) - 1 if _shared_activation(outputs) else 0)
        if saved <= 0:
            return f"merging {len(siblings)} sibling Convs into Conv + Split would not save a node"
        return Match(node, {"siblings": siblings})

    def rewrite(self, match: Match) -> None:
        siblings: list[ir.Node] = match["siblings"]
        graph = match.node.graph
        order = {id(n): i for i, n in enumerate(graph)}
        siblings.sort(key=lambda n: order[id(n)])
        first = siblings[0]
        logger.debug("merging sibling Convs %s", ", ".join(str(s.name) for s in siblings))
        weights = [constant_array(s.inputs[1]) for s in siblings]
        inputs = [
            first.inputs[0],
            add_initializer(graph, np.concatenate(weights), _hint(first, "w")),
        ]
        if len(first.inputs) > 2 and first.inputs[2] is not None:
            biases = [constant_array(s.inputs[2]).reshape(-1) for s in siblings]
            inputs.append(add_initializer(graph, np.concatenate(biases), _hint(first, "b")))
        conv = ir.Node(
            "", "Conv", inputs, list(first.attributes.values()), name=_hint(first, "merged")
        )
        _set_merged_type(conv.outputs[0], [s.outputs[0] for s in siblings])
        split = _split_node(first, conv.outputs[0], len(siblings))
        graph.insert_before(first, [conv, split])
        for sibling, out in zip(siblings, split.outputs, strict=True):
            _take_over(sibling.outputs[0], out)
        for sibling in siblings:
            remove_if_dead(sibling)


def _set_merged_type(merged: ir.Value, parts: list[ir.Value]) -> None:
    """The merged Conv output: the parts' type, channels (axis 1) summed when all are known."""
    merged.type = parts[0].type
    shapes = [p.shape for p in parts]
    if any(shape is None or len(shape) < 2 for shape in shapes):
        return
    channels = [shape[1] for shape in shapes]
    if all(isinstance(c, int) for c in channels):
        dims = list(shapes[0])
        dims[1] = sum(channels)
        merged.shape = ir.Shape(dims)


def _hint(node: ir.Node, suffix: str) -> str:
    return f"{node.name or node.op_type}_{suffix}"


def _split_node(anchor: ir.Node, data: ir.Value, parts: int) -> ir.Node:
    """An equal Split of ``data`` along axis 1 (every opset splits equally without sizes)."""
    return ir.node("Split", [data], {"axis": 1}, num_outputs=parts, name=_hint(anchor, "split"))


def _take_over(old: ir.Value, new: ir.Value) -> None:
    """``new`` replaces ``old`` everywhere, keeping its name, shape and type."""
    new.shape, new.type = old.shape, old.type
    name = old.name
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    old.name = None
    new.name = name


@register_rule
class SplitActivation(Rule):
    name = "split_activation"
    anchors = ("Split",)
    description = "the same activation on every Split output moved above the Split"

    def check(self, node: ir.Node) -> CheckResult:
        if node.inputs[0] is None or len(node.outputs) < 2:
            return None
        if _shared_activation(list(node.outputs)) is None:
            return None
        return Match(node)

    def rewrite(self, match: Match) -> None:
        split = match.node
        users = [single_consumer(out) for out in split.outputs]
        first = users[0]
        hoisted = ir.Node(
            "",
            first.op_type,
            [split.inputs[0]],
            list(first.attributes.values()),
            name=first.name,
        )
        hoisted.outputs[0].type = split.inputs[0].type
        hoisted.outputs[0].shape = split.inputs[0].shape
        split.graph.insert_before(split, hoisted)
        split.replace_input_with(0, hoisted.outputs[0])
        for user, out in zip(users, split.outputs, strict=True):
            bypass(user, out)
