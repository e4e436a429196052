"""The paired speedup and its CI: definitions by hand, coverage on data with a known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphopt.backends.speedup import (
    SpeedupInterval,
    _expanded_tail,
    _t_quantile,
    paired_speedup,
    trimmed_mean,
)


def test_trimmed_mean_by_hand():
    # 10 values, 20% trimmed: drop 2 at each end, average 3..8.
    assert trimmed_mean([10, 1, 9, 2, 8, 3, 7, 4, 6, 5]) == pytest.approx(5.5)
    assert trimmed_mean([1, 2, 3, 1000]) == pytest.approx(251.5)  # floor(0.8) = 0: no trim
    assert trimmed_mean([1, 2, 3, 4, 1000]) == pytest.approx(3.0)  # floor(1.0) = 1 each end


def test_constant_ratio_is_exact():
    base = np.array([2.0, 4.0, 6.0, 3.0, 5.0])
    interval = paired_speedup(base, base / 2.0)
    assert interval.estimate == pytest.approx(2.0)
    assert (interval.low, interval.high) == pytest.approx((2.0, 2.0))
    assert interval.pairs == 5 and interval.half_width == pytest.approx(0.0, abs=1e-12)


def test_t_quantiles_and_expanded_tail_by_table():
    # Student t 97.5% quantiles from the tables: df 10 -> 2.228, df 29 -> 2.045, df 3 -> 3.182.
    assert _t_quantile(0.975, 10) == pytest.approx(2.2281, abs=1e-3)
    assert _t_quantile(0.975, 29) == pytest.approx(2.0452, abs=1e-3)
    assert _t_quantile(0.975, 3) == pytest.approx(3.1824, abs=5e-3)
    # 30 rounds keep 18 values: Phi(-sqrt(18/17) * t(0.975, 17)) = Phi(-1.0290 * 2.1098)
    # = Phi(-2.1710) = 0.0150 (a plain percentile interval would take 0.025).
    assert _expanded_tail(0.95, 18) == pytest.approx(0.0150, abs=2e-4)
    assert _expanded_tail(0.95, 10_000) == pytest.approx(0.025, abs=2e-4)  # large n: plain


def _rounds(rng, n, truth, noise=0.05, drift=0.05, contamination=0.1):
    """Per-round block latencies: shared random-walk drift, lognormal noise per block, and a
    share of blocks hit by a 1.5x burst of other load on either side."""
    shared = np.exp(np.cumsum(rng.normal(0.0, drift, n)))
    hits_b = np.where(rng.random(n) < contamination, 1.5, 1.0)
    hits_c = np.where(rng.random(n) < contamination, 1.5, 1.0)
    base = truth * shared * rng.lognormal(0.0, noise, n) * hits_b
    cand = shared * rng.lognormal(0.0, noise, n) * hits_c
    return base, cand


@pytest.mark.parametrize("n", [30, 80])
def test_ci_covers_the_known_speedup_at_the_stated_confidence(n):
    # The noise is symmetric between the sides, so the truth is exactly 1.1. Over 300
    # experiments a calibrated 95% CI covers it 285 times on average (binomial sd 3.8).
    rng = np.random.default_rng(n)
    covered = 0
    for seed in range(300):
        interval = paired_speedup(*_rounds(rng, n, truth=1.1), seed=seed, resamples=1000)
        covered += interval.low <= 1.1 <= interval.high
    assert 0.92 <= covered / 300 <= 0.99


def test_pairing_cancels_drift_that_independent_intervals_cannot():
    rng = np.random.default_rng(5)
    base, cand = _rounds(rng, 60, truth=1.05, noise=0.01, drift=0.1, contamination=0.0)
    paired = paired_speedup(base, cand)
    assert paired.low <= 1.05 <= paired.high
    assert paired.half_width < 0.01  # the shared drift is gone...
    # ...while each side alone swings over the whole random walk: the ratio of separate CIs
    # of the two means spans far more than the paired one.
    def ci(x):
        draws = rng.choice(x, size=(2000, x.size)).mean(axis=1)
        return np.percentile(draws, [2.5, 97.5])
    (b_low, b_high), (c_low, c_high) = ci(base), ci(cand)
    assert (b_high / c_low) / (b_low / c_high) > 1 + 10 * 2 * paired.half_width


def test_deterministic_with_seed_and_wider_at_higher_confidence():
    rng = np.random.default_rng(1)
    base, cand = _rounds(rng, 40, truth=1.0)
    first = paired_speedup(base, cand, seed=3)
    assert first == paired_speedup(base, cand, seed=3)
    assert first != paired_speedup(base, cand, seed=4)
    wide = paired_speedup(base, cand, seed=3, confidence=0.99)
    assert wide.low < first.low and wide.high > first.high
    assert isinstance(first, SpeedupInterval)
    assert set(first.to_dict()) == {"estimate", "low", "high", "confidence", "pairs",
                                    "half_width"}


@pytest.mark.parametrize(
    ("base", "cand", "kwargs", "message"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], {}, "pair up"),
        ([1.0, 2.0], [1.0, 2.0], {}, "at least 3"),
        ([1.0, 0.0, 3.0], [1.0, 2.0, 3.0], {}, "> 0"),
        ([1.0, math.nan, 3.0], [1.0, 2.0, 3.0], {}, "finite"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], {"confidence": 1.0}, "confidence"),
    ],
)
def test_rejects_bad_input(base, cand, kwargs, message):
    with pytest.raises(ValueError, match=message):
        paired_speedup(base, cand, **kwargs)
