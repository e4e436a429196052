"""Legacy and redundant operators modernised or removed.

- ``sum_single``: Sum of one input is its input.
- ``sum_to_add``: Sum of two inputs becomes Add (same multidirectional broadcasting). Sum of
  more inputs stays: a chain of Adds would be more nodes.
- ``dropout_remove``: inference Dropout (no training flag, mask unused) is an identity.
- ``identity_remove``: Identity is removed.
- ``cast_chain``: Cast to the type the input already has is removed; Cast(Cast(x, T1), T2)
  becomes Cast(x, T2) when T1 holds every value of x's type exactly.
- ``div_to_mul``: float division by a constant becomes multiplication by its reciprocal
  (exact for powers of two, within one ulp otherwise).
- ``neutral_element``: x + 0, x - 0, x * 1, x / 1 removed when broadcasting leaves x's shape.
- ``constant_chain``: (x * a) * b -> x * (a * b) and (x + a) + b -> x + (a + b) for constant
  a, b (float results differ by rounding only).
- ``concat_flatten``: Concat of a Concat along the same axis becomes one Concat.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphopt.passes.fusion.framework import (
    CheckResult,
    Match,
    Rule,
    commuted,
    constant_array,
    is_standard,
    register_rule,
)
from graphopt.passes.rewrite_utils import (
    add_initializer,
    bypass,
    bypass_blocker,
    drop_unused_initializer,
    rank,
    remove_if_dead,
    replace_node,
    single_consumer,
)

__all__ = [
    "SumToAdd",
    "SingleInputSum",
    "DropoutRemoval",
    "IdentityRemoval",
    "CastChain",
    "DivToMul",
    "NeutralElement",
    "ConstantChain",
    "ConcatFlatten",
    "holds_all_values",
]

_D = ir.DataType
_FLOATS = (_D.FLOAT16, _D.BFLOAT16, _D.FLOAT, _D.DOUBLE)
_INTEGERS = (_D.INT8, _D.UINT8, _D.INT16, _D.UINT16, _D.INT32, _D.UINT32, _D.INT64, _D.UINT64)

# Types whose values each type represents exactly (besides itself). Integers fit a float when
# their bit width is at most the float's significand width (11 for float16, 8 for bfloat16).
_WIDER: dict[ir.DataType, frozenset[ir.DataType]] = {
    _D.BOOL: frozenset((*_INTEGERS, *_FLOATS)),
    _D.UINT8: frozenset((_D.INT16, _D.UINT16, _D.INT32, _D.UINT32, _D.INT64, _D.UINT64, *_FLOATS)),
    _D.INT8: frozenset((_D.INT16, _D.INT32, _D.INT64, *_FLOATS)),
    _D.UINT16: frozenset((_D.INT32, _D.UINT32, _D.INT64, _D.UINT64, _D.FLOAT, _D.DOUBLE)),
    _D.INT16: frozenset((_D.INT32, _D.INT64, _D.FLOAT, _D.DOUBLE)),
    _D.UINT32: frozenset((_D.INT64, _D.UINT64, _D.DOUBLE)),
    _D.INT32: frozenset((_D.INT64, _D.DOUBLE)),
    _D.FLOAT16: frozenset((_D.FLOAT, _D.DOUBLE)),
    _D.BFLOAT16: frozenset((_D.FLOAT, _D.DOUBLE)),
    _D.FLOAT: frozenset((_D.DOUBLE,)),
}


def holds_all_values(wide: ir.DataType, narrow: ir.DataType) -> bool:
    """True if every value of type ``narrow`` is exactly representable in type ``wide``."""
    return wide == narrow or wide in _WIDER.get(narrow, frozenset())


@register_rule
class SingleInputSum(Rule):
    name = "sum_single"
    anchors = ("Sum",)
    description = "Sum of one input is its input"

    def check(self, node: ir.Node) -> CheckResult:
        if len(node.inputs) != 1:
            return None
        blocker = bypass_blocker(node, node.inputs[0])
        return blocker or Match(node)

    def rewrite(self, match: Match) -> None:
        bypass(match.node, match.node.inputs[0])


@register_rule
class SumToAdd(Rule):
    name = "sum_to_add"
    anchors = ("Sum",)
    description = "Sum of two inputs becomes Add (same broadcasting)"

    def check(self, node: ir.Node) -> CheckResult:
        if len(node.inputs) != 2:
            return None
        return Match(node)

    def rewrite(self, match: Match) -> None:
        node = match.node
        replace_node(node, ir.node("Add", list(node.inputs), name=node.name))


def _training_flag_blocker(node: ir.Node) -> str | None:
    is_test = node.attributes.get("is_test")
    if is_test is not None and not is_test.value:
        return "is_test is 0 (training behaviour)"
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is None:
        return None
    flag = constant_array(training)
    if flag is None:
        return "training_mode is not a constant"
    if bool(flag.item()):
        return "training_mode is true"
    return None


@register_rule
class DropoutRemoval(Rule):
    name = "dropout_remove"
    anchors = ("Dropout",)
    description = "inference Dropout (no training flag, unused mask) is an identity"

    def check(self, node: ir.Node) -> CheckResult:
        blocker = _training_flag_blocker(node)
        if blocker:
            return blocker
        if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
            return "the mask output is used"
        return bypass_blocker(node, node.inputs[0]) or Match(node)

    def rewrite(self, match: Match) -> None:
        bypass(match.node, match.node.inputs[0])


@register_rule
class IdentityRemoval(Rule):
    name = "identity_remove"
    anchors = ("Identity",)
    description = "Identity is removed"

    def check(self, node: ir.Node) -> CheckResult:
        return bypass_blocker(node, node.inputs[0]) or Match(node)

    def rewrite(self, match: Match) -> None:
        bypass(match.node, match.node.inputs[0])


def _cast_target(node: ir.Node) -> ir.DataType | None:
    attr = node.attributes.get("to")
    return None if attr is None else ir.DataType(attr.value)


def _via_float_is_unsafe(source: ir.DataType, middle: ir.DataType, target: ir.DataType) -> bool:
    """Integer -> float -> narrower integer saturates or is undefined; integer -> integer wraps."""
    return (
        source in _INTEGERS
        and middle in _FLOATS
        and target in _INTEGERS
        and not holds_all_values(target, source)
    )


@register_rule
class CastChain(Rule):
    name = "cast_chain"
    anchors = ("Cast",)
    description = "Cast to the input's own type removed; Cast of a widening Cast shortened"

    def check(self, node: ir.Node) -> CheckResult:
        source = node.inputs[0]
        target = _cast_target(node)
        if target is None or source.dtype is None:
            return None
        if source.dtype == target:
            return bypass_blocker(node, source) or Match(node, {"kind": "same_type"})
        inner = source.producer()
        if inner is None or inner.op_type != "Cast" or not is_standard(inner):
            return None
        origin = inner.inputs[0]
        middle = _cast_target(inner)
        if origin.dtype is None or middle is None:
            return "the first Cast's input type is unknown"
        if not holds_all_values(middle, origin.dtype):
            return f"{middle.name} does not hold every {origin.dtype.name} value"
        if _via_float_is_unsafe(origin.dtype, middle, target):
            return (
                f"{origin.dtype.name} -> {middle.name} -> {target.name} saturates where the"
                " direct Cast wraps"
            )
        if single_consumer(source) is not node:
            return "the first Cast has other consumers"
        return Match(node, {"kind": "chain", "origin": origin, "inner": inner})

    def rewrite(self, match: Match) -> None:
        node = match.node
        if match["kind"] == "same_type":
            bypass(node, node.inputs[0])
            return
        node.replace_input_with(0, match["origin"])
        remove_if_dead(match["inner"])


def _is_power_of_two(array: np.ndarray) -> bool:
    mantissa, _ = np.frexp(np.abs(array.astype(np.float64)))
    return bool(np.all(mantissa == 0.5))


_DIV_EXACT_TYPES = (_D.FLOAT, _D.DOUBLE)


@register_rule
class DivToMul(Rule):
    name = "div_to_mul"
    anchors = ("Div",)
    description = "float division by a constant becomes multiplication by its reciprocal"

    def check(self, node: ir.Node) -> CheckResult:
        divisor = node.inputs[1]
        if divisor is None or divisor.dtype not in _FLOATS:
            return None
        array = constant_array(divisor)
        if array is None:
            return "the divisor is not a constant initializer"
        if not np.all(np.isfinite(array)) or np.any(array == 0):
            return "the divisor has zero, infinite or NaN entries"
        exact = _is_power_of_two(array)
        if divisor.dtype not in _DIV_EXACT_TYPES and not exact:
            return f"the reciprocal in {divisor.dtype.name} would round (divisor not a power of 2)"
        reciprocal = (1.0 / array.astype(np.float64)).astype(array.dtype)
        if not np.all(np.isfinite(reciprocal)) or np.any(reciprocal == 0):
            return "the reciprocal overflows or underflows"
        return Match(node, {"reciprocal": reciprocal})

    def rewrite(self, match: Match) -> None:
        node = match.node
        graph = node.graph
        divisor = node.inputs[1]
        value = add_initializer(graph, match["reciprocal"], f"{divisor.name}_reciprocal")
        replace_node(node, ir.node("Mul", [node.inputs[0], value], name=node.name))
        drop_unused_initializer(graph, divisor)


# op type -> (neutral constant, may the constant come first?)
_NEUTRAL = {"Add": (0, True), "Sub": (0, False), "Mul": (1, True), "Div": (1, False)}


def _operands(node: ir.Node):
    if _NEUTRAL[node.op_type][1]:
        yield from commuted(node)
    elif len(node.inputs) == 2:
        yield node.inputs[0], node.inputs[1]


def _broadcast_keeps_shape(x: ir.Value, constant: np.ndarray) -> bool:
    """True if broadcasting ``x`` with ``constant`` yields x's shape (and dtype)."""
    if x.shape is None or constant.ndim > len(x.shape):
        return False
    dims = tuple(x.shape)[len(x.shape) - constant.ndim :]
    pairs = zip(constant.shape, dims, strict=True)
    return all(c == 1 or (isinstance(d, int) and c == d) for c, d in pairs)


@register_rule
class NeutralElement(Rule):
    name = "neutral_element"
    anchors = ("Add", "Sub", "Mul", "Div")
    description = "x + 0, x - 0, x * 1, x / 1 removed when broadcasting keeps x's shape"

    def check(self, node: ir.Node) -> CheckResult:
        neutral = _NEUTRAL[node.op_type][0]
        reason = None
        for x, c in _operands(node):
            constant = constant_array(c)
            if constant is None or constant.size == 0 or not np.all(constant == neutral):
                continue
            if x.dtype != c.dtype or not _broadcast_keeps_shape(x, constant):
                reason = f"the neutral constant {c.name!r} broadcasts {x.name!r} to a new shape"
                continue
            blocker = bypass_blocker(node, x)
            if blocker:
                reason = blocker
                continue
            return Match(node, {"x": x})
        return reason

    def rewrite(self, match: Match) -> None:
        node = match.node
        graph = node.graph
        constants = [v for v in node.inputs if v is not match["x"]]
        bypass(node, match["x"])
        for value in constants:
            drop_unused_initializer(graph, value)


_CHAIN_FOLD = {"Mul": np.multiply, "Add": np.add}


def _constant_operand(node: ir.Node) -> tuple[ir.Value, ir.Value, np.ndarray] | None:
    """(variable, constant value, constant data) of a binary node with one constant operand."""
    for x, c in commuted(node):
        array = constant_array(c)
        if array is not None and constant_array(x) is None:
            return x, c, array
    return None


@register_rule
class ConstantChain(Rule):
    name = "constant_chain"
    anchors = ("Mul", "Add")
    description = "(x * a) * b -> x * (a * b), (x + a) + b -> x + (a + b) for constants a, b"

    def check(self, node: ir.Node) -> CheckResult:
        outer = _constant_operand(node)
        if outer is None:
            return None
        middle, outer_constant, b = outer
        inner_node = middle.producer()
        if inner_node is None or inner_node.op_type != node.op_type or not is_standard(inner_node):
            return None
        inner = _constant_operand(inner_node)
        if inner is None:
            return None
        x, inner_constant, a = inner
        if a.dtype != b.dtype:
            return "the two constants have different types"
        if single_consumer(middle) is not node:
            return f"the inner {node.op_type} has other consumers"
        combined = _CHAIN_FOLD[node.op_type](a, b).astype(a.dtype)
        if combined.size > max(a.size, b.size):
            return f"the combined constant {list(combined.shape)} would outgrow both constants"
        return Match(
            node,
            {
                "x": x,
                "combined": combined,
                "inner": inner_node,
                "constants": (inner_constant, outer_constant),
            },
        )

    def rewrite(self, match: Match) -> None:
        node = match.node
        graph = node.graph
        hint = f"{match['constants'][0].name}_{node.op_type.lower()}"
        value = add_initializer(graph, match["combined"], hint)
        replace_node(node, ir.node(node.op_type, [match["x"], value], name=node.name))
        remove_if_dead(match["inner"])
        for constant in match["constants"]:
            drop_unused_initializer(graph, constant)


def _concat_axis(node: ir.Node) -> int | None:
    attr = node.attributes.get("axis")
    if attr is None:
        return None
    axis = int(attr.value)
    if axis >= 0:
        return axis
    r = rank(node.outputs[0])
    return None if r is None else axis + r


@register_rule
class ConcatFlatten(Rule):
    name = "concat_flatten"
    anchors = ("Concat",)
    description = "Concat of a Concat along the same axis becomes one Concat"

    def check(self, node: ir.Node) -> CheckResult:
        axis = _concat_axis(node)
        reason = None
        inners = []
        for value in node.inputs:
            inner = value.producer() if value is not None else None
            if inner is None or inner.op_type != "Concat" or inner in inners:
                continue
            if not is_standard(inner):
                continue
            inner_axis = _concat_axis(inner)
            if axis is None or inner_axis != axis:
                reason = f"inner Concat {inner.name!r} joins along another axis"
            elif single_consumer(value) is not node:
                reason = f"inner Concat {inner.name!r} has other consumers"
            else:
                inners.append(inner)
        if not inners:
            return reason
        return Match(node, {"inners": inners})

    def rewrite(self, match: Match) -> None:
        node = match.node
        inners = {id(inner.outputs[0]): inner for inner in match["inners"]}
        flat: list[ir.Value | None] = []
        for value in node.inputs:
            inner = inners.get(id(value))
            flat.extend(inner.inputs if inner is not None else [value])
        axis = node.attributes["axis"].value
        replace_node(node, ir.node("Concat", flat, {"axis": axis}, name=node.name))
        for inner in match["inners"]:
            remove_if_dead(inner)
