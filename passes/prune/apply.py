"""Remove the chosen classes from the graph: slice every site, fix groups, splits and shapes.

Every constant listed as a :class:`~.groups.Site` loses the positions of removed atoms along
its axis (a Conv weight may lose output rows as a source and input columns as a sink); a
depthwise Conv's ``group`` becomes its kept channel count; a Split's sizes and a Reshape's
target shape follow the kept counts. Shapes are re-inferred afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from graphopt.passes.prune.atoms import Span
from graphopt.passes.prune.groups import Dependencies, ShapeEdit, follow_reshape
from graphopt.passes.prune.select import keep_mask
from graphopt.passes.rewrite_utils import constant_array, set_constant_input
from graphopt.shapes import refresh_shapes

__all__ = ["apply_pruning", "inconsistent_reshapes", "span_counts"]

Replacement = Mapping[tuple[int, int], tuple[np.ndarray, int]]
"""Arrays computed elsewhere (least-squares repair), keyed by (id(node), input index), with the
axis they already have cut; the other sites still apply."""


def span_counts(deps: Dependencies, span: Span, pruned: set[int]) -> list[int]:
    """Kept positions along each axis of ``span`` (a rectangular removal)."""
    mask = keep_mask(deps, span.atoms, pruned)
    counts = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        counts.append(int(mask.any(axis=others).sum()) if others else int(mask.sum()))
    return counts


def _kept_atoms(deps: Dependencies, span: Span, pruned: set[int]) -> np.ndarray:
    mask = keep_mask(deps, span.atoms, pruned)
    index = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        index.append(np.flatnonzero(mask.any(axis=others)) if others else np.flatnonzero(mask))
    return span.atoms[np.ix_(*index)]


def _new_shape(edit: ShapeEdit, deps: Dependencies, pruned: set[int]) -> list[int]:
    shape = [int(d) for d in constant_array(edit.node.inputs[1])]
    counts = span_counts(deps, edit.span, pruned)
    for offset, count in enumerate(counts):
        axis = edit.span.axis + offset
        if shape[axis] != -1:
            shape[axis] = count
    return shape


def _pruned_shape(value: ir.Value, span: Span, counts: list[int]) -> list[int]:
    dims = [d if isinstance(d, int) else 1 for d in value.shape]
    dims[span.axis:span.axis + len(counts)] = counts
    return dims


def inconsistent_reshapes(deps: Dependencies, pruned: set[int]) -> list[ShapeEdit]:
    """Reshapes that would no longer move the kept channels where the graph expects them."""
    bad = []
    for edit in deps.edits:
        if edit.kind != "reshape" or edit.in_span is None:
            continue
        in_counts = span_counts(deps, edit.in_span, pruned)
        out_counts = span_counts(deps, edit.span, pruned)
        in_shape = _pruned_shape(edit.node.inputs[0], edit.in_span, in_counts)
        out_shape = _pruned_shape(edit.node.outputs[0], edit.span, out_counts)
        kept_in = Span(edit.in_span.axis, _kept_atoms(deps, edit.in_span, pruned))
        moved = follow_reshape(kept_in, in_shape, out_shape) if kept_in.atoms.size else None
        expected = _kept_atoms(deps, edit.span, pruned)
        if moved is None or moved.axis != edit.span.axis or \
                not np.array_equal(moved.atoms, expected):
            bad.append(edit)
    return bad


def apply_pruning(model: ir.Model, deps: Dependencies, pruned: set[int],
                  replacements: Replacement | None = None) -> None:
    """Edit ``model`` in place so that the classes in ``pruned`` are gone."""
    replacements = replacements or {}
    cuts: dict[tuple[int, int], list] = defaultdict(list)
    nodes: dict[tuple[int, int], ir.Node] = {}
    for site in deps.sites:
        key = (id(site.node), site.index)
        nodes[key] = site.node
        cuts[key].append(site)
    for key, sites in cuts.items():
        node = nodes[key]
        index = key[1]
        replaced, done_axis = replacements.get(key, (None, None))
        array = replaced if replaced is not None else constant_array(node.inputs[index])
        changed = replaced is not None
        for site in sites:
            if site.axis == done_axis:
                continue  # the repair already cut this axis
            mask = keep_mask(deps, site.atoms, pruned)
            if mask.all():
                continue
            if site.groups > 1:
                array = _cut_grouped_inputs(array, mask, site.groups)
            else:
                array = np.compress(mask, array, axis=site.axis % array.ndim)
            changed = True
        if changed:
            hint = (node.inputs[index].name if node.inputs[index] is not None else None) \
                or f"{node.name}_input{index}"
            set_constant_input(node, index, np.ascontiguousarray(array), f"{hint}_pruned")
    for edit in deps.edits:
        _edit_shape(edit, deps, pruned)
    refresh_shapes(model)


def _cut_grouped_inputs(weight: np.ndarray, mask: np.ndarray, groups: int) -> np.ndarray:
    """A grouped Conv's weight [out, in / groups, ...]: the rows of group ``j`` keep the
    columns kept in input block ``j`` (every block keeps as many)."""
    rows = weight.shape[0] // groups
    blocks = mask.reshape(groups, -1)
    return np.concatenate([weight[j * rows:(j + 1) * rows][:, blocks[j]]
                           for j in range(groups)], axis=0)


def _edit_shape(edit: ShapeEdit, deps: Dependencies, pruned: set[int]) -> None:
    node = edit.node
    if edit.kind == "group":
        kept = int(keep_mask(deps, edit.span.atoms, pruned).sum())
        if kept != node.attributes.get_int("group", 1):
            node.attributes["group"] = ir.AttrInt64("group", kept)
    elif edit.kind == "split":
        sizes = [int(keep_mask(deps, deps.spans[output].atoms, pruned).sum())
                 for output in node.outputs]
        if "num_outputs" in node.attributes:
            del node.attributes["num_outputs"]
        if "split" in node.attributes or _opset(node) < 13:
            node.attributes["split"] = ir.AttrInt64s("split", sizes)
        else:
            set_constant_input(node, 1, np.asarray(sizes, dtype=np.int64),
                               f"{node.name or 'split'}_sizes")
    elif edit.kind == "reshape":
        shape = _new_shape(edit, deps, pruned)
        if shape != [int(d) for d in constant_array(node.inputs[1])]:
            set_constant_input(node, 1, np.asarray(shape, dtype=np.int64),
                               f"{node.name or 'reshape'}_shape")


def _opset(node: ir.Node) -> int:
    return (node.graph.opset_imports if node.graph is not None else {}).get("", 13)
