"""Latency statistics: percentile definition by hand, bootstrap CI of the median (flat and
two-level over sessions), errors."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from graphopt.backends.stats import (
    CV_WARNING,
    LatencyStats,
    _bootstrap_medians,
    _cluster_bootstrap_medians,
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


def _width(stats: LatencyStats) -> float:
    return stats.median_ci_high - stats.median_ci_low


def _sessions(centres, n=2000, sd=5.0, seed=0):
    rng = np.random.default_rng(seed)
    samples = np.concatenate([rng.normal(c, sd, n) for c in centres])
    return samples, np.repeat(np.arange(len(centres)), n)


def test_two_level_ci_covers_the_spread_between_sessions():
    samples, groups = _sessions([100.0, 110.0, 120.0])
    flat = summarize(samples)
    nested = summarize(samples, groups=groups)
    # Same percentiles, mean and std: only the interval of the median changes.
    assert dataclasses.replace(nested, median_ci_low=0, median_ci_high=0, n_groups=1) == (
        dataclasses.replace(flat, median_ci_low=0, median_ci_high=0))
    assert nested.n_groups == 3 and flat.n_groups == 1
    assert _width(flat) < 1.0  # 6000 samples pin the pooled median down...
    # ...but another set of three sessions could have been centred anywhere near 100-120.
    assert _width(nested) > 10 * _width(flat)
    assert nested.median_ci_low < 108.0 and nested.median_ci_high > 112.0
    assert 99.0 < nested.median_ci_low <= nested.p50 <= nested.median_ci_high < 121.0


def test_two_level_ci_near_flat_when_sessions_do_not_differ():
    # Identical draws in every session: no session effect to add. The two levels count the
    # sampling noise about twice (up to ~sqrt(2) wider; module docstring), no more.
    samples, groups = _sessions([100.0, 100.0, 100.0], sd=10.0, seed=4)
    ratio = _width(summarize(samples, groups=groups)) / _width(summarize(samples))
    assert 0.8 < ratio < 1.8


def test_two_level_ci_is_deterministic_with_seed():
    samples, groups = _sessions([100.0, 103.0, 101.0], n=300)
    first = summarize(samples, groups=groups, seed=5)
    assert first == summarize(samples, groups=groups, seed=5)
    assert summarize(samples, groups=groups, seed=6) != first
    assert summarize(samples, groups=list(groups), seed=5) == first
    # Group ids are labels: other values in the same order give the same interval.
    assert summarize(samples, groups=np.array(["a", "b", "c"])[groups], seed=5) == first


def test_one_group_is_the_flat_interval():
    samples = np.random.default_rng(2).lognormal(6.0, 0.3, 400)
    assert summarize(samples, groups=np.zeros(400)) == summarize(samples)


@pytest.mark.parametrize("sizes", [(3, 3, 3), (2, 2), (1, 2, 4)])
def test_two_level_bootstrap_matches_resampling(sizes):
    # Oracle: draw groups with replacement, then each drawn group's samples with replacement,
    # pool and take np.median; the exact search must give the same distribution.
    rng = np.random.default_rng(11)
    values = [np.sort(rng.integers(0, 6, size) * 1.0 + 3 * g) for g, size in enumerate(sizes)]
    x = np.concatenate(values)
    codes = np.concatenate([np.full(size, g) for g, size in enumerate(sizes)])
    order = np.argsort(x, kind="stable")
    fast = _cluster_bootstrap_medians(x[order], codes[order], seed=0, resamples=100_000)
    resamples, groups, widest = 100_000, len(sizes), max(sizes)
    padded = np.full((groups, widest), np.nan)
    for g, v in enumerate(values):
        padded[g, : v.size] = v
    oracle = np.random.default_rng(1)
    drawn = oracle.integers(0, groups, size=(resamples, groups))
    size = np.asarray(sizes)[drawn][:, :, None]
    within = (oracle.random((resamples, groups, widest)) * size).astype(np.int64)
    picked = padded[drawn[:, :, None], within]
    picked[np.arange(widest)[None, None, :] >= size] = np.nan  # a group draws its size only
    slow = np.nanmedian(picked.reshape(resamples, -1), axis=1)
    support = np.union1d(np.unique(fast), np.unique(slow))
    fast_freq = np.array([(fast == v).mean() for v in support])
    slow_freq = np.array([(slow == v).mean() for v in support])
    np.testing.assert_allclose(fast_freq, slow_freq, atol=0.008)


def test_two_level_bootstrap_is_fast():
    samples, groups = _sessions([1000.0, 1100.0, 1200.0], n=5000, sd=50.0)
    start = time.perf_counter()
    summarize(samples, groups=groups, bootstrap=2000)
    assert time.perf_counter() - start < 0.5


def test_groups_must_match_samples():
    with pytest.raises(ValueError, match="groups"):
        summarize([1.0, 2.0, 3.0], groups=[0, 1])


def test_to_dict_names_the_two_level_interval():
    samples, groups = _sessions([100.0, 110.0], n=50)
    data = summarize(samples, groups=groups).to_dict()
    assert data["n_groups"] == 2 and "two-level" in data["median_ci"]
    assert summarize(samples).to_dict()["n_groups"] == 1
