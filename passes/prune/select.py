"""Which classes to remove: groups, targets, rounding, and the MACs a choice leaves.

Classes that appear in the same value compete with each other (a *group*: every channel of a
residual stream, every input of a Concat). Each group loses its least important classes until
``ratio`` of its width is gone, keeping a multiple of ``round_to`` channels, at least
``min_channels`` in every value, and never a blocked class. Then the most important removed
classes are put back until every layer keeps a multiple of ``round_to`` and every grouped Conv
loses as many channels in each group.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping

import numpy as np
import onnx_ir as ir

from graphopt.cost import ModelCost
from graphopt.passes.prune.atoms import UnionFind
from graphopt.passes.prune.groups import Dependencies

__all__ = ["Group", "find_groups", "choose", "restore_within", "keep_mask", "estimate_macs"]


@dataclasses.dataclass
class Group:
    """Classes that compete, the widest value they share, and the layers that make them."""

    classes: list[int]
    width: int
    weights: dict[int, int]
    sources: list[str]
    spans: list[Counter]

    def prunable(self, uf: UnionFind) -> list[int]:
        return [c for c in self.classes if not uf.blocked(c)]


def find_groups(deps: Dependencies) -> list[Group]:
    """Group the classes of ``deps`` by the values they share."""
    counts: list[Counter] = []
    for span in deps.spans.values():
        counts.append(Counter(deps.class_of(span.atoms).ravel().tolist()))
    linked = UnionFind()
    index: dict[int, int] = {}
    for counter in counts:
        roots = list(counter)
        for root in roots:
            if root not in index:
                index[root] = int(linked.fresh(1)[0])
        for root in roots[1:]:
            linked.union(index[roots[0]], index[root])
    members: dict[int, list[int]] = defaultdict(list)
    for root, slot in index.items():
        members[linked.find(slot)].append(root)
    by_class = {root: linked.find(slot) for root, slot in index.items()}
    spans_of: dict[int, list[Counter]] = defaultdict(list)
    for counter in counts:
        spans_of[by_class[next(iter(counter))]].append(counter)
    source_names: dict[int, list[str]] = defaultdict(list)
    for layer in deps.sources:
        key = by_class.get(int(deps.roots[layer.atoms[0]]))
        if key is not None:
            source_names[key].append(layer.node.name or layer.node.op_type)
    groups = []
    for key, classes in members.items():
        spans = spans_of[key]
        weights = {c: max(counter.get(c, 0) for counter in spans) for c in classes}
        width = max(sum(counter.values()) for counter in spans)
        groups.append(Group(sorted(classes), width, weights, source_names[key], spans))
    return groups


def choose(deps: Dependencies, groups: list[Group], scores: Mapping[int, float],
           ratio_of: Callable[[Group], float], *, round_to: int, min_channels: int) -> set[int]:
    """The classes to remove: in each group the least important, up to the group's ratio."""
    pruned: set[int] = set()
    levels = _BlockLevels(deps)
    for group in groups:
        ratio = ratio_of(group)
        candidates = group.prunable(deps.uf)
        if ratio <= 0 or not candidates:
            continue
        kept_target = group.width * (1.0 - ratio)
        if round_to > 1:
            kept_target = round_to * round(kept_target / round_to)
        kept_target = max(int(kept_target), min(min_channels, group.width), 1)
        budget = group.width - kept_target
        floors = [min(min_channels, sum(c.values())) for c in group.spans]
        left = [sum(c.values()) for c in group.spans]
        removed = 0
        for root in sorted(candidates, key=lambda c: (scores.get(c, 0.0), c)):
            weight = group.weights[root]
            if removed + weight > budget:
                continue
            after = [n - counter.get(root, 0) for n, counter in zip(left, group.spans,
                                                                       strict=True)]
            if any(a < f for a, f in zip(after, floors, strict=True)):
                continue
            if not levels.admits(root):
                continue
            levels.add(root)
            left = after
            removed += weight
            pruned.add(root)
    if round_to > 1:
        _round_layers(deps, pruned, scores, round_to)
    _balance(deps, pruned, scores)
    return pruned


def _round_layers(deps: Dependencies, pruned: set[int], scores: Mapping[int, float],
                  round_to: int) -> None:
    """Put back a layer's most important removed channels until it keeps a multiple of
    ``round_to`` (the convs feeding one Concat share a group, but each runs on its own)."""
    for _ in range(2):  # a class put back for one layer may be shared with another
        for layer in deps.sources:
            classes = deps.class_of(layer.atoms)
            removed = np.isin(classes, np.fromiter(pruned, dtype=np.int64))
            kept = int((~removed).sum())
            if not removed.any() or kept % round_to == 0:
                continue
            for root in sorted(set(classes[removed].tolist()),
                               key=lambda c: (-scores.get(c, 0.0), c)):
                if kept % round_to == 0:
                    break
                pruned.discard(root)
                kept += int((classes == root).sum())


class _BlockLevels:
    """Per grouped Conv, how many channels each group has lost so far: a class may only go
    where its groups are not ahead of the others, so the groups advance level by level."""

    def __init__(self, deps: Dependencies) -> None:
        self.removed = [np.zeros(c.blocks, dtype=np.int64) for c in deps.balanced]
        self.touches: dict[int, list[tuple[int, np.ndarray]]] = {}
        for index, constraint in enumerate(deps.balanced):
            classes = deps.class_of(constraint.atoms).reshape(constraint.blocks, -1)
            for root in np.unique(classes).tolist():
                counts = (classes == root).sum(axis=1)
                if not (counts == counts[0]).all():
                    self.touches.setdefault(root, []).append((index, counts))

    def admits(self, root: int) -> bool:
        for index, counts in self.touches.get(root, ()):
            removed = self.removed[index]
            top = removed.max()
            if removed.min() != top and np.any(removed[counts > 0] >= top):
                return False
        return True

    def add(self, root: int) -> None:
        for index, counts in self.touches.get(root, ()):
            self.removed[index] += counts


MAX_RESTORE_TRIALS = 400
"""Chunks :func:`restore_within` tries to put back after a MAC-target search."""


def restore_within(cost: ModelCost, deps: Dependencies, groups: list[Group],
                   scores: Mapping[int, float], pruned: set[int], goal: float, *,
                   round_to: int) -> set[int]:
    """Put back the most important removed channels, ``round_to`` at a time per group, while
    the MACs stay within ``goal`` (a uniform ratio overshoots a MAC target in steps)."""
    chunks = []
    for group in groups:
        removed = sorted((c for c in group.classes if c in pruned),
                         key=lambda c: (-scores.get(c, 0.0), c))
        chunk, weight = [], 0
        for root in removed:
            chunk.append(root)
            weight += group.weights[root]
            if weight >= round_to:
                chunks.append((float(np.mean([scores.get(c, 0.0) for c in chunk])), chunk))
                chunk, weight = [], 0
    result = set(pruned)
    for _, chunk in sorted(chunks, key=lambda item: -item[0])[:MAX_RESTORE_TRIALS]:
        trial = result - set(chunk)
        if estimate_macs(cost, deps, trial) <= goal and _balanced(deps, trial):
            result = trial
    return result


def _balanced(deps: Dependencies, pruned: set[int]) -> bool:
    removed_ids = np.fromiter(pruned, dtype=np.int64)
    for constraint in deps.balanced:
        classes = deps.class_of(constraint.atoms).reshape(constraint.blocks, -1)
        per_block = np.isin(classes, removed_ids).sum(axis=1)
        if not (per_block == per_block[0]).all():
            return False
    return True


def _balance(deps: Dependencies, pruned: set[int], scores: Mapping[int, float]) -> None:
    """Put back the most important removed classes until every grouped Conv loses as many
    channels in each of its groups."""
    settled = False
    while not settled and pruned:
        settled = True
        for constraint in deps.balanced:
            classes = deps.class_of(constraint.atoms).reshape(constraint.blocks, -1)
            removed = np.isin(classes, np.fromiter(pruned, dtype=np.int64))
            per_block = removed.sum(axis=1)
            if (per_block == per_block[0]).all():
                continue
            fullest = int(np.argmax(per_block))
            candidates = set(classes[fullest][removed[fullest]].tolist())
            pruned.discard(max(candidates, key=lambda c: (scores.get(c, 0.0), c)))
            settled = False


def keep_mask(deps: Dependencies, atoms: np.ndarray, pruned: set[int]) -> np.ndarray:
    """True where the atom's class is kept."""
    if not pruned:
        return np.ones(atoms.shape, dtype=bool)
    classes = deps.class_of(atoms)
    return ~np.isin(classes, np.fromiter(pruned, dtype=np.int64))


def estimate_macs(cost: ModelCost, deps: Dependencies, pruned: set[int]) -> int:
    """The MACs left after removing ``pruned``: each layer's MACs scale with the kept share of
    its input channels (sinks) and of its output channels (sources and depthwise convs)."""
    factor: dict[int, float] = defaultdict(lambda: 1.0)
    for layer in deps.sinks:
        factor[id(layer.node)] *= float(keep_mask(deps, layer.atoms, pruned).mean())
    for layer in deps.sources:
        factor[id(layer.node)] *= float(keep_mask(deps, layer.atoms, pruned).mean())
    for edit in deps.edits:
        if edit.kind == "group":
            factor[id(edit.node)] *= float(keep_mask(deps, edit.span.atoms, pruned).mean())
    total = 0.0
    for node_cost in cost.per_node:
        node: ir.Node | None = node_cost.node
        total += node_cost.macs * (factor[id(node)] if node is not None else 1.0)
    return int(total)
