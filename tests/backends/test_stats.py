"""Latency statistics: percentile definition by hand, bootstrap CI of the median, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphopt.backends.stats import (
    CV_WARNING,
    LatencyStats,
    _bootstrap_medians,
    is_noisy,
    summarize,
    throughput_from_latency,
)

ONE_TO_TEN = [7.0, 3.0, 10.0, 1.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0]


def test_percentiles_follow_hyndman_fan_type_7_by_hand():
    # Sorted x = 1..10; type 7 puts quantile q at h = (n - 1) q = 9 q, interpolating x[h].
    stats = summarize(ONE_TO_TEN)
    assert stats.n == 10
    assert (stats.min, stats.max) == (1.0, 10.0)
    assert stats.p50 == pytest.approx(5.5)  # h = 4.5
    assert stats.p90 == pytest.approx(9.1)  # h = 8.1
    assert stats.p95 == pytest.approx(9.55)  # h = 8.55
    assert stats.p99 == pytest.approx(9.91)  # h = 8.91
    assert stats.p999 == pytest.approx(9.991)  # h = 8.991


def test_mean_std_cv_by_hand():
    stats = summarize(ONE_TO_TEN)
    assert stats.mean == pytest.approx(5.5)
    # sum of squared deviations of 1..10 around 5.5 is 82.5; sample std divides by n - 1.
    assert stats.std == pytest.approx(math.sqrt(82.5 / 9))
    assert stats.cv == pytest.approx(math.sqrt(82.5 / 9) / 5.5)


def test_median_ci_contains_median_and_is_deterministic():
    samples = np.random.default_rng(3).lognormal(mean=6.0, sigma=0.3, size=501)
    first = summarize(samples, seed=7)
    again = summarize(samples, seed=7)
    assert first == again
    assert first.median_ci_low <= first.p50 <= first.median_ci_high
    assert first.median_ci_low < first.median_ci_high
    assert summarize(samples, seed=8).median_ci_low != first.median_ci_low


def test_ci_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small = summarize(rng.normal(1000.0, 50.0, 50))
    large = summarize(rng.normal(1000.0, 50.0, 5000))
    def width(s):
        return s.median_ci_high - s.median_ci_low

    assert width(large) < width(small)


@pytest.mark.parametrize("n", [5, 6])
def test_exact_bootstrap_matches_resampling(n):
    # Oracle: materialise resamples and take np.median; the exact draw must give the same
    # distribution of bootstrap medians over the (discrete) support.
    x = np.arange(1.0, n + 1) ** 2
    fast = _bootstrap_medians(x, seed=0, resamples=200_000)
    idx = np.random.default_rng(1).integers(0, n, size=(200_000, n))
    slow = np.median(x[idx], axis=1)
    support = np.union1d(np.unique(fast), np.unique(slow))
    fast_freq = np.array([(fast == v).mean() for v in support])
    slow_freq = np.array([(slow == v).mean() for v in support])
    np.testing.assert_allclose(fast_freq, slow_freq, atol=0.006)


def test_single_sample():
    stats = summarize([42.0])
    assert stats.std == 0.0 and stats.cv == 0.0
    assert stats.p50 == stats.p999 == stats.median_ci_low == stats.median_ci_high == 42.0


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, float("inf")], [-1.0, 2.0]])
def test_rejects_bad_samples(bad):
    with pytest.raises(ValueError):
        summarize(bad)


def test_throughput_from_median():
    stats = summarize([2000.0, 2000.0, 2000.0, 9000.0])
    assert throughput_from_latency(stats, batch_size=4) == pytest.approx(2000.0)
    with pytest.raises(ValueError):
        throughput_from_latency(stats, batch_size=0)


def test_is_noisy_uses_cv_threshold():
    quiet = summarize([100.0, 101.0, 99.0, 100.0])
    noisy = summarize([100.0, 150.0, 60.0, 100.0])
    assert quiet.cv <= CV_WARNING and not is_noisy(quiet)
    assert noisy.cv > CV_WARNING and is_noisy(noisy)


def test_to_dict_has_fields_and_definitions():
    data = summarize(ONE_TO_TEN).to_dict()
    for field in LatencyStats.__dataclass_fields__:
        assert field in data
    assert data["unit"] == "us"
    assert "Hyndman-Fan type 7" in data["percentile_method"]
