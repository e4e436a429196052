"""Layout tidy-ups: Transpose, Reshape, Flatten, Squeeze and Unsqueeze that cancel or merge.

- ``transpose_merge``: Transpose(Transpose(x, p), q) -> Transpose(x, p[q]), removed if identity.
- ``transpose_identity``: Transpose with the identity permutation removed.
- ``transpose_to_reshape``: a Transpose that only moves size-1 axes is a Reshape (no copy).
- ``reshape_chain``: Reshape(R(x), s) -> Reshape(x, s) for R in Reshape/Flatten/Squeeze/Unsqueeze,
  when ``s`` does not copy (0 entries, allowzero=0) dimensions of the intermediate tensor that
  are unknown.
- ``reshape_identity``: Reshape that provably keeps its input's shape removed (including the
  Reshape to [N, -1] or [0, -1] in front of a Gemm on a tensor that is already 2-D).
- ``flatten_identity``: Flatten(axis=1) of a 2-D tensor removed.
- ``squeeze_unsqueeze``: Unsqueeze(Squeeze(x, a), a) and Squeeze(Unsqueeze(x, a), a) removed.
- ``concat_single``, ``expand_noop``, ``tile_noop``, ``slice_noop``: a Concat of one input, an
  Expand that broadcasts to the input's own shape, a Tile by all-ones repeats and a Slice that
  takes every element with step 1 are removed.
- ``softmax_unwrap``: Flatten -> Softmax -> Reshape-back (what the opset 9 -> 13 upgrade writes
  for a legacy 2-D-coerced Softmax) becomes one Softmax on the original tensor when only one
  of the flattened axes has size > 1 (also LogSoftmax, Hardmax).

Reshape semantics: entry -1 is inferred from the element count; entry 0 copies the input's
dimension at that index unless ``allowzero=1``, where it means a literal 0.
"""

from __future__ import annotations

import abc
import math

import numpy as np
import onnx_ir as ir

from graphopt.passes.fusion.framework import (
    CheckResult,
    Match,
    Rule,
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
    static_shape,
)

__all__ = [
    "TransposeMerge",
    "TransposeIdentity",
    "TransposeToReshape",
    "ReshapeChain",
    "ReshapeIdentity",
    "FlattenIdentity",
    "SqueezeUnsqueeze",
    "SoftmaxUnwrap",
    "ConcatSingle",
    "ExpandNoop",
    "TileNoop",
    "SliceNoop",
    "reshape_keeps_shape",
]

_RESHAPE_LIKE = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")
# Slice ends at or beyond this take the whole axis (no tensor axis has 2**31 elements).
_SLICE_TO_END = 2**31 - 1
# Consumers that can absorb a Transpose entirely: leave it to their rules.
_ABSORBS_TRANSPOSE = ("Transpose", "Gemm", "MatMul")
_AXIS_SOFTMAX = ("Softmax", "LogSoftmax", "Hardmax")
_AXES_AS_INPUT_OPSET = 13
_SOFTMAX_SINGLE_AXIS_OPSET = 13


def _producer(value: ir.Value | None, op_types: tuple[str, ...]) -> ir.Node | None:
    node = value.producer() if value is not None else None
    if node is None or node.op_type not in op_types or not is_standard(node):
        return None
    return node


def _opset(node: ir.Node) -> int:
    graph = node.graph
    if node.version is not None:
        return node.version
    if graph is None:
        return 0
    return graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 0))


# ---------------------------------------------------------------------------- Transpose


def _perm(node: ir.Node) -> list[int] | None:
    attr = node.attributes.get("perm")
    if attr is not None:
        return [int(p) for p in attr.value]
    r = rank(node.inputs[0])
    return None if r is None else list(reversed(range(r)))


def _is_identity(perm: list[int]) -> bool:
    return perm == list(range(len(perm)))


@register_rule
class TransposeMerge(Rule):
    name = "transpose_merge"
    anchors = ("Transpose",)
    description = "consecutive Transposes composed into one (removed if the identity)"

    def check(self, node: ir.Node) -> CheckResult:
        inner = _producer(node.inputs[0], ("Transpose",))
        if inner is None:
            return None
        outer_perm, inner_perm = _perm(node), _perm(inner)
        if outer_perm is None or inner_perm is None:
            return "a Transpose without perm on a tensor of unknown rank"
        perm = [inner_perm[axis] for axis in outer_perm]
        source = inner.inputs[0]
        if _is_identity(perm):
            return bypass_blocker(node, source) or Match(node, {"inner": inner, "perm": None})
        if single_consumer(node.inputs[0]) is not node:
            return "the first Transpose has other consumers"
        return Match(node, {"inner": inner, "perm": perm})

    def rewrite(self, match: Match) -> None:
        node, inner = match.node, match["inner"]
        source = inner.inputs[0]
        if match["perm"] is None:
            bypass(node, source)
        else:
            new = ir.node("Transpose", [source], {"perm": match["perm"]}, name=node.name)
            replace_node(node, new)
        remove_if_dead(inner)


@register_rule
class TransposeIdentity(Rule):
    name = "transpose_identity"
    anchors = ("Transpose",)
    description = "Transpose with the identity permutation removed"

    def check(self, node: ir.Node) -> CheckResult:
        perm = _perm(node)
        if perm is None or not _is_identity(perm):
            return None
        return bypass_blocker(node, node.inputs[0]) or Match(node)

    def rewrite(self, match: Match) -> None:
        bypass(match.node, match.node.inputs[0])


def _shape_constant(dims: tuple) -> np.ndarray | None:
    """A Reshape target for ``dims``: static dims as is, at most one unknown dim as -1."""
    unknown = [i for i, d in enumerate(dims) if not isinstance(d, int)]
    if len(unknown) > 1 or any(isinstance(d, int) and d == 0 for d in dims):
        return None
    return np.array([d if isinstance(d, int) else -1 for d in dims], dtype=np.int64)


@register_rule
class TransposeToReshape(Rule):
    name = "transpose_to_reshape"
    anchors = ("Transpose",)
    description = "Transpose that only moves size-1 axes becomes a Reshape"

    def check(self, node: ir.Node) -> CheckResult:
        perm = _perm(node)
        source = node.inputs[0]
        if perm is None or _is_identity(perm) or source.shape is None:
            return None
        consumer = single_consumer(node.outputs[0])
        if consumer is not None and consumer.op_type in _ABSORBS_TRANSPOSE:
            return None  # transpose_merge / transpose_into_gemm remove it instead
        dims = tuple(source.shape)
        moved = [axis for axis in perm if not (isinstance(dims[axis], int) and dims[axis] == 1)]
        if moved != sorted(moved):
            return None
        target = _shape_constant(tuple(dims[axis] for axis in perm))
        if target is None:
            return "moves only size-1 axes, but more than one dimension is unknown"
        return Match(node, {"target": target})

    def rewrite(self, match: Match) -> None:
        node = match.node
        shape = add_initializer(node.graph, match["target"], f"{node.name or 'transpose'}_shape")
        replace_node(node, ir.node("Reshape", [node.inputs[0], shape], name=node.name))


# ------------------------------------------------------------------------------ Reshape


def _allowzero(node: ir.Node) -> bool:
    attr = node.attributes.get("allowzero")
    return attr is not None and bool(attr.value)


def reshape_keeps_shape(source: ir.Value, target: np.ndarray, allowzero: bool) -> bool:
    """True if Reshape(source, target) provably returns source's shape."""
    if source.shape is None or len(target) != len(source.shape):
        return False
    dims = tuple(source.shape)
    if any(isinstance(d, int) and d == 0 for d in dims):
        return False
    inferred = 0
    for entry, dim in zip(target.tolist(), dims, strict=True):
        if entry == 0 and not allowzero:
            continue
        if entry == -1:
            inferred += 1
        elif not (isinstance(dim, int) and dim == entry):
            return False
    return inferred <= 1


def _resolve_copied_dims(target: np.ndarray, middle: ir.Value) -> np.ndarray | None:
    """Replace 0 entries (copies of the middle tensor's dims) by those dims, if static."""
    if not np.any(target == 0):
        return target
    if middle.shape is None:
        return None
    resolved = target.copy()
    for index in np.flatnonzero(target == 0):
        if index >= len(middle.shape):
            return None
        dim = middle.shape[int(index)]
        if not isinstance(dim, int):
            return None
        resolved[index] = dim
    return resolved


@register_rule
class ReshapeChain(Rule):
    name = "reshape_chain"
    anchors = ("Reshape",)
    description = "Reshape of a Reshape/Flatten/Squeeze/Unsqueeze reads the original tensor"

    def check(self, node: ir.Node) -> CheckResult:
        inner = _producer(node.inputs[0], _RESHAPE_LIKE)
        if inner is None:
            return None
        target = constant_array(node.inputs[1])
        if target is None:
            return "the second shape is not a constant initializer"
        if single_consumer(node.inputs[0]) is not node:
            return f"the inner {inner.op_type} has other consumers"
        if not _allowzero(node):
            resolved = _resolve_copied_dims(target, node.inputs[0])
            if resolved is None:
                return "the second shape copies (0) dimensions of the intermediate that are unknown"
            target = resolved
        return Match(node, {"inner": inner, "target": target})

    def rewrite(self, match: Match) -> None:
        node, inner = match.node, match["inner"]
        shape = node.inputs[1]
        target = match["target"]
        if not np.array_equal(target, constant_array(shape)):
            shape = add_initializer(node.graph, target, f"{shape.name}_resolved")
        attributes = {"allowzero": 1} if _allowzero(node) else {}
        new = ir.node("Reshape", [inner.inputs[0], shape], attributes, name=node.name)
        old_shape = node.inputs[1]
        replace_node(node, new)
        remove_if_dead(inner)
        drop_unused_initializer(new.graph, old_shape)


@register_rule
class ReshapeIdentity(Rule):
    name = "reshape_identity"
    anchors = ("Reshape",)
    description = "Reshape that keeps its input's shape removed"

    def check(self, node: ir.Node) -> CheckResult:
        target = constant_array(node.inputs[1])
        if target is None:
            return None
        if not reshape_keeps_shape(node.inputs[0], target, _allowzero(node)):
            return None
        return bypass_blocker(node, node.inputs[0]) or Match(node)

    def rewrite(self, match: Match) -> None:
        node = match.node
        graph, shape = node.graph, node.inputs[1]
        bypass(node, node.inputs[0])
        drop_unused_initializer(graph, shape)


@register_rule
class FlattenIdentity(Rule):
    name = "flatten_identity"
    anchors = ("Flatten",)
    description = "Flatten(axis=1) of a 2-D tensor removed"

    def check(self, node: ir.Node) -> CheckResult:
        attr = node.attributes.get("axis")
        axis = 1 if attr is None else int(attr.value)
        if rank(node.inputs[0]) != 2 or axis not in (1, -1):
            return None
        return bypass_blocker(node, node.inputs[0]) or Match(node)

    def rewrite(self, match: Match) -> None:
        bypass(match.node, match.node.inputs[0])


# --------------------------------------------------------------------- Squeeze/Unsqueeze


def _axes(node: ir.Node, output_rank: int | None) -> tuple[int, ...] | str | None:
    """Normalised, sorted axes of a Squeeze/Unsqueeze (rank = rank the axes refer to)."""
    attr = node.attributes.get("axes")
    if attr is not None:
        raw = [int(a) for a in attr.value]
    elif len(node.inputs) > 1 and node.inputs[1] is not None:
        array = constant_array(node.inputs[1])
        if array is None:
            return f"{node.op_type} axes are not a constant initializer"
        raw = [int(a) for a in array.ravel()]
    else:
        return None
    if any(a < 0 for a in raw):
        if output_rank is None:
            return f"{node.op_type} has negative axes on a tensor of unknown rank"
        raw = [a + output_rank if a < 0 else a for a in raw]
    return tuple(sorted(raw))


def _squeeze_axes(node: ir.Node) -> tuple[int, ...] | str | None:
    axes = _axes(node, rank(node.inputs[0]))
    if axes is not None:
        return axes
    dims = static_shape(node.inputs[0])
    if dims is None:
        return "Squeeze without axes on a tensor of unknown shape"
    return tuple(i for i, d in enumerate(dims) if d == 1)


@register_rule
class SqueezeUnsqueeze(Rule):
    name = "squeeze_unsqueeze"
    anchors = ("Squeeze", "Unsqueeze")
    description = "Squeeze and Unsqueeze of the same axes cancel"

    def check(self, node: ir.Node) -> CheckResult:
        partner = "Squeeze" if node.op_type == "Unsqueeze" else "Unsqueeze"
        inner = _producer(node.inputs[0], (partner,))
        if inner is None:
            return None
        if node.op_type == "Unsqueeze":
            outer_axes = _axes(node, rank(node.outputs[0]))
            inner_axes = _squeeze_axes(inner)
        else:
            outer_axes = _squeeze_axes(node)
            inner_axes = _axes(inner, rank(inner.outputs[0]))
        for axes in (outer_axes, inner_axes):
            if axes is None or isinstance(axes, str):
                return axes or f"{partner} without axes"
        if outer_axes != inner_axes:
            return f"axes differ: {list(inner_axes)} then {list(outer_axes)}"
        return bypass_blocker(node, inner.inputs[0]) or Match(node, {"inner": inner})

    def rewrite(self, match: Match) -> None:
        inner = match["inner"]
        bypass(match.node, inner.inputs[0])
        remove_if_dead(inner)


# ------------------------------------------------------------------------------ Softmax


def _reshape_result(node: ir.Node) -> tuple[int, ...] | None:
    """The static output shape of a Reshape computed from its constant target and input."""
    target = constant_array(node.inputs[1])
    dims = static_shape(node.inputs[0])
    if target is None or dims is None:
        return None
    allowzero = _allowzero(node)
    out = [dims[i] if (t == 0 and not allowzero) else int(t) for i, t in enumerate(target)]
    if out.count(-1) == 1:
        known = math.prod(d for d in out if d != -1)
        if known == 0:
            return None
        out[out.index(-1)] = math.prod(dims) // known
    return tuple(out)


def _softmax_axis(node: ir.Node, rank_: int) -> int:
    attr = node.attributes.get("axis")
    default = 1 if _opset(node) < _SOFTMAX_SINGLE_AXIS_OPSET else -1
    axis = default if attr is None else int(attr.value)
    return axis + rank_ if axis < 0 else axis


@register_rule
class SoftmaxUnwrap(Rule):
    name = "softmax_unwrap"
    anchors = _AXIS_SOFTMAX
    description = "Flatten -> Softmax -> Reshape back becomes one Softmax on the original tensor"

    def check(self, node: ir.Node) -> CheckResult:
        flatten = _producer(node.inputs[0], ("Flatten",))
        reshape = single_consumer(node.outputs[0])
        if flatten is None or reshape is None or reshape.op_type != "Reshape":
            return None
        source = flatten.inputs[0]
        dims = static_shape(source)
        if dims is None:
            return "the flattened tensor's shape is not static"
        if _softmax_axis(node, 2) != 1:
            return f"{node.op_type} normalises the flattened batch axis"
        if single_consumer(node.inputs[0]) is not node:
            return "the Flatten has other consumers"
        if _reshape_result(reshape) != dims:
            return "the Reshape does not restore the flattened tensor's shape"
        attr = flatten.attributes.get("axis")
        start = 1 if attr is None else int(attr.value)
        start = start + len(dims) if start < 0 else start
        axis = self._single_axis(node, dims, start)
        if axis is None:
            return f"{node.op_type} spans several axes of size > 1: {list(dims[start:])}"
        return Match(node, {"flatten": flatten, "reshape": reshape, "axis": axis})

    @staticmethod
    def _single_axis(node: ir.Node, dims: tuple[int, ...], start: int) -> int | None:
        if _opset(node) < _SOFTMAX_SINGLE_AXIS_OPSET:
            return start  # the old operator flattens from ``axis`` itself
        wide = [i for i in range(start, len(dims)) if dims[i] != 1]
        if len(wide) > 1:
            return None
        return wide[0] if wide else start

    def rewrite(self, match: Match) -> None:
        node, flatten, reshape = match.node, match["flatten"], match["reshape"]
        graph, shape = node.graph, reshape.inputs[1]
        new = ir.node(node.op_type, [flatten.inputs[0]], {"axis": match["axis"]}, name=node.name)
        replace_node(reshape, new)
        remove_if_dead(node)
        remove_if_dead(flatten)
        drop_unused_initializer(graph, shape)


# ------------------------------------------------------------------- no-op shape operators


class _Elision(Rule):
    """A rule removing a node whose output equals its first input (``is_noop`` decides)."""

    @abc.abstractmethod
    def is_noop(self, node: ir.Node) -> bool:
        ...

    def check(self, node: ir.Node) -> CheckResult:
        if not node.inputs or node.inputs[0] is None or not self.is_noop(node):
            return None
        return bypass_blocker(node, node.inputs[0]) or Match(node)

    def rewrite(self, match: Match) -> None:
        node = match.node
        graph, constants = node.graph, list(node.inputs[1:])
        bypass(node, node.inputs[0])
        for value in constants:
            drop_unused_initializer(graph, value)


@register_rule
class ConcatSingle(_Elision):
    name = "concat_single"
    anchors = ("Concat",)
    description = "Concat of a single input removed"

    def is_noop(self, node: ir.Node) -> bool:
        return len(node.inputs) == 1


@register_rule
class ExpandNoop(_Elision):
    name = "expand_noop"
    anchors = ("Expand",)
    description = "Expand to a shape the input already has removed"

    def is_noop(self, node: ir.Node) -> bool:
        target = constant_array(node.inputs[1]) if len(node.inputs) > 1 else None
        source = node.inputs[0]
        if target is None or source.shape is None or len(target) > len(source.shape):
            return False
        dims = tuple(source.shape)[len(source.shape) - len(target) :]
        pairs = zip(target.tolist(), dims, strict=True)
        return all(t == 1 or (isinstance(d, int) and t == d) for t, d in pairs)


@register_rule
class TileNoop(_Elision):
    name = "tile_noop"
    anchors = ("Tile",)
    description = "Tile by all-ones repeats removed"

    def is_noop(self, node: ir.Node) -> bool:
        repeats = constant_array(node.inputs[1]) if len(node.inputs) > 1 else None
        return repeats is not None and bool(np.all(repeats == 1))


def _slice_input(node: ir.Node, index: int) -> np.ndarray | None | str:
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None:
        return None
    array = constant_array(value)
    return "dynamic" if array is None else array.ravel()


def _takes_whole_axis(start: int, end: int, dim) -> bool:
    if isinstance(dim, int):
        start = min(max(start + dim if start < 0 else start, 0), dim)
        end = min(max(end + dim if end < 0 else end, 0), dim)
        return start == 0 and end == dim
    return start == 0 and end >= _SLICE_TO_END


@register_rule
class SliceNoop(_Elision):
    name = "slice_noop"
    anchors = ("Slice",)
    description = "Slice that takes every element with step 1 removed"

    def is_noop(self, node: ir.Node) -> bool:
        source = node.inputs[0]
        if "starts" in node.attributes or source.shape is None:
            return False  # opset < 10 form
        parts = [_slice_input(node, i) for i in range(1, 5)]
        if any(isinstance(p, str) for p in parts) or parts[0] is None or parts[1] is None:
            return False
        starts, ends, axes, steps = parts
        r = len(source.shape)
        axes = np.arange(len(starts)) if axes is None else axes
        if steps is not None and not np.all(steps == 1):
            return False
        for start, end, axis in zip(starts.tolist(), ends.tolist(), axes.tolist(), strict=True):
            axis = axis + r if axis < 0 else axis
            if not 0 <= axis < r or not _takes_whole_axis(start, end, source.shape[axis]):
                return False
        return True
