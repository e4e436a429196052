"""Per-layer planning: a site and a method -> the :class:`~.rewrite.Split` the selection picks.

For each method the planner computes the spectra of every group's weight, picks the rank(s)
with :mod:`.rank`, factorises with :mod:`.factorize`, and counts the factors' MACs from the
layer's geometry (the same count as :mod:`graphopt.cost`: output elements times the weight's
dims after the first).

``energy`` means the same for every method: the kept fraction ``1 - ||W - W~||^2 / ||W||^2`` of
the weight's energy is at least ``energy``. For the SVDs that is the singular-value energy; for
Tucker-2, whose error is at most the energy dropped in the two modes together, each mode keeps
``(1 + energy) / 2``.

``method="auto"`` plans every conv method and takes the split with the fewest MACs (energy,
VBMF) or the smallest weight error (MAC target).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Literal

import numpy as np

from graphopt.passes.lowrank import factorize
from graphopt.passes.lowrank.rank import (
    energy_rank,
    group_multiple,
    largest_within,
    rank_grid,
    round_up,
    vbmf_rank,
)
from graphopt.passes.lowrank.rewrite import CONV_METHODS, MATRIX_METHOD, ConvSite, MatrixSite, Split

__all__ = ["Selection", "plan_conv", "plan_matrix", "plan_layer", "conv_split_macs"]

Select = Literal["energy", "vbmf", "macs"]


@dataclasses.dataclass(frozen=True)
class Selection:
    """How ranks are chosen (the pass's options of the same names)."""

    select: Select = "energy"
    energy: float = 0.9
    target_macs: float = 0.5
    round_to: int = 8
    hooi_iterations: int = 0


def conv_split_macs(site: ConvSite, method: str, ranks: tuple[int, ...]) -> int:
    """MACs of the factors of ``method`` at per-group ``ranks`` (``(r,)``, or
    ``(r_out, r_in)`` for Tucker-2)."""
    batch, groups = site.batch, site.groups
    out, inputs = math.prod(site.out_spatial), site.group_inputs
    if method == "spatial_svd":
        (r,), (kh, kw) = ranks, site.kernel
        height, width = site.out_spatial[0], site.in_spatial[1]
        return batch * (groups * r * height * width * inputs * kh
                        + site.out_channels * out * r * kw)
    if method == "channel_svd":
        (r,) = ranks
        return batch * out * (groups * r * inputs * math.prod(site.kernel) + site.out_channels * r)
    r_out, r_in = ranks
    return batch * (groups * r_in * math.prod(site.in_spatial) * inputs
                    + groups * r_out * out * r_in * math.prod(site.kernel)
                    + site.out_channels * out * r_out)


def _pick_rank(spectra: list[np.ndarray], shapes: list[tuple[int, int]], full: int,
               multiple: int, selection: Selection, macs: Callable[[int], int],
               budget: float, energy: float) -> int | str:
    """One rank for every group: the largest any group needs (energy, VBMF), or the largest
    on the grid within the MAC budget."""
    if selection.select == "energy":
        needed = max(energy_rank(s, energy) for s in spectra)
        return round_up(needed, multiple, full)
    if selection.select == "vbmf":
        ranks = [vbmf_rank(s, shape) for s, shape in zip(spectra, shapes, strict=True)]
        if any(r is None for r in ranks):
            return ("VBMF finds no signal above the estimated noise (the weights look like"
                    " noise to it, as random initialisations do)")
        return round_up(max(ranks), multiple, full)
    chosen = largest_within(rank_grid(multiple, full), macs, budget)
    if chosen is None:
        return (f"no rank on the grid of multiples of {multiple} below {full} keeps the MACs"
                f" within {selection.target_macs:g} of the layer's")
    return chosen


def _svd_error(spectra: list[np.ndarray], rank: int) -> float:
    dropped = sum(float(np.sum(s[rank:] ** 2)) for s in spectra)
    total = sum(float(np.sum(s**2)) for s in spectra)
    return math.sqrt(dropped / total) if total > 0 else 0.0


def _plan_svd_conv(site: ConvSite, method: str, selection: Selection) -> Split | str:
    groups = site.group_weights()
    to_matrix = factorize.spatial_matrix if method == "spatial_svd" else factorize.channel_matrix
    matrices = [to_matrix(w) for w in groups]
    decompositions = [factorize.svd(m) for m in matrices]
    spectra = [d[1] for d in decompositions]
    full = min(matrices[0].shape)
    multiple = group_multiple(selection.round_to, site.groups)
    rank = _pick_rank(spectra, [m.shape for m in matrices], full, multiple, selection,
                      lambda r: conv_split_macs(site, method, (r,)),
                      selection.target_macs * site.macs, selection.energy)
    if isinstance(rank, str):
        return rank
    factor = factorize.spatial_factors if method == "spatial_svd" else factorize.channel_factors
    parts = [factor(w, rank, d) for w, d in zip(groups, decompositions, strict=True)]
    weights = tuple(np.concatenate([p[i] for p in parts]) for i in range(2))
    error = _svd_error(spectra, rank)
    return Split(method, (rank,), weights, conv_split_macs(site, method, (rank,)), error,
                 1 - error**2)


def _plan_tucker(site: ConvSite, selection: Selection) -> Split | str:
    groups = site.group_weights()
    outputs, inputs = site.group_outputs, site.group_inputs
    kernel = math.prod(site.kernel)
    spectra = [factorize.mode_singular_values(w) for w in groups]
    multiple = group_multiple(selection.round_to, site.groups)
    mode_energy = (1 + selection.energy) / 2
    if selection.select == "macs":
        def pair(r_out: int) -> tuple[int, int]:
            return r_out, round_up(round(r_out * inputs / outputs), multiple, inputs)

        chosen = largest_within([pair(r) for r in rank_grid(multiple, outputs)],
                                lambda ranks: conv_split_macs(site, "tucker2", ranks),
                                selection.target_macs * site.macs)
        if chosen is None:
            return (f"no Tucker-2 ranks on the grid of multiples of {multiple} keep the MACs"
                    f" within {selection.target_macs:g} of the layer's")
        ranks = chosen
    else:
        no_budget = float("inf")
        r_out = _pick_rank([s[0] for s in spectra], [(outputs, inputs * kernel)] * len(groups),
                           outputs, multiple, selection, len, no_budget, mode_energy)
        r_in = _pick_rank([s[1] for s in spectra], [(inputs, outputs * kernel)] * len(groups),
                          inputs, multiple, selection, len, no_budget, mode_energy)
        for r in (r_out, r_in):
            if isinstance(r, str):
                return r
        ranks = (r_out, r_in)
    parts = [factorize.tucker2_factors(w, ranks, hooi_iterations=selection.hooi_iterations)
             for w in groups]
    weights = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
    dropped = total = 0.0
    for w, (first, core, last) in zip(groups, parts, strict=True):
        approximation = np.einsum("or,rsk,sc->ock", last.reshape(last.shape[:2]),
                                  core.reshape(*core.shape[:2], -1),
                                  first.reshape(first.shape[:2]), optimize=True).reshape(w.shape)
        dropped += float(np.sum((w - approximation) ** 2))
        total += float(np.sum(w**2))
    error = math.sqrt(dropped / total) if total > 0 else 0.0
    return Split("tucker2", ranks, weights, conv_split_macs(site, "tucker2", ranks), error,
                 1 - error**2)


def plan_conv(site: ConvSite, method: str, selection: Selection) -> Split | str:
    """The split of ``site`` by ``method`` (one of :data:`~.rewrite.CONV_METHODS`), or why
    there is none."""
    if method == "spatial_svd":
        if len(site.kernel) != 2 or min(site.kernel) < 2:
            return "spatial SVD needs a 2-D kernel of at least 2x2"
        return _plan_svd_conv(site, method, selection)
    if method == "channel_svd":
        return _plan_svd_conv(site, method, selection)
    if method == "tucker2":
        return _plan_tucker(site, selection)
    raise ValueError(f"unknown conv method {method!r}")


def plan_matrix(site: MatrixSite, selection: Selection) -> Split | str:
    """The SVD split of a Gemm/MatMul site, or why there is none."""
    decomposition = factorize.svd(site.weight)
    spectrum = decomposition[1]
    k, n = site.weight.shape
    rank = _pick_rank([spectrum], [(k, n)], min(k, n), max(1, selection.round_to), selection,
                      lambda r: site.rows * r * (k + n), selection.target_macs * site.macs,
                      selection.energy)
    if isinstance(rank, str):
        return rank
    weights = factorize.matrix_factors(site.weight, rank, decomposition)
    error = _svd_error([spectrum], rank)
    return Split(MATRIX_METHOD, (rank,), weights, site.rows * rank * (k + n), error, 1 - error**2)


def plan_layer(site: ConvSite | MatrixSite, method: str, selection: Selection) -> Split | str:
    """The split of ``site`` for the pass's ``method`` (``auto`` compares the conv methods)."""
    if isinstance(site, MatrixSite):
        return plan_matrix(site, selection)
    if method == MATRIX_METHOD:
        return "method=svd splits Gemm and MatMul only"
    methods = CONV_METHODS if method == "auto" else (method,)
    splits, reasons = [], []
    for name in methods:
        split = plan_conv(site, name, selection)
        (reasons if isinstance(split, str) else splits).append(split)
    if not splits:
        return "; ".join(reasons)
    if selection.select == "macs":
        return min(splits, key=lambda s: (s.error, s.macs))
    return min(splits, key=lambda s: (s.macs, s.error))
