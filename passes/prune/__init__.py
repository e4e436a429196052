"""``prune``: structured channel pruning (dependency groups, importance, least-squares repair).

Modules: :mod:`.atoms` (channel atoms and their coupling), :mod:`.groups` (the dependency
analysis), :mod:`.importance` (criteria), :mod:`.select` (targets and rounding), :mod:`.apply`
(the graph cut), :mod:`.repair` (least squares and BatchNormalization re-estimation),
:mod:`.prune_pass` (the pass).
"""

from graphopt.passes.prune.prune_pass import PrunePass

__all__ = ["PrunePass"]
