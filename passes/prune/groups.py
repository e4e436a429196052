"""Dependency analysis for structured pruning: which channels must be removed together.

One walk over the graph in topological order gives every value that carries channels a
:class:`~.atoms.Span` and records every place a removal must edit (a :class:`Site`):

- a *source* (Conv, Gemm, MatMul with constant weights) creates one atom per output channel;
  its weight rows (and bias) are sites;
- channelwise operators (activations, pooling, BatchNormalization ...) pass atoms through, their
  per-channel parameters are sites;
- a residual Add / Mul couples the atoms of its operands position by position;
- Concat joins spans (with offsets), Split cuts them (its sizes are edited), Reshape / Flatten /
  Transpose are followed element by element (Flatten into Gemm turns a channel into a block of
  features; a channel shuffle permutes atoms);
- a depthwise Conv keeps channel ``c`` at output ``c`` (its ``group`` is edited); a grouped
  Conv's inputs and outputs must lose as many channels in each group (a :class:`Balanced`
  constraint the selection keeps);
- a *sink* (Conv, Gemm, MatMul) reads channels: its weight columns are sites.

A class of atoms is blocked, with the reason, when it reaches a graph output, an operator the
walk cannot follow, a protected or excluded layer, or a non-constant weight. Classes are grouped
for ranking: classes that share a value compete (all channels of a residual stream, all inputs
of a Concat).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir

from graphopt.passes.channels import BROADCAST_OPS, CHANNELWISE_OPS, PER_CHANNEL_PARAMETERS
from graphopt.passes.prune.atoms import Span, UnionFind
from graphopt.passes.rewrite_utils import constant_array, static_shape

__all__ = [
    "Site",
    "Balanced",
    "Layer",
    "ShapeEdit",
    "Dependencies",
    "analyze",
    "RESHAPE_OPS",
    "MAX_TRACKED_ELEMENTS",
]

RESHAPE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
MAX_TRACKED_ELEMENTS = 1 << 24
"""Reshapes of larger tensors are not followed (they are tracked element by element)."""


@dataclasses.dataclass
class Site:
    """Input ``index`` of ``node`` (a constant) loses the positions of pruned atoms on ``axis``."""

    node: ir.Node
    index: int
    axis: int
    atoms: np.ndarray
    groups: int = 1  # a grouped Conv's input: rows of group j keep block j's kept columns


@dataclasses.dataclass
class Balanced:
    """Positions of ``atoms`` fall into ``blocks`` equal blocks that must lose the same number
    (a grouped Conv's inputs or outputs)."""

    node: ir.Node
    atoms: np.ndarray
    blocks: int


@dataclasses.dataclass
class Layer:
    """A Conv / Gemm / MatMul with constant weights, as a source or a sink of channels.

    ``atoms``: a source's output atoms, or a sink's input atoms (a whole span: for a Gemm after
    Flatten one atom per feature). ``groups`` is the Conv's ``group`` (1 for Gemm / MatMul);
    ``weight_axis`` is the weight axis those atoms index.
    """

    node: ir.Node
    atoms: np.ndarray
    weight_axis: int
    groups: int = 1
    value: ir.Value | None = None


@dataclasses.dataclass
class ShapeEdit:
    """An attribute or shape constant that follows the number of kept channels."""

    node: ir.Node
    kind: str  # "group" | "split" | "reshape"
    span: Span  # the span whose kept count decides: input (group, split) or output (reshape)
    in_span: Span | None = None  # reshape: the input span (checked for consistency)


@dataclasses.dataclass
class Dependencies:
    """The result of :func:`analyze`."""

    uf: UnionFind
    spans: dict[ir.Value, Span]
    sites: list[Site]
    sources: list[Layer]
    sinks: list[Layer]
    edits: list[ShapeEdit]
    batchnorms: list[tuple[ir.Node, np.ndarray]]
    balanced: list[Balanced] = dataclasses.field(default_factory=list)
    roots: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def class_of(self, atoms: np.ndarray) -> np.ndarray:
        """The class of every atom (same shape)."""
        return self.roots[atoms]


class _Walk:
    def __init__(self, model: ir.Model, protect: set[int], exclude: set[str]) -> None:
        self.model = model
        self.uf = UnionFind()
        self.spans: dict[ir.Value, Span] = {}
        self.sites: list[Site] = []
        self.sources: list[Layer] = []
        self.sinks: list[Layer] = []
        self.edits: list[ShapeEdit] = []
        self.batchnorms: list[tuple[ir.Node, np.ndarray]] = []
        self.balanced: list[Balanced] = []
        self.protect = protect
        self.exclude = exclude

    # -- helpers -------------------------------------------------------------------------
    def block_inputs(self, node: ir.Node, reason: str) -> None:
        for value in node.inputs:
            span = self.spans.get(value) if value is not None else None
            if span is not None:
                self.uf.block(span.atoms, reason)

    def name(self, node: ir.Node) -> str:
        return node.name or node.op_type

    def new_source(self, node: ir.Node, channels: int, weight_axis: int, *, groups: int = 1,
                   bias_index: int | None = None, bias_axis: int = 0) -> np.ndarray:
        atoms = self.uf.fresh(channels)
        if groups > 1:
            self.balanced.append(Balanced(node, atoms, groups))
        self.sites.append(Site(node, 1, weight_axis, atoms))
        if bias_index is not None:
            self.sites.append(Site(node, bias_index, bias_axis, atoms))
        self.sources.append(Layer(node, atoms, weight_axis, groups))
        if id(node) in self.protect:
            self.uf.block(atoms, f"{self.name(node)} is the first layer (protected)")
        if node.name in self.exclude:
            self.uf.block(atoms, f"{self.name(node)} is excluded")
        return atoms

    # -- the walk --------------------------------------------------------------------------
    def run(self) -> Dependencies:
        for node in self.model.graph:
            self.visit(node)
        for value in self.model.graph.outputs:
            span = self.spans.get(value)
            if span is not None:
                self.uf.block(span.atoms, f"reaches the graph output {value.name!r}")
        roots = self.uf.classes(np.arange(len(self.uf), dtype=np.int64))
        return Dependencies(self.uf, self.spans, self.sites, self.sources, self.sinks,
                            self.edits, self.batchnorms, self.balanced, roots)

    def visit(self, node: ir.Node) -> None:
        carries = [v for v in node.inputs if v is not None and v in self.spans]
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        handler = _HANDLERS.get(op)
        if handler is not None:
            handler(self, node)
        elif op in CHANNELWISE_OPS:
            self.channelwise(node)
        elif op in BROADCAST_OPS:
            self.broadcast(node)
        elif op in RESHAPE_OPS:
            self.reshape(node)
        elif carries:
            self.block_inputs(node, f"{op} ({self.name(node)}) cannot be followed")

    def channelwise(self, node: ir.Node) -> None:
        span = self.spans.get(node.inputs[0]) if node.inputs else None
        if span is None:
            return
        if not span.simple and (node.op_type in PER_CHANNEL_PARAMETERS
                                or "Pool" in node.op_type):
            self.uf.block(span.atoms, f"{node.op_type} ({self.name(node)}) on a reshaped span")
            return
        for index in PER_CHANNEL_PARAMETERS.get(node.op_type, ()):
            if index >= len(node.inputs) or node.inputs[index] is None:
                continue
            array = constant_array(node.inputs[index])
            if array is None:
                self.uf.block(span.atoms, f"{self.name(node)} has non-constant parameters")
                return
            if array.size > 1:
                axis = array.ndim - 1 if node.op_type == "PRelu" and array.ndim != 3 else 0
                if array.shape[axis] != span.atoms.size:
                    self.uf.block(span.atoms, f"{self.name(node)}: parameters not per channel")
                    return
                self.sites.append(Site(node, index, axis, span.atoms))
        if node.op_type == "BatchNormalization":
            self.batchnorms.append((node, span.atoms))
        self.spans[node.outputs[0]] = span

    def broadcast(self, node: ir.Node) -> None:
        output = node.outputs[0]
        out_rank = len(output.shape) if output.shape is not None else None
        carriers = [(i, v) for i, v in enumerate(node.inputs) if v is not None and v in self.spans]
        if not carriers or out_rank is None:
            if carriers:
                self.block_inputs(node, f"{self.name(node)}: output rank unknown")
            return
        first_index, first = carriers[0]
        span = self.spans[first]
        end = out_rank - (len(first.shape) - span.axis)  # span axis, counted in the output
        reference = Span(end, span.atoms)
        for index, value in enumerate(node.inputs):
            if value is None or index == first_index:
                continue
            shape = static_shape(value)
            other = self.spans.get(value)
            if other is not None:
                if (len(value.shape) - other.axis != len(first.shape) - span.axis
                        or other.atoms.shape != span.atoms.shape):
                    self.uf.block(np.concatenate([span.atoms.ravel(), other.atoms.ravel()]),
                                  f"{self.name(node)} mixes differently laid-out channels")
                    return
                self.uf.union_arrays(span.atoms, other.atoms)
                continue
            if shape is None:
                self.uf.block(span.atoms, f"{self.name(node)}: operand shape unknown")
                return
            axes = [end + k - (out_rank - len(shape)) for k in range(span.atoms.ndim)]
            sizes = [shape[a] if 0 <= a < len(shape) else 1 for a in axes]
            if all(s == 1 for s in sizes):
                continue
            if list(sizes) != list(span.atoms.shape) or span.atoms.ndim != 1:
                self.uf.block(span.atoms, f"{self.name(node)} broadcasts a tensor across the"
                                          " channels")
                return
            if constant_array(value) is None:
                self.uf.block(span.atoms, f"{self.name(node)} combines the channels with"
                                          f" {value.name!r}, whose channels are not followed")
                return
            self.sites.append(Site(node, index, axes[0], span.atoms))
        self.spans[output] = reference

    # -- shape-changing operators ---------------------------------------------------------
    def reshape(self, node: ir.Node) -> None:
        span = self.spans.get(node.inputs[0])
        if span is None:
            return
        in_shape, out_shape = _batch_free_shapes(node.inputs[0], node.outputs[0])
        if in_shape is None or out_shape is None:
            self.uf.block(span.atoms, f"{self.name(node)}: shapes unknown")
            return
        if node.op_type == "Reshape" and constant_array(node.inputs[1]) is None:
            self.uf.block(span.atoms, f"{self.name(node)}: the target shape is computed")
            return
        moved = follow_reshape(span, in_shape, out_shape)
        if moved is None:
            self.uf.block(span.atoms, f"{node.op_type} ({self.name(node)}) mixes the channels"
                                      " with other axes")
            return
        if moved.atoms.ndim > 1:
            _tie_all_but_largest(self.uf, moved.atoms)
        self.spans[node.outputs[0]] = moved
        if node.op_type == "Reshape":
            self.edits.append(ShapeEdit(node, "reshape", moved, in_span=span))

    def transpose(self, node: ir.Node) -> None:
        span = self.spans.get(node.inputs[0])
        if span is None:
            return
        rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
        attribute = node.attributes.get("perm")
        perm = list(attribute.as_ints()) if attribute is not None else (
            list(range(rank))[::-1] if rank is not None else None)
        if perm is None:
            self.uf.block(span.atoms, f"{self.name(node)}: rank unknown")
            return
        axes = list(range(span.axis, span.axis + span.atoms.ndim))
        places = [perm.index(a) for a in axes]
        start = min(places)
        if sorted(places) != list(range(start, start + len(places))):
            self.uf.block(span.atoms, f"{self.name(node)} separates the channel axes")
            return
        order = sorted(range(len(axes)), key=lambda k: places[k])
        self.spans[node.outputs[0]] = Span(start, np.transpose(span.atoms, order))

    def concat(self, node: ir.Node) -> None:
        carriers = [v for v in node.inputs if v is not None and v in self.spans]
        if not carriers:
            return
        rank = len(node.outputs[0].shape) if node.outputs[0].shape is not None else None
        axis = node.attributes.get_int("axis", 0)
        if rank is not None and axis < 0:
            axis += rank
        first = self.spans[carriers[0]]
        if first.simple and axis == first.axis:
            parts = []
            for value in node.inputs:
                span = self.spans.get(value)
                if span is not None and span.simple:
                    parts.append(span.atoms)
                    continue
                shape = static_shape(value)
                if shape is None:
                    self.block_inputs(node, f"{self.name(node)}: an input's shape is unknown")
                    return
                fresh = self.uf.fresh(shape[axis])
                self.uf.block(fresh, f"{self.name(node)} also concatenates {value.name!r},"
                                     " whose channels are not followed")
                parts.append(fresh)
            self.spans[node.outputs[0]] = Span(axis, np.concatenate(parts))
            return
        if all(v in self.spans for v in node.inputs) and all(
                self.spans[v].axis == first.axis and self.spans[v].atoms.shape
                == first.atoms.shape for v in node.inputs):
            for value in node.inputs[1:]:
                self.uf.union_arrays(first.atoms, self.spans[value].atoms)
            self.spans[node.outputs[0]] = first
            return
        self.block_inputs(node, f"{self.name(node)} concatenates across the channels' layout")

    def split(self, node: ir.Node) -> None:
        span = self.spans.get(node.inputs[0])
        if span is None:
            return
        rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
        axis = node.attributes.get_int("axis", 0)
        if rank is not None and axis < 0:
            axis += rank
        if not (span.simple and axis == span.axis):
            if span.axis <= axis < span.axis + span.atoms.ndim:
                self.uf.block(span.atoms, f"{self.name(node)} splits a reshaped span")
                return
            for output in node.outputs:
                self.spans[output] = span
            return
        sizes = split_sizes(node, span.atoms.size)
        if sizes is None:
            self.uf.block(span.atoms, f"{self.name(node)}: split sizes unknown")
            return
        offsets = np.cumsum([0, *sizes])
        for output, start, stop in zip(node.outputs, offsets[:-1], offsets[1:], strict=True):
            self.spans[output] = Span(axis, span.atoms[start:stop])
        self.edits.append(ShapeEdit(node, "split", span))

    def pad(self, node: ir.Node) -> None:
        span = self.spans.get(node.inputs[0])
        if span is None:
            return
        pads = constant_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
        if pads is None and node.attributes.get("pads") is not None:
            pads = np.asarray(node.attributes["pads"].as_ints())
        axes_input = node.inputs[3] if len(node.inputs) > 3 else None
        if pads is None or axes_input is not None:
            self.uf.block(span.atoms, f"{self.name(node)}: pads unknown")
            return
        half = len(pads) // 2
        channel_axes = range(span.axis, span.axis + span.atoms.ndim)
        if any(pads[a] != 0 or pads[a + half] != 0 for a in channel_axes):
            self.uf.block(span.atoms, f"{self.name(node)} pads the channels")
            return
        self.spans[node.outputs[0]] = span

    def resize(self, node: ir.Node) -> None:
        span = self.spans.get(node.inputs[0])
        if span is None:
            return
        scales_index = 2 if node.op_type == "Resize" else 1
        scales = (constant_array(node.inputs[scales_index])
                  if len(node.inputs) > scales_index and node.inputs[scales_index] else None)
        sizes = node.inputs[3] if node.op_type == "Resize" and len(node.inputs) > 3 else None
        if sizes is not None or scales is None or scales.size == 0 or not span.simple \
                or scales[span.axis] != 1:
            self.uf.block(span.atoms, f"{self.name(node)} resizes with sizes or across channels")
            return
        self.spans[node.outputs[0]] = span

    def softmax(self, node: ir.Node) -> None:
        span = self.spans.get(node.inputs[0])
        if span is None:
            return
        rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
        default = 1 if node.graph is not None and _opset(node) < 13 else -1
        axis = node.attributes.get_int("axis", default)
        if rank is None:
            self.uf.block(span.atoms, f"{self.name(node)}: rank unknown")
            return
        axis = axis + rank if axis < 0 else axis
        touches = (range(axis, rank) if _opset(node) < 13 else [axis])
        if any(span.axis <= a < span.axis + span.atoms.ndim for a in touches):
            self.uf.block(span.atoms, f"{node.op_type} ({self.name(node)}) normalises across"
                                      " the channels")
            return
        self.spans[node.outputs[0]] = span

    # -- layers ----------------------------------------------------------------------------
    def conv(self, node: ir.Node) -> None:
        weight = constant_array(node.inputs[1]) if len(node.inputs) > 1 else None
        span = self.spans.get(node.inputs[0])
        if weight is None or weight.ndim < 3:
            self.block_inputs(node, f"{self.name(node)} has non-constant weights")
            return
        bias = len(node.inputs) > 2 and node.inputs[2] is not None
        if bias and constant_array(node.inputs[2]) is None:
            self.block_inputs(node, f"{self.name(node)} has a non-constant bias")
            return
        groups = node.attributes.get_int("group", 1)
        out_channels, per_group = weight.shape[0], weight.shape[1]
        in_channels = per_group * groups
        if span is not None and not span.simple:
            self.uf.block(span.atoms, f"{self.name(node)} reads a reshaped span")
            span = None
        if groups > 1 and per_group == 1:  # depthwise, channel multiplier out / in
            multiplier = out_channels // in_channels
            if span is None:
                self.new_source(node, out_channels, 0, groups=groups,
                                bias_index=2 if bias else None)
                self.uf.block(self.sources[-1].atoms,
                              f"{self.name(node)} is a depthwise conv of channels not followed")
                self.spans[node.outputs[0]] = Span(1, self.sources[-1].atoms)
                return
            atoms = np.repeat(span.atoms, multiplier)
            self.sites.append(Site(node, 1, 0, atoms))
            if bias:
                self.sites.append(Site(node, 2, 0, atoms))
            self.edits.append(ShapeEdit(node, "group", span))
            self.spans[node.outputs[0]] = Span(1, atoms)
            return
        if span is not None:
            if groups > 1:
                self.balanced.append(Balanced(node, span.atoms, groups))
            self.sites.append(Site(node, 1, 1, span.atoms, groups))
            self.sinks.append(Layer(node, span.atoms, 1, groups, node.inputs[0]))
        atoms = self.new_source(node, out_channels, 0, groups=groups,
                                bias_index=2 if bias else None)
        self.spans[node.outputs[0]] = Span(1, atoms)

    def gemm(self, node: ir.Node) -> None:
        weight = constant_array(node.inputs[1])
        span = self.spans.get(node.inputs[0])
        if node.attributes.get_int("transA", 0) or weight is None or weight.ndim != 2:
            self.block_inputs(node, f"{self.name(node)}: transposed input or non-constant"
                                    " weights")
            return
        trans_b = node.attributes.get_int("transB", 0)
        k_axis, n_axis = (1, 0) if trans_b else (0, 1)
        bias_index = None
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            bias = constant_array(node.inputs[2])
            if bias is None:
                self.block_inputs(node, f"{self.name(node)} has a non-constant bias")
                return
            if bias.size > 1:
                if bias.shape[-1] != weight.shape[n_axis] or bias.ndim == 2 and bias.shape[0] > 1:
                    self.block_inputs(node, f"{self.name(node)}: bias is not per feature")
                    return
                bias_index = 2
        self._matmul_like(node, span, weight, k_axis, n_axis, bias_index)

    def matmul(self, node: ir.Node) -> None:
        weight = constant_array(node.inputs[1])
        span = self.spans.get(node.inputs[0])
        if weight is None or weight.ndim != 2 or node.inputs[1] in self.spans:
            self.block_inputs(node, f"{self.name(node)} multiplies two activations")
            return
        self._matmul_like(node, span, weight, 0, 1, None)

    def _matmul_like(self, node, span, weight, k_axis, n_axis, bias_index) -> None:
        value = node.inputs[0]
        rank = len(value.shape) if value.shape is not None else None
        if span is not None:
            if rank is None or span.atoms.ndim != 1 or span.axis != rank - 1:
                self.uf.block(span.atoms, f"{self.name(node)} reads channels on another axis")
            else:
                self.sites.append(Site(node, 1, k_axis, span.atoms))
                self.sinks.append(Layer(node, span.atoms, k_axis, 1, value))
        atoms = self.new_source(node, weight.shape[n_axis], n_axis, bias_index=bias_index,
                                bias_axis=-1)
        out_rank = len(node.outputs[0].shape) if node.outputs[0].shape is not None else 2
        self.spans[node.outputs[0]] = Span(out_rank - 1, atoms)


def _opset(node: ir.Node) -> int:
    graph = node.graph
    model_opsets = getattr(graph, "opset_imports", None) or {}
    return model_opsets.get("", 13)


_HANDLERS = {
    "Conv": _Walk.conv,
    "Gemm": _Walk.gemm,
    "MatMul": _Walk.matmul,
    "Concat": _Walk.concat,
    "Split": _Walk.split,
    "Transpose": _Walk.transpose,
    "Pad": _Walk.pad,
    "Resize": _Walk.resize,
    "Upsample": _Walk.resize,
    "Softmax": _Walk.softmax,
    "LogSoftmax": _Walk.softmax,
    "Shape": lambda walk, node: None,  # reads only the shape, which follows the pruning
}


def _batch_free_shapes(source: ir.Value, target: ir.Value):
    """Static shapes of a reshape's input and output, a symbolic dimension (the batch) that
    both share read as 1; (None, None) if anything else is unknown."""
    if source.shape is None or target.shape is None:
        return None, None
    first, second = list(source.shape), list(target.shape)
    symbols = {d for d in first if not isinstance(d, int)}
    if symbols != {d for d in second if not isinstance(d, int)} or any(
            first.count(s) != 1 or second.count(s) != 1 for s in symbols):
        return None, None
    return ([d if isinstance(d, int) else 1 for d in first],
            [d if isinstance(d, int) else 1 for d in second])


def _tie_all_but_largest(uf: UnionFind, atoms: np.ndarray) -> None:
    """Couple positions along every axis but the largest, so any removal stays rectangular."""
    keep_axis = int(np.argmax(atoms.shape))
    moved = np.moveaxis(atoms, keep_axis, -1).reshape(-1, atoms.shape[keep_axis])
    for row in moved[1:]:
        uf.union_arrays(moved[0], row)


def follow_reshape(span: Span, in_shape: Sequence[int], out_shape: Sequence[int]) -> Span | None:
    """Where the atoms of ``span`` land after reshaping ``in_shape`` to ``out_shape`` (None if
    they mix with other axes or the tensor is too large to follow)."""
    if int(np.prod(in_shape)) != int(np.prod(out_shape)) or \
            int(np.prod(in_shape)) > MAX_TRACKED_ELEMENTS:
        return None
    view = [1] * len(in_shape)
    view[span.axis:span.axis + span.atoms.ndim] = span.atoms.shape
    elements = np.broadcast_to(span.atoms.reshape(view), tuple(in_shape)).reshape(out_shape)
    varying = [k for k in range(elements.ndim) if elements.shape[k] > 1
               and not np.array_equal(elements, np.broadcast_to(
                   elements.take([0], axis=k), elements.shape))]
    if not varying:
        if span.atoms.size == 1:
            axis = next((k for k, d in enumerate(out_shape) if d == 1), 0)
            return Span(axis, span.atoms.reshape(1))
        return None
    start, stop = varying[0], varying[-1] + 1
    if varying != list(range(start, stop)):
        return None
    index = tuple(slice(None) if start <= k < stop else 0 for k in range(elements.ndim))
    atoms = np.ascontiguousarray(elements[index])
    expected = np.broadcast_to(
        atoms.reshape([1] * start + list(atoms.shape) + [1] * (elements.ndim - stop)),
        elements.shape)
    if not np.array_equal(expected, elements):
        return None
    return Span(start, atoms)


def split_sizes(node: ir.Node, total: int) -> list[int] | None:
    """The sizes a Split cuts along its axis (explicit or equal parts)."""
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        sizes = constant_array(node.inputs[1])
        return None if sizes is None else [int(s) for s in sizes]
    attribute = node.attributes.get("split")
    if attribute is not None:
        return [int(s) for s in attribute.as_ints()]
    parts = node.attributes.get_int("num_outputs", len(node.outputs))
    if total % parts:
        return None
    return [total // parts] * parts


def analyze(model: ir.Model, *, protect_first: bool = True,
            exclude: Iterable[str] = ()) -> Dependencies:
    """Walk ``model`` (static shapes needed where channels are reshaped) and return every
    value's span, the sites to edit, the layers and the blocked classes."""
    protect: set[int] = set()
    if protect_first:
        inputs = set(model.graph.inputs)
        for node in model.graph:
            if node.op_type in ("Conv", "Gemm", "MatMul") and node.inputs and \
                    node.inputs[0] in inputs:
                protect.add(id(node))
    return _Walk(model, protect, set(exclude)).run()
