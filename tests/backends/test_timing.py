"""Timing method: steady-state warm-up, iteration and time floors, first call, sync, progress."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from graphopt.backends.timing import TimingConfig, combine_sessions, measure, measure_concurrent

MS = 1_000_000  # ns


class FakeClock:
    """A nanosecond clock that only moves when the fake work says so."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def work(self, duration_ns: Callable[[int], int]) -> Callable[[], None]:
        """A call whose i-th invocation (0-based) takes ``duration_ns(i)``."""
        calls = {"n": 0}

        def call() -> None:
            self.now += duration_ns(calls["n"])
            calls["n"] += 1

        call.calls = calls  # type: ignore[attr-defined]
        return call


def _decaying(decay: float) -> Callable[[int], int]:
    """A warm-up curve: 5 ms on the first call, decaying geometrically towards 1 ms."""
    return lambda i: int(MS + 4 * MS * decay**i)


def test_warm_up_runs_until_steady_not_a_fixed_count():
    config = TimingConfig(min_iterations=20, min_seconds=0.0, warmup_window=10)
    counts = []
    for decay in (0.8, 0.9):
        clock = FakeClock()
        result = measure(clock.work(_decaying(decay)), config, clock=clock)
        assert result.steady
        assert result.first_call_us == pytest.approx(5000.0)
        # Steady = medians of the last two windows of 10 within 5%; by hand for decay 0.8 that
        # first holds near call 34, when the calls are within 0.2% of 1 ms (decay 0.9: 1.5%).
        assert result.samples_us.max() < 1020.0
        assert result.stats.p50 == pytest.approx(1000.0, rel=1e-2)
        counts.append(result.warmup_iterations)
    # By hand: window medians sit near calls k-14.5 and k-4.5, so steady needs
    # 4 d^(k-14.5) (1 - d^10) <= 0.05 x ~1 ms: k = 34 for d = 0.8, k = 52 for d = 0.9.
    assert counts == [34, 52]


def test_warm_up_stops_at_first_steady_window_pair():
    clock = FakeClock()
    call = clock.work(lambda i: 5 * MS if i < 13 else MS)
    config = TimingConfig(min_iterations=20, min_seconds=0.0, warmup_window=10)
    result = measure(call, config, clock=clock)
    # Call 0 is the separate first call; warm-up calls 1-12 are slow. After k warm-up calls the
    # windows are calls k-19..k-10 and k-9..k; both medians are 1 ms once the earlier window
    # holds at most 4 slow calls: 12 - (k - 19) + 1 <= 4, k = 28.
    assert result.steady and result.warmup_iterations == 28
    assert result.warmup_seconds == pytest.approx((12 * 5 + 16) / 1e3)
    np.testing.assert_array_equal(result.samples_us, np.full(20, 1000.0))


def test_warm_up_gives_up_after_max_seconds_and_says_so():
    clock = FakeClock()
    call = clock.work(lambda i: int(MS * 1.02**i))  # never settles: +22% per window of 10
    config = TimingConfig(min_iterations=5, min_seconds=0.0, warmup_max_seconds=0.5)
    result = measure(call, config, clock=clock)
    assert not result.steady
    assert 0.5 <= result.warmup_seconds < 0.6
    assert result.samples_us.size == 5


def test_warm_up_minimum_iterations_honoured():
    clock = FakeClock()
    call = clock.work(lambda i: MS)
    config = TimingConfig(min_iterations=3, min_seconds=0.0, warmup_min_iterations=37,
                          warmup_window=2)
    assert measure(call, config, clock=clock).warmup_iterations == 37


@pytest.mark.parametrize(
    ("min_iterations", "min_seconds", "max_iterations", "expected"),
    [(50, 0.01, 100_000, 50), (5, 0.2, 100_000, 200), (5, 10.0, 100, 100)],
)
def test_iteration_and_time_floors_and_ceiling(min_iterations, min_seconds, max_iterations,
                                               expected):
    clock = FakeClock()
    call = clock.work(lambda i: MS)
    config = TimingConfig(min_iterations=min_iterations, min_seconds=min_seconds,
                          max_iterations=max_iterations)
    result = measure(call, config, clock=clock)
    assert result.samples_us.size == expected


def test_sync_runs_inside_the_timed_region_after_each_call():
    clock = FakeClock()
    order: list[str] = []

    def call() -> None:
        order.append("call")
        clock.now += MS

    def sync() -> None:
        order.append("sync")
        clock.now += MS // 2

    result = measure(call, TimingConfig(min_iterations=10, min_seconds=0.0), sync=sync,
                     clock=clock)
    assert order == ["call", "sync"] * (len(order) // 2)
    assert result.first_call_us == pytest.approx(1500.0)
    np.testing.assert_array_equal(result.samples_us, np.full(10, 1500.0))


def test_progress_reports_fractions_ending_at_one():
    clock = FakeClock()
    call = clock.work(lambda i: 10 * MS)
    seen: list[float] = []
    measure(call, TimingConfig(min_iterations=5, min_seconds=1.0), progress=seen.append,
            clock=clock)
    assert seen[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in seen)
    assert seen == sorted(seen) and len(seen) > 2


def test_to_dict_with_and_without_samples():
    clock = FakeClock()
    result = measure(clock.work(lambda i: MS), TimingConfig(min_iterations=4, min_seconds=0.0),
                     clock=clock)
    full = result.to_dict()
    assert full["samples_us"] == [1000.0] * 4
    assert full["stats"]["n"] == 4 and full["config"]["min_iterations"] == 4
    assert "samples_us" not in result.to_dict(include_samples=False)


def test_real_clock_smoke():
    config = TimingConfig(min_iterations=20, min_seconds=0.02, warmup_max_seconds=0.05)
    start = time.perf_counter()
    result = measure(lambda: sum(range(200)), config)
    assert result.samples_us.size >= 20
    assert result.stats.min > 0 and result.first_call_us > 0
    assert result.wall_seconds <= time.perf_counter() - start


def test_measure_concurrent_counts_only_drained_requests():
    clock = FakeClock()
    submitted = {"n": 0}

    def submit() -> None:
        submitted["n"] += 1
        clock.now += MS

    def wait_all() -> None:
        clock.now += 5 * MS

    rate = measure_concurrent(submit, wait_all, seconds=0.1, batch_size=2, warmup_requests=3,
                              clock=clock)
    # 100 timed submissions of 1 ms, a 5 ms drain: 200 inferences in 0.105 s.
    assert submitted["n"] == 103
    assert rate == pytest.approx(200 / 0.105)


@pytest.mark.parametrize(
    "kwargs",
    [{"min_iterations": 0}, {"min_iterations": 10, "max_iterations": 5}, {"warmup_window": 0},
     {"warmup_tolerance": 0.0}, {"min_seconds": -1.0}],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        TimingConfig(**kwargs)


def test_split_divides_the_timed_budget_over_sessions():
    config = TimingConfig(min_iterations=50, min_seconds=2.0, max_iterations=1000,
                          warmup_max_seconds=3.0)
    share = config.split(3)
    assert share.min_seconds == pytest.approx(2.0 / 3)
    assert (share.min_iterations, share.max_iterations) == (17, 334)  # rounded up
    assert share.warmup_max_seconds == 3.0  # every session warms up in full
    assert config.split(1) is config
    with pytest.raises(ValueError):
        config.split(0)


def test_combine_sessions_pools_samples_with_their_session():
    config = TimingConfig(min_iterations=4, min_seconds=0.0)
    runs = []
    for first, steady in ((5 * MS, MS), (7 * MS, 2 * MS)):
        clock = FakeClock()
        call = clock.work(lambda i, first=first, steady=steady: first if i == 0 else steady)
        runs.append(measure(call, config.split(2), clock=clock))
    pooled = combine_sessions(runs, config)
    np.testing.assert_array_equal(pooled.samples_us, [1000.0, 1000.0, 2000.0, 2000.0])
    np.testing.assert_array_equal(pooled.samples_session, [0, 0, 1, 1])
    assert pooled.first_call_us == pytest.approx(5000.0)  # the first session's
    assert pooled.warmup_iterations == runs[0].warmup_iterations + runs[1].warmup_iterations
    assert pooled.stats.n == 4 and pooled.stats.n_groups == 2
    assert pooled.config == config
    data = pooled.to_dict()
    assert data["samples_session"] == [0, 0, 1, 1]
    assert [s["first_call_us"] for s in data["sessions"]] == pytest.approx([5000.0, 7000.0])
    assert data["sessions"][0]["config"]["min_iterations"] == 2
    assert "samples_session" not in pooled.to_dict(include_samples=False)


def test_combine_one_session_keeps_its_statistics():
    clock = FakeClock()
    run = measure(clock.work(lambda i: MS + i * 1000), TimingConfig(min_iterations=9,
                                                                     min_seconds=0.0), clock=clock)
    pooled = combine_sessions([run], run.config)
    assert pooled.stats == run.stats
    assert pooled.to_dict()["samples_session"] == [0] * 9
    with pytest.raises(ValueError):
        combine_sessions([], run.config)
