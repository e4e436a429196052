"""Channel atoms: the unit that structured pruning removes, and the union-find that couples them.

Every output channel of a prunable layer is an *atom* (an integer). A value that carries
channels has a :class:`Span`: which axes hold them and which atom sits at each position.
Operators couple atoms (a residual Add makes channel ``i`` of both branches one thing to keep or
remove); coupled atoms are merged in a :class:`UnionFind`, whose classes are what pruning keeps
or removes as a whole. A class that meets something graphopt cannot follow is *blocked*, with
the reasons.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Span", "UnionFind"]


@dataclasses.dataclass
class Span:
    """The channel positions of a value: axes ``axis .. axis + atoms.ndim - 1`` hold channels,
    ``atoms[i, ...]`` is the atom at each position (most spans are one axis)."""

    axis: int
    atoms: np.ndarray

    @property
    def simple(self) -> bool:
        """One channel axis, at position 1 (NCHW / NC): what layers read and write."""
        return self.axis == 1 and self.atoms.ndim == 1


class UnionFind:
    """Atoms, their classes and the reasons some classes cannot be pruned."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._reasons: dict[int, list[str]] = {}

    def fresh(self, count: int) -> np.ndarray:
        """``count`` new atoms, each its own class."""
        start = len(self._parent)
        self._parent.extend(range(start, start + count))
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, atom: int) -> int:
        parent = self._parent
        root = atom
        while parent[root] != root:
            root = parent[root]
        while parent[atom] != root:
            parent[atom], atom = root, parent[atom]
        return root

    def union(self, first: int, second: int) -> None:
        a, b = self.find(int(first)), self.find(int(second))
        if a == b:
            return
        if b < a:
            a, b = b, a
        self._parent[b] = a  # the smallest atom is the root: classes are named deterministically
        moved = self._reasons.pop(b, None)
        if moved:
            self._reasons.setdefault(a, []).extend(moved)

    def union_arrays(self, first: np.ndarray, second: np.ndarray) -> None:
        for a, b in zip(first.ravel().tolist(), second.ravel().tolist(), strict=True):
            self.union(a, b)

    def block(self, atoms: np.ndarray, reason: str) -> None:
        for atom in np.unique(atoms).tolist():
            reasons = self._reasons.setdefault(self.find(atom), [])
            if reason not in reasons:
                reasons.append(reason)

    def classes(self, atoms: np.ndarray) -> np.ndarray:
        """The class (root atom) of every atom, same shape."""
        flat = [self.find(a) for a in atoms.ravel().tolist()]
        return np.asarray(flat, dtype=np.int64).reshape(atoms.shape)

    def reasons(self, root: int) -> list[str]:
        return self._reasons.get(self.find(root), [])

    def blocked(self, root: int) -> bool:
        return bool(self._reasons.get(self.find(root)))

    def __len__(self) -> int:
        return len(self._parent)
