"""Two-label assignment by a minimum s-t cut (used by ``convert_float`` to place Casts).

Variables take label ``A`` (the source side) or ``B`` (the sink side). The problem is:

- ``fix(v, label)``: ``v`` must take ``label``;
- ``prefer(v, label, cost)``: pay ``cost`` if ``v`` takes the other label;
- ``hyperedge(members, cost)``: pay ``cost`` once if the members (variables, or the constants
  :data:`A` / :data:`B`) do not all take the same label.

The minimum total cost is a minimum cut of a flow network: terminals ``s`` (A) and ``t`` (B),
``s -> v`` of capacity ``cost`` for a preference for A, ``v -> t`` for a preference for B,
infinite arcs for fixed labels, and for each hyperedge Lawler's gadget (1973): two extra nodes
``e1 -> e2`` of capacity ``cost``, ``m -> e1`` and ``e2 -> m`` infinite for every member, so
that a cut separating any two members must cut ``e1 -> e2`` exactly once. Max flow is Dinic's
algorithm (BFS levels, iterative DFS for blocking flows); the labels are read off the source
side of the final residual network, so among equal-cost assignments the one with the fewest
A labels wins.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

__all__ = ["A", "B", "BinaryLabelling"]

A = "A"
B = "B"
_INF = float("inf")


class BinaryLabelling:
    """Collects fixed labels, preferences and hyperedges over ``variables`` and solves them."""

    def __init__(self, variables: int) -> None:
        self.variables = variables
        self._source = variables
        self._sink = variables + 1
        self._size = variables + 2
        self._to: list[int] = []
        self._cap: list[float] = []
        self._adjacent: list[list[int]] = [[] for _ in range(self._size)]

    def _node(self) -> int:
        self._adjacent.append([])
        self._size += 1
        return self._size - 1

    def _arc(self, tail: int, head: int, capacity: float) -> None:
        self._adjacent[tail].append(len(self._to))
        self._to.append(head)
        self._cap.append(capacity)
        self._adjacent[head].append(len(self._to))
        self._to.append(tail)
        self._cap.append(0.0)

    def _terminal(self, member: int | str) -> int:
        if member == A:
            return self._source
        if member == B:
            return self._sink
        if not 0 <= int(member) < self.variables:
            raise IndexError(f"variable {member} out of range 0..{self.variables - 1}")
        return int(member)

    def fix(self, variable: int, label: str) -> None:
        if label == A:
            self._arc(self._source, self._terminal(variable), _INF)
        else:
            self._arc(self._terminal(variable), self._sink, _INF)

    def prefer(self, variable: int, label: str, cost: float) -> None:
        if cost <= 0:
            return
        if label == A:
            self._arc(self._source, self._terminal(variable), cost)
        else:
            self._arc(self._terminal(variable), self._sink, cost)

    def hyperedge(self, members: Iterable[int | str], cost: float) -> None:
        nodes = sorted({self._terminal(m) for m in members})
        if len(nodes) < 2 or cost <= 0:
            return
        if len(nodes) == 2:  # an ordinary undirected edge
            self._arc(nodes[0], nodes[1], cost)
            self._arc(nodes[1], nodes[0], cost)
            return
        first, second = self._node(), self._node()
        self._arc(first, second, cost)
        for node in nodes:
            self._arc(node, first, _INF)
            self._arc(second, node, _INF)

    def solve(self) -> tuple[list[str], float]:
        """The labels of the variables and the cost of the assignment."""
        flow = self._max_flow()
        if flow == _INF:
            raise ValueError("contradictory fixed labels: a variable is fixed to both A and B")
        reached = self._source_side()
        labels = [A if reached[v] else B for v in range(self.variables)]
        return labels, flow

    def _levels(self) -> list[int] | None:
        level = [-1] * self._size
        level[self._source] = 0
        queue = collections.deque([self._source])
        while queue:
            node = queue.popleft()
            for arc in self._adjacent[node]:
                head = self._to[arc]
                if self._cap[arc] > 0 and level[head] < 0:
                    level[head] = level[node] + 1
                    queue.append(head)
        return level if level[self._sink] >= 0 else None

    def _blocking_flow(self, level: list[int]) -> float:
        total = 0.0
        cursor = [0] * self._size
        while True:
            # Iterative DFS from the source along level-increasing arcs with capacity left.
            path: list[int] = []
            node = self._source
            while node != self._sink:
                arcs = self._adjacent[node]
                while cursor[node] < len(arcs):
                    arc = arcs[cursor[node]]
                    head = self._to[arc]
                    if self._cap[arc] > 0 and level[head] == level[node] + 1:
                        break
                    cursor[node] += 1
                if cursor[node] == len(arcs):  # dead end: retreat
                    if not path:
                        return total
                    dead = node
                    arc = path.pop()
                    node = self._to[arc ^ 1]
                    cursor[node] += 1
                    level[dead] = -1  # never entered again in this phase
                    continue
                path.append(arcs[cursor[node]])
                node = self._to[arcs[cursor[node]]]
            pushed = min(self._cap[arc] for arc in path)
            if pushed == _INF:
                return _INF
            for arc in path:
                self._cap[arc] -= pushed
                self._cap[arc ^ 1] += pushed
            total += pushed

    def _max_flow(self) -> float:
        flow = 0.0
        while True:
            level = self._levels()
            if level is None:
                return flow
            pushed = self._blocking_flow(level)
            if pushed == _INF:
                return _INF
            flow += pushed

    def _source_side(self) -> list[bool]:
        reached = [False] * self._size
        reached[self._source] = True
        queue = collections.deque([self._source])
        while queue:
            node = queue.popleft()
            for arc in self._adjacent[node]:
                head = self._to[arc]
                if self._cap[arc] > 0 and not reached[head]:
                    reached[head] = True
                    queue.append(head)
        return reached
