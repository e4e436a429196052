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

    def to_dict(self) -> dict:
        """Fields plus the definitions that produced them, ready for JSON."""
        data: dict = dataclasses.asdict(self)
        data["unit"] = "us"
        data["percentile_method"] = "numpy linear (Hyndman-Fan type 7)"
        data["median_ci"] = f"{CI_LEVEL:.0%} percentile bootstrap"
        return data


def summarize(
    samples_us: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
) -> LatencyStats:
    """Summarize latency samples (microseconds); see the module docstring for definitions.

    Raises ``ValueError`` for no samples, non-finite or negative samples, or ``bootstrap < 1``.
    """
    x = np.sort(np.asarray(samples_us, dtype=np.float64).ravel())
    _check_samples(x)
    if bootstrap < 1:
        raise ValueError(f"bootstrap must be >= 1, got {bootstrap}")
    n = int(x.size)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    quantiles = np.percentile(x, list(_PERCENTILES.values()), method=PERCENTILE_METHOD)
    ci_low, ci_high = _median_ci(x, seed=seed, resamples=bootstrap)
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


def _median_ci(sorted_x: np.ndarray, *, seed: int, resamples: int) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``sorted_x`` (see module docstring)."""
    medians = _bootstrap_medians(sorted_x, seed=seed, resamples=resamples)
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
