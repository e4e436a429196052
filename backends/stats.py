"""Latency statistics, defined once for every backend.

Every latency figure graphopt reports comes from :func:`summarize`, so ORT, OpenVINO and
TensorRT numbers mean the same thing.

Definitions
-----------
- Percentiles use numpy's ``method="linear"``, which is Hyndman & Fan (1996) definition 7
  (also R's default and Excel's ``PERCENTILE.INC``): for sorted samples ``x[0..n-1]`` the
  q-quantile is ``x[h]`` linearly interpolated at ``h = (n - 1) * q``. ``p999`` is the
  99.9th percentile.
- ``std`` is the sample standard deviation (``ddof=1``; 0 for a single sample) and
  ``cv = std / mean`` the coefficient of variation. A run with ``cv > CV_WARNING`` is noisy.
- ``median_ci_low`` / ``median_ci_high`` bound a 95% percentile-bootstrap confidence interval of
  the median: the 2.5th and 97.5th percentiles of the medians of ``bootstrap`` resamples drawn
  with replacement, from a generator seeded with ``seed`` (same data and seed, same interval).
  The resampled medians are drawn exactly rather than by materialising resamples: the median of
  a resample of sorted data is the sample at the median of the resampled *indices*, and the k-th
  smallest of n uniform indices is ``floor(n * U)`` with ``U ~ Beta(k, n - k + 1)``. This is the
  same distribution as resampling and calling ``np.median``, at O(bootstrap) cost whatever ``n``.
- With ``groups`` (one group id per sample, e.g. the runner session that produced it) the
  interval is a **two-level (cluster) bootstrap**: each resample draws as many groups as there
  are, with replacement, then for every drawn group as many samples as it holds, with
  replacement from that group, and takes the median of the pooled draws. Why: the session
  (memory layout, thread placement, a runtime's stream set-up) is a random effect. Samples of
  one session are not independent draws of the latency a user will get; they share that
  session's offset, which a within-session bootstrap cannot see, so its interval is far
  narrower than the run-to-run spread. Resampling the sessions puts the between-session
  variation into the interval. With few sessions that part is itself estimated from few
  values, and when the sessions do not differ the two levels count the sampling noise about
  twice (Davison & Hinkley 1997, section 3.8): the interval is then up to ~sqrt(2) wider than
  the flat one, the price of not assuming the session effect away. The pooled median is drawn
  without materialising resamples: a binary search over the pooled sorted samples where the
  number of a drawn group's draws below the split point is binomial given the count in the
  current interval (a multinomial drawn by successive splits), O(bootstrap x groups x log n).
  With one group this is the flat interval above. ``n_groups`` says how many groups there were.

All times are microseconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = [
    "CI_LEVEL",
    "CV_WARNING",
    "PERCENTILE_METHOD",
    "LatencyStats",
    "is_noisy",
    "summarize",
    "throughput_from_latency",
]

PERCENTILE_METHOD = "linear"
"""numpy percentile method used everywhere: Hyndman-Fan type 7."""

CI_LEVEL = 0.95
"""Confidence level of the bootstrap interval of the median."""

CV_WARNING = 0.05
"""Coefficient of variation above which a measurement is reported as noisy."""

DEFAULT_BOOTSTRAP = 2000

_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples; every field except ``n`` and ``cv`` is in microseconds."""

    n: int
    min: float
    max: float
    mean: float
    std: float
    cv: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    median_ci_low: float
    median_ci_high: float
    n_groups: int = 1

    def to_dict(self) -> dict:
        """Fields plus the definitions that produced them, ready for JSON."""
        data: dict = dataclasses.asdict(self)
        data["unit"] = "us"
        data["percentile_method"] = "numpy linear (Hyndman-Fan type 7)"
        data["median_ci"] = (
            f"{CI_LEVEL:.0%} percentile bootstrap" if self.n_groups == 1
            else f"{CI_LEVEL:.0%} two-level percentile bootstrap (groups of samples, then"
                 f" samples within each group) over {self.n_groups} groups"
        )
        return data


def summarize(
    samples_us: Sequence[float] | np.ndarray,
    *,
    groups: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
) -> LatencyStats:
    """Summarize latency samples (microseconds); see the module docstring for definitions.

    ``groups`` gives each sample's group (session) id; the CI of the median is then the
    two-level bootstrap. Percentiles, mean and std are over all samples either way.

    Raises ``ValueError`` for no samples, non-finite or negative samples, ``groups`` of another
    length than the samples, or ``bootstrap < 1``.
    """
    raw = np.asarray(samples_us, dtype=np.float64).ravel()
    order = np.argsort(raw, kind="stable")
    x = raw[order]
    _check_samples(x)
    if bootstrap < 1:
        raise ValueError(f"bootstrap must be >= 1, got {bootstrap}")
    codes, n_groups = _group_codes(groups, raw.size)
    n = int(x.size)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    quantiles = np.percentile(x, list(_PERCENTILES.values()), method=PERCENTILE_METHOD)
    if n_groups > 1:
        medians = _cluster_bootstrap_medians(x, codes[order], seed=seed, resamples=bootstrap)
    else:
        medians = _bootstrap_medians(x, seed=seed, resamples=bootstrap)
    ci_low, ci_high = _percentile_interval(medians)
    return LatencyStats(
        n=n,
        min=float(x[0]),
        max=float(x[-1]),
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        **{name: float(q) for name, q in zip(_PERCENTILES, quantiles, strict=True)},
        median_ci_low=ci_low,
        median_ci_high=ci_high,
        n_groups=n_groups,
    )


def throughput_from_latency(stats: LatencyStats, batch_size: int) -> float:
    """Inferences per second of one synchronous stream, from the median latency."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if stats.p50 <= 0:
        raise ValueError("median latency is zero: throughput is undefined")
    return batch_size * 1e6 / stats.p50


def is_noisy(stats: LatencyStats) -> bool:
    """True when the coefficient of variation exceeds :data:`CV_WARNING`."""
    return stats.cv > CV_WARNING


def _check_samples(x: np.ndarray) -> None:
    if x.size == 0:
        raise ValueError("no latency samples to summarize")
    if not np.all(np.isfinite(x)):
        raise ValueError("latency samples contain NaN or infinity")
    if x[0] < 0:
        raise ValueError(f"latency samples must be >= 0, got {x[0]}")


def _group_codes(groups, n: int) -> tuple[np.ndarray | None, int]:
    """Group ids as codes 0..G-1 (``None`` without groups) and the number of groups G."""
    if groups is None:
        return None, 1
    ids = np.asarray(groups).ravel()
    if ids.size != n:
        raise ValueError(f"groups has {ids.size} ids for {n} samples")
    unique, codes = np.unique(ids, return_inverse=True)
    return codes.astype(np.int64), int(unique.size)


def _percentile_interval(medians: np.ndarray) -> tuple[float, float]:
    """The central :data:`CI_LEVEL` percentile interval of bootstrap ``medians``."""
    alpha = (1.0 - CI_LEVEL) / 2.0
    low, high = np.percentile(medians, [100 * alpha, 100 * (1 - alpha)], method=PERCENTILE_METHOD)
    return float(low), float(high)


def _bootstrap_medians(sorted_x: np.ndarray, *, seed: int, resamples: int) -> np.ndarray:
    """Medians of ``resamples`` with-replacement resamples of ``sorted_x``, drawn exactly."""
    n = sorted_x.size
    rng = np.random.default_rng(seed)
    k = (n + 1) // 2  # 1-based rank of the (lower) middle order statistic
    u_low = rng.beta(k, n - k + 1, size=resamples)
    low = sorted_x[_rank_to_index(u_low, n)]
    if n % 2 == 1:
        return low
    # Even n: the next order statistic is the smallest of the n - k draws above u_low.
    u_high = u_low + (1.0 - u_low) * rng.beta(1, n - k, size=resamples)
    high = sorted_x[_rank_to_index(u_high, n)]
    return (low + high) / 2.0


def _rank_to_index(u: np.ndarray, n: int) -> np.ndarray:
    return np.minimum((u * n).astype(np.int64), n - 1)


def _cluster_bootstrap_medians(
    sorted_x: np.ndarray, codes: np.ndarray, *, seed: int, resamples: int
) -> np.ndarray:
    """Medians of ``resamples`` two-level resamples (module docstring), drawn exactly.

    ``codes[i]`` is the group (0..G-1) of ``sorted_x[i]``. Each resample draws G groups with
    replacement; drawn group g contributes ``n_g`` with-replacement draws from its samples.
    """
    n = sorted_x.size
    n_groups = int(codes.max()) + 1
    # cum[g, m]: how many of the m smallest pooled samples belong to group g.
    cum = np.zeros((n_groups, n + 1), dtype=np.int64)
    cum[:, 1:] = np.cumsum(codes[None, :] == np.arange(n_groups)[:, None], axis=1)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_groups, size=(resamples, n_groups))
    draws = cum[drawn, n]  # draws per drawn group: that group's size
    total = draws.sum(axis=1)
    rank = (total + 1) // 2  # 1-based rank of the (lower) middle pooled draw
    start = np.zeros(resamples, dtype=np.int64)
    low, inside, above = _search_rank(cum, drawn, rng, start, np.full(resamples, n), draws, rank)
    medians = sorted_x[low]
    # Even totals: the upper middle draw is the same sample when it was drawn at least twice
    # over the lower middle one, otherwise the smallest of the draws above it.
    below = total - inside.sum(axis=1) - above.sum(axis=1)
    need_next = (total % 2 == 0) & (below + inside.sum(axis=1) < rank + 1)
    if np.any(need_next):
        nxt, _, _ = _search_rank(cum, drawn, rng, low + 1, np.full(resamples, n), above,
                                 np.ones(resamples, dtype=np.int64))
        upper = np.where(need_next, sorted_x[np.minimum(nxt, n - 1)], medians)
        medians = np.where(total % 2 == 0, (medians + upper) / 2.0, medians)
    return medians


def _search_rank(cum, drawn, rng, lo, hi, counts, rank):
    """Locate the ``rank``-th smallest draw in pooled index range [lo, hi) for each resample.

    ``counts[b, j]`` draws of drawn group ``drawn[b, j]`` fall in [lo, hi), each distributed
    as that group's samples restricted to the range. Halving the range, the draws in its lower
    half are Binomial(count, share of the group's samples there). Returns (index, draws at
    the index, draws above the index), the last two per drawn group.
    """
    lo, hi, counts = lo.copy(), hi.copy(), counts.copy()
    above = np.zeros_like(counts)
    below = np.zeros(lo.size, dtype=np.int64)
    while np.any(hi - lo > 1):
        mid = np.where(hi - lo > 1, (lo + hi) // 2, lo)
        at_lo, at_mid, at_hi = (cum[drawn, i[:, None]] for i in (lo, mid, hi))
        span = at_hi - at_lo
        share = np.divide(at_mid - at_lo, span, out=np.zeros(span.shape), where=span > 0)
        lower = rng.binomial(counts, share)
        left = below + lower.sum(axis=1) >= rank
        go_left = left[:, None]
        above = np.where(go_left, above + counts - lower, above)
        counts = np.where(go_left, lower, counts - lower)
        below = np.where(left, below, below + lower.sum(axis=1))
        hi = np.where(left, mid, hi)
        lo = np.where(left, lo, mid)
    return lo, counts, above
