"""Paired measurement on a fake clock: schedule, blocks, stopping rule, contention, verdicts."""

from __future__ import annotations

import collections
import itertools
import random
from collections.abc import Callable

import numpy as np
import pytest

from graphopt.backends.paired import (
    STOP_CI_TARGET,
    STOP_TIME_BUDGET,
    Arm,
    PairedConfig,
    balanced_orders,
    measure_paired,
)
from graphopt.latency import FASTER, NO_DIFFERENCE, SLOWER, LatencyComparison, verdict_of

MS = 1_000_000  # ns


class FakeMachine:
    """A nanosecond clock that moves only when fake work (or a fake sleep) says so, and a
    fake /proc/stat whose other load follows ``other_load(seconds)``."""

    def __init__(self, other_load: Callable[[float], float] = lambda t: 0.0,
                 own_load: float = 1.0) -> None:
        self.now = 0
        self.other_load = other_load
        self.own_load = own_load
        self.slept = 0.0
        self._last = (0.0, 0.0, 0.0)  # wall, machine busy, own cpu (seconds)

    def __call__(self) -> int:
        return self.now

    def load(self):
        wall = self.now / 1e9
        last_wall, busy, own = self._last
        dt = wall - last_wall
        own += self.own_load * dt
        busy += (self.own_load + self.other_load(last_wall)) * dt
        self._last = (wall, busy, own)
        return self._last

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += int(seconds * 1e9)

    def arm(self, name: str, latency_ns: Callable[[int, float], float]) -> Arm:
        """An arm whose i-th call at time t (seconds) takes ``latency_ns(i, t)``."""
        calls = itertools.count()

        def call() -> None:
            self.now += int(latency_ns(next(calls), self.now / 1e9))

        return Arm(name, call)


def _noisy(base_ns: float, sd: float, seed: int, drift: Callable[[float], float] = lambda t: 1.0):
    rng = np.random.default_rng(seed)
    return lambda i, t: base_ns * drift(t) * rng.lognormal(0.0, sd)


def _run(machine, arms, **config):
    defaults = {"max_seconds": 20.0, "warmup_max_seconds": 1.0, "resamples": 500}
    return measure_paired(arms, PairedConfig(**{**defaults, **config}), clock=machine,
                          load=machine.load, sleep=machine.sleep)


# -- schedule ------------------------------------------------------------------------------


def test_two_arms_alternate_ab_and_ba_in_random_order():
    orders = balanced_orders(2, random.Random(0))
    groups = [tuple(next(orders) for _ in range(2)) for _ in range(200)]
    assert all(set(g) == {(0, 1), (1, 0)} for g in groups)  # each pair of rounds: AB and BA
    firsts = collections.Counter(g[0] for g in groups)
    assert 70 < firsts[(0, 1)] < 130  # which comes first is random, not fixed


def test_every_arm_takes_every_position_once_per_group():
    orders = balanced_orders(4, random.Random(1))
    seen = set()
    for _ in range(50):
        group = [next(orders) for _ in range(4)]
        for position in range(4):
            assert sorted(order[position] for order in group) == [0, 1, 2, 3]
        seen.add(tuple(group))
    assert len(seen) > 40  # randomised: groups differ
    with pytest.raises(ValueError):
        next(balanced_orders(0, random.Random(0)))


def test_measured_rounds_are_balanced():
    machine = FakeMachine()
    arms = [machine.arm(name, _noisy(MS, 0.01, seed)) for seed, name in enumerate("abc")]
    result = _run(machine, arms, min_rounds=30)
    positions = collections.Counter((arm, pos) for order in result.orders
                                    for pos, arm in enumerate(order))
    full = len(result.orders) // 3 * 3
    assert all(count >= full // 3 for count in positions.values())
    assert max(positions.values()) - min(positions.values()) <= 2  # at most one open group


# -- blocks and warm-up --------------------------------------------------------------------


def test_blocks_last_about_block_seconds_and_lead_in_is_kept_apart():
    machine = FakeMachine()
    last = {"arm": None}

    def switching(name, base):
        # The first call after the other arm ran is 3x slower (cold caches, idle threads).
        def latency(i, t):
            slow = last["arm"] != name
            last["arm"] = name
            return base * (3.0 if slow else 1.0)
        return machine.arm(name, latency)

    result = _run(machine, [switching("fast", MS), switching("slow", 10 * MS)],
                  block_seconds=0.05, min_rounds=10, ci_target=0.5)
    fast, slow = result.arms
    assert (fast.block_calls, slow.block_calls) == (50, 5)  # ceil(50 ms / latency), cap 50
    # Lead-in calls take the switch penalty; the statistics never see it.
    assert fast.stats.max == pytest.approx(1000.0) and slow.stats.max == pytest.approx(10000.0)
    assert fast.switch_penalty == pytest.approx(3.0)
    assert result.comparisons[0].interval.estimate == pytest.approx(0.1)
    assert result.comparisons[0].verdict == SLOWER


def test_warm_up_runs_until_every_arm_is_steady():
    machine = FakeMachine()
    settle = machine.arm("settles", lambda i, t: MS * (1 + 4 * 0.8**i))
    flat = machine.arm("flat", lambda i, t: 2 * MS)
    result = _run(machine, [settle, flat], min_rounds=5, ci_target=0.5)
    assert result.steady
    # The decaying arm sets the pace: past the minimum of two windows of 10 calls.
    assert result.arms[0].warmup_iterations == result.arms[1].warmup_iterations > 20
    assert result.arms[0].first_call_us == pytest.approx(5000.0)


def test_warm_up_that_never_settles_is_reported():
    machine = FakeMachine()
    growing = machine.arm("growing", lambda i, t: MS * 1.03**min(i, 200))
    result = _run(machine, [growing, machine.arm("flat", lambda i, t: MS)],
                  warmup_max_seconds=0.3, min_rounds=5, max_seconds=3.0)
    assert not result.steady
    assert any("steady" in w for w in result.warnings)


# -- the speedup ---------------------------------------------------------------------------


def test_drift_shared_by_both_arms_cancels():
    # The machine slows down 2x over the run; the candidate is always 1.25x faster.
    drift = lambda t: 1.0 + t / 5.0  # noqa: E731
    machine = FakeMachine()
    base = machine.arm("base", _noisy(1.25 * MS, 0.005, 1, drift))
    cand = machine.arm("cand", _noisy(MS, 0.005, 2, drift))
    result = _run(machine, [base, cand], min_rounds=20)
    (comparison,) = result.comparisons
    assert comparison.interval.low <= 1.25 <= comparison.interval.high
    assert comparison.interval.half_width < 0.02
    assert comparison.verdict == FASTER
    # The arms' own medians moved with the drift; their spread is far wider than the CI.
    assert result.arms[0].stats.max / result.arms[0].stats.min > 1.1


def test_same_arm_twice_is_no_detectable_difference():
    machine = FakeMachine()
    result = _run(machine, [machine.arm("a", _noisy(MS, 0.05, 1)),
                            machine.arm("b", _noisy(MS, 0.05, 2))])
    (comparison,) = result.comparisons
    assert comparison.interval.low < 1.0 < comparison.interval.high
    assert comparison.verdict == NO_DIFFERENCE


def test_several_candidates_are_compared_against_the_baseline():
    machine = FakeMachine()
    arms = [machine.arm("base", _noisy(2 * MS, 0.01, 0)),
            machine.arm("half", _noisy(MS, 0.01, 1)),
            machine.arm("double", _noisy(4 * MS, 0.01, 2))]
    result = _run(machine, arms)
    assert [c.candidate for c in result.comparisons] == ["half", "double"]
    assert {c.baseline for c in result.comparisons} == {"base"}
    assert result.comparison("half").interval.estimate == pytest.approx(2.0, rel=0.02)
    assert result.comparison("double").interval.estimate == pytest.approx(0.5, rel=0.02)
    assert [c.verdict for c in result.comparisons] == [FASTER, SLOWER]


def test_sessions_rotate_by_group_and_their_offsets_widen_the_ci():
    # Three sessions per arm of the same model; each session is off by up to 2% for good
    # (memory layout, thread placement). One session per arm would call that a speedup.
    offsets = {"a": (1.0, 1.02, 0.99), "b": (1.015, 0.985, 1.0)}

    def arm(machine, name, sessions):
        calls = [machine.arm(name, _noisy(MS * offsets[name][k], 0.003, 10 * k + len(name)))
                 .sessions[0] for k in sessions]
        return Arm(name, tuple(calls))

    machine = FakeMachine()
    one = _run(machine, [arm(machine, "a", [1]), arm(machine, "b", [1])], ci_target=0.002)
    assert one.sessions == 1
    assert one.comparisons[0].verdict == FASTER  # 1.02 vs 0.985 ms: a session artefact
    machine = FakeMachine()
    three = _run(machine, [arm(machine, "a", [0, 1, 2]), arm(machine, "b", [0, 1, 2])],
                 ci_target=0.002, max_seconds=10.0)
    assert three.sessions == 3
    # Groups of two rounds (two arms) take sessions 0, 1, 2, 0, ... in turn.
    assert three.round_sessions[:8] == [0, 0, 1, 1, 2, 2, 0, 0]
    interval = three.comparisons[0].interval
    assert interval.low <= 1.0 <= interval.high  # the sessions average out, and the CI says
    assert three.comparisons[0].verdict == NO_DIFFERENCE  # how little three of them pin down
    assert three.arms[0].stats.n_groups == 3


def test_arms_need_the_same_number_of_sessions():
    machine = FakeMachine()
    single = machine.arm("a", lambda i, t: MS)
    with pytest.raises(ValueError, match="same number of sessions"):
        _run(machine, [single, Arm("b", (single.sessions[0], single.sessions[0]))])
    with pytest.raises(ValueError, match="no session"):
        Arm("c", ())


# -- stopping rule -------------------------------------------------------------------------


def test_stops_when_the_ci_is_narrower_than_the_target():
    def run(target):
        machine = FakeMachine()
        arms = [machine.arm("a", _noisy(10 * MS, 0.05, 1)),
                machine.arm("b", _noisy(10 * MS, 0.05, 2))]
        return machine, _run(machine, arms, ci_target=target, max_seconds=120.0)

    machine, result = run(0.01)
    assert result.stop_reason == STOP_CI_TARGET
    assert result.comparisons[0].interval.half_width <= 0.01
    assert result.rounds_used > 20  # min_rounds was not enough
    assert "within +-1.0%" in result.stop_detail
    assert machine.now / 1e9 < 120.0 and not result.warnings
    # Half the width takes about four times the rounds.
    _, tight = run(0.005)
    assert tight.stop_reason == STOP_CI_TARGET
    assert 2.5 * result.rounds_used < tight.rounds_used < 6 * result.rounds_used


def test_stops_when_the_budget_runs_out_and_says_so():
    machine = FakeMachine()
    result = _run(machine, [machine.arm("a", _noisy(MS, 0.5, 1)),
                            machine.arm("b", _noisy(MS, 0.5, 2))], ci_target=0.001,
                  max_seconds=2.0)
    assert result.stop_reason == STOP_TIME_BUDGET
    assert 2.0 <= machine.now / 1e9 < 2.0 + 0.5 + 0.2  # at most one segment over
    assert "2 s budget ran out" in result.stop_detail
    assert any("before the CI target" in w for w in result.warnings)
    assert result.comparisons[0].interval.half_width > 0.001


def test_a_tiny_budget_still_gives_an_interval():
    machine = FakeMachine()
    result = _run(machine, [machine.arm("a", lambda i, t: 100 * MS),
                            machine.arm("b", lambda i, t: 100 * MS)], max_seconds=0.01)
    assert result.stop_reason == STOP_TIME_BUDGET
    assert result.rounds_used >= 3 and result.comparisons[0].interval.pairs >= 3


def test_single_arm_stops_on_the_ci_of_its_median():
    machine = FakeMachine()
    result = _run(machine, [machine.arm("only", _noisy(MS, 0.02, 1))], ci_target=0.01)
    assert result.stop_reason == STOP_CI_TARGET and result.comparisons == []
    (arm,) = result.arms
    assert arm.stats.median_ci_high / arm.stats.p50 - 1 <= 0.01
    assert "CI of the median" in result.stop_detail


# -- contention ----------------------------------------------------------------------------


def _busy_between(start, end, cores=1.5):
    return lambda t: cores if start <= t < end else 0.0


@pytest.mark.parametrize("policy", ["flag", "extend", "pause"])
def test_contended_segments_follow_the_policy(policy):
    # Another process takes 1.5 cores from 1 s to 2 s of fake time; we use 1 core of 2.
    machine = FakeMachine(other_load=_busy_between(1.0, 2.0))
    arms = [machine.arm("a", _noisy(MS, 0.01, 1)), machine.arm("b", _noisy(MS, 0.01, 2))]
    result = _run(machine, arms, contention=policy, min_rounds=10, ci_target=0.001,
                  max_seconds=4.0)
    assert result.contended_segments >= 1
    dropped = sum(s["rounds"] for s in result.segments if not s["kept"])
    if policy == "flag":
        assert dropped == 0 and result.rounds_used == result.rounds_run
        assert any("(kept)" in w for w in result.warnings)
    else:
        assert dropped > 0 and result.rounds_used == result.rounds_run - dropped
        assert any("dropped" in w for w in result.warnings)
    assert (result.paused_seconds > 0) == (policy == "pause")
    assert (machine.slept > 0) == (policy == "pause")
    data = result.to_dict(include_samples=False)
    assert data["contention_policy"] == policy and data["contended_segments"] >= 1


def test_a_neighbour_on_the_core_we_leave_idle_is_not_contention():
    machine = FakeMachine(other_load=lambda t: 0.7, own_load=1.0)
    arms = [machine.arm("a", _noisy(MS, 0.01, 1)), machine.arm("b", _noisy(MS, 0.01, 2))]
    result = _run(machine, arms)
    assert result.contended_segments == 0
    assert result.background_cores_busy == pytest.approx(0.7, abs=0.01)


def test_contention_throughout_falls_back_to_every_round():
    machine = FakeMachine(other_load=lambda t: 1.5)
    arms = [machine.arm("a", _noisy(MS, 0.01, 1)), machine.arm("b", _noisy(MS, 0.01, 2))]
    result = _run(machine, arms, max_seconds=2.0)
    assert result.contention_fallback and result.rounds_used == result.rounds_run
    assert any("too few quiet rounds" in w for w in result.warnings)


# -- verdicts and the record ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(1.01, 1.2, FASTER), (0.8, 0.99, SLOWER), (0.99, 1.01, NO_DIFFERENCE),
     (1.0, 1.1, NO_DIFFERENCE), (0.9, 1.0, NO_DIFFERENCE)],
)
def test_verdict_needs_the_whole_ci_on_one_side_of_one(low, high, verdict):
    assert verdict_of(low, high) == verdict


def test_result_dict_is_json_ready_and_complete():
    import json

    machine = FakeMachine()
    result = _run(machine, [machine.arm("a", _noisy(MS, 0.02, 1)),
                            machine.arm("b", _noisy(0.9 * MS, 0.02, 2))])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["baseline"] == "a" and data["stop_reason"] == STOP_CI_TARGET
    (comparison,) = data["comparisons"]
    assert comparison["verdict"] == FASTER and comparison["confidence"] == 0.95
    assert comparison["ci_low"] <= comparison["speedup"] <= comparison["ci_high"]
    arm = data["arms"][1]
    assert len(arm["samples_us"]) == len(arm["samples_round"]) == arm["stats"]["n"]
    assert len(arm["block_us"]) == data["rounds_used"] == len(data["orders"])
    assert "paired" in data["method"] and data["config"]["ci_target"] == 0.02
    assert "samples_us" not in result.to_dict(include_samples=False)["arms"][0]
    assert LatencyComparison.__dataclass_fields__.keys() >= {"speedup", "ci_low", "ci_high"}


@pytest.mark.parametrize(
    "kwargs",
    [{"ci_target": 0.0}, {"max_seconds": 0.0}, {"confidence": 1.5}, {"min_rounds": 2},
     {"contention": "ignore"}, {"segment_seconds": 0.0}],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        PairedConfig(**kwargs)


def test_arm_names_must_be_unique():
    machine = FakeMachine()
    with pytest.raises(ValueError, match="unique"):
        _run(machine, [machine.arm("a", lambda i, t: MS), machine.arm("a", lambda i, t: MS)])
    with pytest.raises(ValueError, match="no arms"):
        _run(machine, [])


def test_paired_runners_do_not_spin_while_another_runs():
    from graphopt.backends.comparison import idle_quietly
    from graphopt.backends.registry import parse_backend

    assert str(idle_quietly(parse_backend("ort-cpu@threads=2"))) == "ort-cpu@threads=2,spin=false"
    assert str(idle_quietly(parse_backend("ort-cpu@spin=true"))) == "ort-cpu@spin=true"
    assert str(idle_quietly(parse_backend("openvino-cpu:f32"))) == "openvino-cpu:fp32"
