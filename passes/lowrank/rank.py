"""Rank selection: kept energy, empirical VBMF, a MAC target; ranks rounded to a multiple.

- **Energy**: the smallest rank whose singular values keep ``energy`` of ``sum(s**2)`` (the
  squared Frobenius norm), i.e. a relative weight error of at most ``sqrt(1 - energy)``.
- **Empirical VBMF** (Nakajima, Sugiyama, Babacan and Tomioka 2013, "Global analytic solution
  of fully-observed variational Bayesian matrix factorization", JMLR 14): the noise variance
  ``sigma2`` is estimated by minimising the free energy over its analytic bounds, and the rank
  is the number of singular values above ``sqrt(M sigma2 (1 + tau) (1 + alpha / tau))`` with
  ``alpha = L / M`` (``L <= M`` the matrix sides) and ``tau = 2.5129 sqrt(alpha)``. The guard
  against nonsense: a rank of 0 (the weight is indistinguishable from noise, as randomly
  initialised layers are) and matrices too small to estimate a noise level give ``None``, and
  the caller keeps the layer, saying why.
- **MACs**: the largest rank (on the rounding grid) whose factorised MACs stay within a
  fraction of the layer's.

Ranks are rounded to multiples of ``round_to`` (vector units and GEMM tiles like multiples of
8): up for energy and VBMF (the kept energy only grows), down for a MAC target (the target
still holds). A grouped convolution has one rank per group; its multiple is chosen so that the
total rank over the groups is a multiple of ``round_to``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

__all__ = [
    "energy_rank",
    "kept_energy",
    "vbmf_rank",
    "group_multiple",
    "round_up",
    "rank_grid",
    "largest_within",
]

_T = TypeVar("_T")
VBMF_TAU_CONSTANT = 2.5129
_VBMF_GRID = 256
_VBMF_REFINE = 60


def kept_energy(values: np.ndarray, rank: int) -> float:
    """The fraction of ``sum(values**2)`` the leading ``rank`` singular values keep."""
    power = np.asarray(values, np.float64) ** 2
    total = float(power.sum())
    return float(power[:rank].sum()) / total if total > 0 else 1.0


def energy_rank(values: np.ndarray, energy: float) -> int:
    """The smallest rank keeping at least ``energy`` (0..1] of the squared singular values."""
    power = np.asarray(values, np.float64) ** 2
    total = float(power.sum())
    if total <= 0 or energy >= 1:
        return len(power)
    cumulative = np.cumsum(power) / total
    return int(min(len(power), np.searchsorted(cumulative, energy - 1e-12) + 1))


def _vbmf_objective(sigma2: float, values: np.ndarray, sides: tuple[int, int],
                    threshold_x: float) -> float:
    small, large = sides
    alpha = small / large
    x = values**2 / (large * sigma2)
    above, below = x[x > threshold_x], x[x <= threshold_x]
    tau = 0.5 * (above - (1 + alpha) + np.sqrt((above - (1 + alpha)) ** 2 - 4 * alpha))
    return float(np.sum(below - np.log(below)) + np.sum(above - tau)
                 + np.sum(np.log((tau + 1) / above)) + alpha * np.sum(np.log(tau / alpha + 1)))


def _minimise(function: Callable[[float], float], low: float, high: float) -> float:
    """A log-spaced grid, then golden-section search around the best grid point."""
    grid = np.geomspace(low, high, _VBMF_GRID)
    scores = [function(float(g)) for g in grid]
    best = int(np.argmin(scores))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(_VBMF_REFINE):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if function(c) < function(d):
            b = d
        else:
            a = c
    return (a + b) / 2


def vbmf_rank(values: np.ndarray, shape: tuple[int, int]) -> int | None:
    """The empirical-VBMF rank of a matrix of ``shape`` with singular ``values`` (all of them),
    or ``None`` when it finds no signal above the noise or the matrix is too small."""
    values = np.sort(np.asarray(values, np.float64))[::-1]
    small, large = sorted(shape)
    if small < 4 or len(values) < small or not np.all(np.isfinite(values)):
        return None
    alpha = small / large
    tau = VBMF_TAU_CONSTANT * math.sqrt(alpha)
    threshold_x = (1 + tau) * (1 + alpha / tau)
    upper_index = min(math.ceil(small / (1 + alpha)) - 1, small) - 1
    if upper_index + 1 >= small:
        return None
    upper = float(np.sum(values**2)) / (small * large)
    lower = max(values[upper_index + 1] ** 2 / (large * threshold_x),
                float(np.mean(values[upper_index + 1:] ** 2)) / large)
    if not 0 < lower < upper:
        return None
    sigma2 = _minimise(lambda s2: _vbmf_objective(s2, values, (small, large), threshold_x),
                       lower, upper)
    threshold = math.sqrt(large * sigma2 * threshold_x)
    rank = int(np.sum(values > threshold))
    return rank if rank > 0 else None


def group_multiple(round_to: int, groups: int) -> int:
    """The per-group multiple that makes ``groups`` equal ranks sum to a multiple of
    ``round_to``."""
    round_to = max(1, round_to)
    return max(1, round_to // math.gcd(round_to, groups))


def round_up(rank: int, multiple: int, full: int) -> int:
    """``rank`` rounded up to a multiple of ``multiple``, at most ``full``."""
    multiple = max(1, multiple)
    return min(full, max(multiple, math.ceil(rank / multiple) * multiple))


def rank_grid(multiple: int, full: int) -> list[int]:
    """The ranks a MAC target chooses from: multiples of ``multiple`` below ``full``."""
    multiple = max(1, multiple)
    return list(range(multiple, full, multiple))


def largest_within(candidates: Sequence[_T], macs: Callable[[_T], int],
                   budget: float) -> _T | None:
    """The last candidate (they grow) whose ``macs`` stay within ``budget``, or None."""
    chosen = None
    for candidate in candidates:
        if macs(candidate) <= budget:
            chosen = candidate
        else:
            break
    return chosen
