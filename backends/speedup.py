"""The speedup of a paired measurement and its confidence interval, defined once.

Input: for each of ``n`` rounds, one block statistic per arm (the median latency of a short
block of calls, see :mod:`graphopt.backends.paired`), the baseline's ``b[r]`` and the
candidate's ``c[r]`` measured in the same round, so whatever the machine did during that
round (clock drift, a neighbour, thermal state) touched both.

Definitions
-----------
- The round's log speedup is ``d[r] = log b[r] - log c[r]``; the speedup is
  ``exp(T(d))``, with ``T`` the 20% trimmed mean (:data:`DEFAULT_TRIM` of the sorted values
  dropped at each end, the rest averaged). On a log scale a 2x speedup and a 2x slowdown are
  symmetric; the trimmed mean keeps most of the mean's efficiency while rounds disturbed on
  one side (a burst of other load during one block) cannot pull it (Wilcox 2012, ch. 3).
  When the round-to-round noise is symmetric, ``exp(T(d))`` estimates the ratio of the two
  arms' typical latencies under the same conditions.
- The interval resamples **rounds**, with replacement, keeping each round's pair together:
  the CI of the ratio itself, not a ratio of two independent CIs, so drift shared by both
  arms cancels instead of widening it. Resamples are drawn from a generator seeded with
  ``seed`` (same data and seed, same interval).
- With ``groups`` (one id per round: the runner session pair the round used) the resampling
  has **two levels**, as :mod:`graphopt.backends.stats` does for absolute latencies: draw as
  many groups as there are, with replacement, then from each drawn group as many of its
  rounds as it holds. A session shifts every latency it produces (memory layout, thread
  placement), so two sessions of the *same* model differ by a few tenths of a percent; with
  one session per arm that difference would pass for a speedup. Resampling the sessions puts
  it into the interval (and, when sessions do not differ, counts the round noise up to about
  twice: the interval is then up to ~sqrt(2) wider than the one-level one).
- It is an *expanded* percentile interval (Hesterberg 2015, "What teachers should know about
  the bootstrap", section 4): the plain percentile bootstrap is too narrow for small samples
  (it behaves like a z interval with divisor ``n`` instead of a t interval with ``n - 1``), so
  the tail probability is adjusted to ``alpha' = 2 Phi(-sqrt(h / (h - 1)) t(1 - alpha/2, h - 1))``
  with ``h`` the number of values the trimmed mean keeps (the Tukey-McLaughlin degrees of
  freedom). For 30 rounds (18 kept) the 95% interval takes the 1.5th and 98.5th percentiles.
- ``half_width`` is the interval's larger relative distance from the estimate,
  ``max(high / estimate - 1, 1 - low / estimate)``: "+-2%" means ``half_width <= 0.02``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

__all__ = [
    "DEFAULT_TRIM",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "MIN_PAIRS",
    "SpeedupInterval",
    "paired_speedup",
    "trimmed_mean",
]

DEFAULT_TRIM = 0.2
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
MIN_PAIRS = 3
"""Fewer rounds than this have no interval."""

_NORMAL = NormalDist()


@dataclasses.dataclass(frozen=True)
class SpeedupInterval:
    """``estimate`` = baseline time / candidate time (> 1: the candidate is faster)."""

    estimate: float
    low: float
    high: float
    confidence: float
    pairs: int

    @property
    def half_width(self) -> float:
        return max(self.high / self.estimate - 1.0, 1.0 - self.low / self.estimate)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "half_width": self.half_width}


def trimmed_mean(values: Sequence[float] | np.ndarray, trim: float = DEFAULT_TRIM) -> float:
    """Mean of the values left after dropping ``floor(trim * n)`` from each end."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    cut = _cut(x.size, trim)
    return float(x[cut : x.size - cut].mean())


def paired_speedup(
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    trim: float = DEFAULT_TRIM,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    groups: Sequence[int] | np.ndarray | None = None,
) -> SpeedupInterval:
    """The speedup of ``candidate`` over ``baseline`` from per-round block statistics.

    ``baseline[r]`` and ``candidate[r]`` were measured in the same round r, ``groups[r]``
    (optional) is the session pair it ran on (see the module docstring). Raises
    ``ValueError`` for arrays of different lengths, fewer than :data:`MIN_PAIRS` rounds,
    non-positive or non-finite values, or a confidence outside (0, 1).
    """
    b = np.asarray(baseline, dtype=np.float64).ravel()
    c = np.asarray(candidate, dtype=np.float64).ravel()
    if b.size != c.size:
        raise ValueError(f"{b.size} baseline and {c.size} candidate rounds: they must pair up")
    if b.size < MIN_PAIRS:
        raise ValueError(f"{b.size} rounds: a speedup interval needs at least {MIN_PAIRS}")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(c)) and b.min() > 0 and c.min() > 0):
        raise ValueError("block latencies must be finite and > 0")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    d = np.log(b) - np.log(c)
    n = d.size
    rng = np.random.default_rng(seed)
    codes = _group_codes(groups, n)
    if codes is None:
        draws = np.sort(d[rng.integers(0, n, size=(resamples, n))], axis=1)
        cut = _cut(n, trim)
        means = draws[:, cut : n - cut].mean(axis=1)
    else:
        means = _two_level_means(d, codes, rng, resamples, trim)
    cut = _cut(n, trim)
    tail = _expanded_tail(confidence, n - 2 * cut)
    low, high = np.quantile(means, [tail, 1.0 - tail], method="linear")
    return SpeedupInterval(
        estimate=math.exp(trimmed_mean(d, trim)),
        low=math.exp(float(low)),
        high=math.exp(float(high)),
        confidence=confidence,
        pairs=n,
    )


def _group_codes(groups, n: int) -> np.ndarray | None:
    """Group ids as codes 0..G-1, or ``None`` for no groups or a single one."""
    if groups is None:
        return None
    ids = np.asarray(groups).ravel()
    if ids.size != n:
        raise ValueError(f"groups has {ids.size} ids for {n} rounds")
    unique, codes = np.unique(ids, return_inverse=True)
    return codes if unique.size > 1 else None


def _two_level_means(d: np.ndarray, codes: np.ndarray, rng: np.random.Generator,
                     resamples: int, trim: float) -> np.ndarray:
    """Trimmed means of two-level resamples (groups, then rounds within each drawn group).

    Groups of unequal size make resamples of unequal size: every drawn group is padded to
    the largest with NaN, which sorts last, and each resample is trimmed by its own count.
    """
    n_groups = int(codes.max()) + 1
    members = [d[codes == g] for g in range(n_groups)]
    sizes = np.array([m.size for m in members])
    padded = np.full((n_groups, sizes.max()), np.nan)
    for g, m in enumerate(members):
        padded[g, : m.size] = m
    drawn = rng.integers(0, n_groups, size=(resamples, n_groups))
    picks = (rng.random((resamples, n_groups, sizes.max())) * sizes[drawn][:, :, None])
    values = padded[drawn[:, :, None], picks.astype(np.int64)]
    values[np.arange(sizes.max())[None, None, :] >= sizes[drawn][:, :, None]] = np.nan
    draws = np.sort(values.reshape(resamples, -1), axis=1)
    count = sizes[drawn].sum(axis=1)
    cut = np.minimum(np.floor(trim * count).astype(np.int64), (count - 1) // 2)
    cums = np.concatenate([np.zeros((resamples, 1)), np.nancumsum(draws, axis=1)], axis=1)
    rows = np.arange(resamples)
    return (cums[rows, count - cut] - cums[rows, cut]) / (count - 2 * cut)


def _cut(n: int, trim: float) -> int:
    cut = int(math.floor(trim * n))
    return min(cut, (n - 1) // 2)


def _expanded_tail(confidence: float, kept: int) -> float:
    """The percentile (each tail) of Hesterberg's expanded percentile interval."""
    upper = 1.0 - (1.0 - confidence) / 2.0
    if kept < 2:
        return (1.0 - confidence) / 2.0
    t = _t_quantile(upper, kept - 1)
    return _NORMAL.cdf(-math.sqrt(kept / (kept - 1)) * t)


def _t_quantile(p: float, df: int) -> float:
    """Student-t quantile by the Cornish-Fisher expansion in 1/df (Abramowitz & Stegun
    26.7.5); within 1e-3 of the exact value for df >= 3 (0.03 low at df = 2)."""
    z = _NORMAL.inv_cdf(p)
    z2 = z * z
    terms = (
        z,
        (z2 + 1) * z / 4,
        ((5 * z2 + 16) * z2 + 3) * z / 96,
        (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384,
        ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160,
    )
    return sum(term / df**power for power, term in enumerate(terms))
