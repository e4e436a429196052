"""How much each class of channels matters: the pruning criteria.

Every criterion gives each atom a score normalised by its layer's mean (so layers of different
scale compare), and a class scores the mean over its atoms that got one:

- ``l1`` / ``l2``: the norm of each source filter (its weight slice along the output axis);
- ``bn``: ``|gamma|`` of the BatchNormalization the channel passes through (network slimming);
  atoms that pass no BatchNormalization fall back to ``l1``;
- ``activation``: on calibration data, ``E|x_p| * ||W[:, p]||`` at every sink input position
  ``p``, the size of the channel's contribution to the next layer's output.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from graphopt.passes.prune.groups import Dependencies
from graphopt.passes.rewrite_utils import constant_array

__all__ = ["CRITERIA", "filter_scores", "bn_scores", "activation_scores", "class_scores"]

CRITERIA = ("l1", "l2", "bn", "activation")
_EPS = 1e-12

AtomScores = dict[int, list[float]]


def _normalised(values: np.ndarray) -> np.ndarray:
    return values / (float(np.mean(values)) + _EPS)


def _add(scores: AtomScores, atoms: np.ndarray, values: np.ndarray) -> None:
    for atom, value in zip(atoms.tolist(), values.tolist(), strict=True):
        scores[atom].append(value)


def filter_scores(deps: Dependencies, order: int = 1) -> AtomScores:
    """Normalised L1 (``order=1``) or L2 norms of every source layer's filters."""
    scores: AtomScores = defaultdict(list)
    for layer in deps.sources:
        weight = constant_array(layer.node.inputs[1])
        rows = np.moveaxis(weight.astype(np.float64), layer.weight_axis, 0)
        rows = rows.reshape(rows.shape[0], -1)
        norms = np.abs(rows).sum(axis=1) if order == 1 else np.sqrt((rows ** 2).sum(axis=1))
        _add(scores, layer.atoms, _normalised(norms))
    return scores


def bn_scores(deps: Dependencies) -> AtomScores:
    """Normalised ``|gamma|`` of every BatchNormalization, ``l1`` where there is none."""
    scores: AtomScores = defaultdict(list)
    for node, atoms in deps.batchnorms:
        gamma = constant_array(node.inputs[1])
        _add(scores, atoms, _normalised(np.abs(gamma.astype(np.float64))))
    fallback = filter_scores(deps, 1)
    for atom, values in fallback.items():
        if atom not in scores:
            scores[atom] = values
    return scores


def sink_column_norms(layer) -> np.ndarray:
    """``||W[:, p]||`` for every input position ``p`` of a sink (repeated across groups)."""
    weight = constant_array(layer.node.inputs[1]).astype(np.float64)
    moved = np.moveaxis(weight, layer.weight_axis, 0)
    if layer.groups == 1:
        return np.sqrt((moved.reshape(moved.shape[0], -1) ** 2).sum(axis=1))
    per_group, out = moved.shape[0], moved.shape[1]
    blocks = moved.reshape(per_group, layer.groups, out // layer.groups, -1)
    norms = np.sqrt((blocks ** 2).sum(axis=(2, 3)))  # [per_group, groups]
    return norms.T.reshape(-1)


def activation_scores(deps: Dependencies, mean_abs: Mapping[ir.Value, np.ndarray]) -> AtomScores:
    """Normalised ``E|x_p| * ||W[:, p]||`` at every sink input (``mean_abs`` per sink input)."""
    scores: AtomScores = defaultdict(list)
    for layer in deps.sinks:
        means = mean_abs.get(layer.value)
        if means is None:
            continue
        contribution = means.reshape(-1) * sink_column_norms(layer)
        _add(scores, layer.atoms, _normalised(contribution))
    fallback = filter_scores(deps, 1)
    for atom, values in fallback.items():
        if atom not in scores:
            scores[atom] = values
    return scores


def class_scores(deps: Dependencies, scores: AtomScores) -> dict[int, float]:
    """Each class's score: the mean over its atoms' scores."""
    sums: dict[int, list[float]] = defaultdict(list)
    for atom, values in scores.items():
        sums[int(deps.roots[atom])].extend(values)
    return {root: float(np.mean(values)) for root, values in sums.items()}
