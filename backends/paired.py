"""Paired A/B measurement: every arm alive, short blocks in a balanced random order.

Two measurements taken one after the other differ by whatever the machine did in between
(clock and thermal drift, a neighbour, a background job): on a shared VM that is 10-20%,
far more than the gains worth detecting. :func:`measure_paired` therefore keeps every arm
(a model on a backend with its settings, as a callable) alive and alternates them, so drift
hits every arm alike, and estimates each candidate's speedup over the baseline (arm 0) from
rounds in which both ran. Method:

1. **First call** of each arm, timed alone (lazy initialisation, reported apart).
2. **Warm-up, interleaved**: the arms take turns (each turn its lead-in calls, see 3, then
   one call that counts) until each is steady by the rule of
   :func:`graphopt.backends.timing.is_steady`, or ``warmup_max_seconds`` (capped at a third
   of the budget) have passed; the result then says ``steady=False``.
3. **Blocks**: each arm's block holds as many calls as fit in ``block_seconds`` at its
   warm-up median (1 to ``max_block_calls``), so blocks of a fast and a slow arm last about
   as long and share the same drift. A block starts with ``lead_in_calls`` calls that are
   timed and kept apart from the statistics: the first call after a switch pays for the other
   arm's cache footprint and its runtime's idle threads. The block's statistic is the median
   of its other calls.
4. **Rounds in a balanced random order**: a round runs one block of every arm. In each group
   of A consecutive rounds (A arms) the orders are the A rotations of a random permutation,
   shuffled, so every arm takes every position exactly once per group (two arms: AB and BA
   in random order) and no arm always runs right after another.
5. **Contention**: rounds are grouped into segments of ``segment_seconds``; /proc/stat
   readings around each (:mod:`graphopt.backends.cpuload`) say whether other processes
   spilled onto the cores this measurement uses. The ``contention`` policy decides:
   ``flag`` keeps such segments and reports them, ``extend`` drops their rounds and measures
   on within the budget, ``pause`` drops them, waits until the machine is quiet again and
   runs one untimed round before resuming. If the machine stays busy (fewer than
   ``min_rounds`` quiet rounds by half the budget, or at the end), every round is used from
   then on and the result says so (``contention_fallback``).
6. **Stopping rule**: after each segment, once ``min_rounds`` rounds are kept, the speedup
   CI of every candidate (:func:`graphopt.backends.speedup.paired_speedup`, rounds resampled
   as pairs) is computed; the measurement stops when every CI is within ``+-ci_target``
   (``stop_reason="ci_target"``) or when ``max_seconds`` have passed since the warm-up began
   (``"time_budget"``). At least :data:`~graphopt.backends.speedup.MIN_PAIRS` rounds are run
   whatever the budget. With a single arm the rule applies to the CI of its median.

**Sessions**: an arm may bring several runner sessions of the same configuration (all
alive). A session shifts every latency it produces (memory layout, thread placement), so
two sessions of one model differ by a few tenths of a percent, which one session per arm
would report as a speedup. Every group of A rounds runs on the next session of each arm in
turn, the warm-up turns rotate the same way, and the speedup CI resamples sessions, then
rounds within them (two levels, see :mod:`graphopt.backends.speedup`).

Each arm's absolute figures come from :func:`graphopt.backends.stats.summarize` over its
timed calls in the rounds used, grouped by session (or, with one session, into at most
:data:`ABSOLUTE_GROUPS` runs of consecutive rounds): a two-level bootstrap, groups then
calls. The CI of the median is 95% whatever ``confidence`` says (that applies to speedups).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np

from graphopt.backends.cpuload import (
    BACKGROUND_LOAD_WARNING,
    CpuClocks,
    contended,
    cpu_clocks,
    other_cores_busy,
    own_cores_busy,
)
from graphopt.backends.speedup import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    MIN_PAIRS,
    SpeedupInterval,
    paired_speedup,
)
from graphopt.backends.stats import DEFAULT_BOOTSTRAP, LatencyStats, summarize
from graphopt.backends.timing import Clock, TimingConfig, is_steady
from graphopt.latency import Verdict, verdict_of

__all__ = [
    "CONTENTION_POLICIES",
    "DEFAULT_CI_TARGET",
    "DEFAULT_MAX_SECONDS",
    "STOP_CI_TARGET",
    "STOP_TIME_BUDGET",
    "STOP_MAX_ROUNDS",
    "ABSOLUTE_GROUPS",
    "Arm",
    "PairedConfig",
    "ArmResult",
    "Comparison",
    "PairedResult",
    "balanced_orders",
    "measure_paired",
]

logger = logging.getLogger(__name__)

ContentionPolicy = Literal["flag", "extend", "pause"]
CONTENTION_POLICIES: tuple[str, ...] = ("flag", "extend", "pause")
STOP_CI_TARGET = "ci_target"
STOP_TIME_BUDGET = "time_budget"
STOP_MAX_ROUNDS = "max_rounds"

DEFAULT_CI_TARGET = 0.02
DEFAULT_MAX_SECONDS = 30.0
ABSOLUTE_GROUPS = 20
"""Runs of consecutive rounds the absolute statistics group their calls into."""
_PAUSE_POLL_SECONDS = 0.2
_METHOD = ("paired: all arms alive, blocks of calls in a balanced random order per round;"
           " speedup = exp(20% trimmed mean over rounds of log(baseline block median /"
           " candidate block median)), expanded percentile bootstrap over rounds")

Progress = Callable[[str, float], None]
"""``progress(phase, fraction)``; phases ``warm-up`` and ``paired`` (fraction of the budget)."""


@dataclasses.dataclass(frozen=True)
class Arm:
    """One side of a comparison: a name and, per runner session, a call that runs one
    inference (a single callable is one session)."""

    name: str
    sessions: tuple[Callable[[], object], ...]

    def __post_init__(self) -> None:
        sessions = (self.sessions,) if callable(self.sessions) else tuple(self.sessions)
        if not sessions:
            raise ValueError(f"arm {self.name!r} has no session to call")
        object.__setattr__(self, "sessions", sessions)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairedConfig:
    """How long and how finely to measure; see the module docstring for the method."""

    ci_target: float = DEFAULT_CI_TARGET
    max_seconds: float = DEFAULT_MAX_SECONDS
    confidence: float = DEFAULT_CONFIDENCE
    min_rounds: int = 20
    max_rounds: int = 100_000
    block_seconds: float = 0.05
    max_block_calls: int = 50
    lead_in_calls: int = 1
    # The warm-up rule and its defaults are the single-model method's.
    warmup_min_iterations: int = TimingConfig.warmup_min_iterations
    warmup_max_seconds: float = TimingConfig.warmup_max_seconds
    warmup_window: int = TimingConfig.warmup_window
    warmup_tolerance: float = TimingConfig.warmup_tolerance
    segment_seconds: float = 0.5
    contention: ContentionPolicy = "extend"
    contention_threshold: float = BACKGROUND_LOAD_WARNING
    seed: int = 0
    resamples: int = DEFAULT_RESAMPLES

    def __post_init__(self) -> None:
        if not self.ci_target > 0:
            raise ValueError(f"ci_target must be > 0, got {self.ci_target}")
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.min_rounds < MIN_PAIRS or self.max_rounds < self.min_rounds:
            raise ValueError(f"need {MIN_PAIRS} <= min_rounds <= max_rounds, got"
                             f" {self.min_rounds} and {self.max_rounds}")
        if self.max_block_calls < 1 or self.lead_in_calls < 0 or self.block_seconds < 0:
            raise ValueError("max_block_calls must be >= 1, lead_in_calls and block_seconds >= 0")
        if self.warmup_window < 1 or self.warmup_tolerance <= 0:
            raise ValueError("warmup_window must be >= 1 and warmup_tolerance > 0")
        if self.segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be > 0, got {self.segment_seconds}")
        if self.contention not in CONTENTION_POLICIES:
            raise ValueError(f"contention policy {self.contention!r} is not one of"
                             f" {', '.join(CONTENTION_POLICIES)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ArmResult:
    """One arm's calls in the rounds used, and their summary."""

    name: str
    block_calls: int
    first_call_us: float
    warmup_iterations: int
    steady: bool
    samples_us: np.ndarray
    samples_round: np.ndarray
    block_us: np.ndarray
    lead_in_us: np.ndarray
    stats: LatencyStats

    @property
    def switch_penalty(self) -> float | None:
        """Median lead-in call over median timed call (> 1: switching arms costs)."""
        if self.lead_in_us.size == 0:
            return None
        return float(np.median(self.lead_in_us) / self.stats.p50)

    def to_dict(self, *, include_samples: bool = True) -> dict:
        data = {
            "name": self.name,
            "block_calls": self.block_calls,
            "first_call_us": self.first_call_us,
            "warmup_iterations": self.warmup_iterations,
            "steady": self.steady,
            "switch_penalty": self.switch_penalty,
            "stats": self.stats.to_dict(),
        }
        if include_samples:
            data["samples_us"] = [float(s) for s in self.samples_us]
            data["samples_round"] = [int(r) for r in self.samples_round]
            data["block_us"] = [float(b) for b in self.block_us]
            data["lead_in_us"] = [float(x) for x in self.lead_in_us]
        return data


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``interval.estimate`` = baseline time / candidate time, with its CI."""

    baseline: str
    candidate: str
    interval: SpeedupInterval

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.interval.low, self.interval.high)

    def to_dict(self) -> dict:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "speedup": self.interval.estimate,
            "ci_low": self.interval.low,
            "ci_high": self.interval.high,
            "confidence": self.interval.confidence,
            "half_width": self.interval.half_width,
            "rounds": self.interval.pairs,
            "verdict": self.verdict,
        }


@dataclasses.dataclass
class PairedResult:
    """Everything :func:`measure_paired` measured, how, and why it stopped."""

    arms: list[ArmResult]
    comparisons: list[Comparison]
    stop_reason: str
    stop_detail: str
    rounds_run: int
    rounds_used: int
    sessions: int
    orders: list[tuple[int, ...]]
    round_sessions: list[int]
    segments: list[dict]
    contention_fallback: bool
    paused_seconds: float
    warmup_seconds: float
    wall_seconds: float
    config: PairedConfig
    warnings: list[str]

    @property
    def steady(self) -> bool:
        return all(arm.steady for arm in self.arms)

    @property
    def contended_segments(self) -> int:
        return sum(1 for s in self.segments if s["contended"])

    @property
    def background_cores_busy(self) -> float | None:
        readings = [(s["other_cores_busy"], s["seconds"]) for s in self.segments
                    if s["other_cores_busy"] is not None]
        total = sum(w for _, w in readings)
        return sum(v * w for v, w in readings) / total if total > 0 else None

    def comparison(self, candidate: str) -> Comparison:
        return next(c for c in self.comparisons if c.candidate == candidate)

    def to_dict(self, *, include_samples: bool = True) -> dict:
        return {
            "method": _METHOD,
            "baseline": self.arms[0].name,
            "stop_reason": self.stop_reason,
            "stop_detail": self.stop_detail,
            "rounds_run": self.rounds_run,
            "rounds_used": self.rounds_used,
            "sessions": self.sessions,
            "contention_policy": self.config.contention,
            "contended_segments": self.contended_segments,
            "contention_fallback": self.contention_fallback,
            "paused_seconds": self.paused_seconds,
            "background_cores_busy": self.background_cores_busy,
            "warmup_seconds": self.warmup_seconds,
            "steady": self.steady,
            "wall_seconds": self.wall_seconds,
            "config": self.config.to_dict(),
            "comparisons": [c.to_dict() for c in self.comparisons],
            "arms": [a.to_dict(include_samples=include_samples) for a in self.arms],
            "segments": self.segments,
            "orders": [list(o) for o in self.orders] if include_samples else None,
            "round_sessions": self.round_sessions if include_samples else None,
            "warnings": self.warnings,
        }


def balanced_orders(arms: int, rng: random.Random) -> Iterator[tuple[int, ...]]:
    """Endless round orders: per group of ``arms`` rounds, the rotations of a random
    permutation in random order (every arm in every position once per group)."""
    if arms < 1:
        raise ValueError(f"need at least one arm, got {arms}")
    while True:
        base = list(range(arms))
        rng.shuffle(base)
        rotations = [tuple(base[i:] + base[:i]) for i in range(arms)]
        rng.shuffle(rotations)
        yield from rotations


@dataclasses.dataclass
class _Round:
    order: tuple[int, ...]
    session: int
    timed: list[list[int]]  # per arm, ns
    lead_in: list[list[int]]
    kept: bool = True


def measure_paired(
    arms: Sequence[Arm],
    config: PairedConfig = PairedConfig(),
    *,
    progress: Progress | None = None,
    clock: Clock = time.perf_counter_ns,
    load: Callable[[], CpuClocks | None] = cpu_clocks,
    sleep: Callable[[float], None] = time.sleep,
) -> PairedResult:
    """Measure ``arms`` paired (arm 0 is the baseline); method in the module docstring.

    Everything worth a person's attention is in the result's ``warnings`` (the log only
    repeats it at INFO). ``clock``, ``load`` and ``sleep`` exist for tests (a fake clock,
    fake /proc/stat readings, a sleep that advances the fake clock); leave them alone.
    """
    if not arms:
        raise ValueError("nothing to measure: no arms")
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique, got {names}")
    if len({len(arm.sessions) for arm in arms}) != 1:
        raise ValueError("every arm needs the same number of sessions, got"
                         f" {[len(arm.sessions) for arm in arms]}")
    run = _Run(list(arms), config, progress, clock, load, sleep)
    return run.execute()


class _Run:
    """State of one :func:`measure_paired` call."""

    def __init__(self, arms, config, progress, clock, load, sleep) -> None:
        self.arms: list[Arm] = arms
        self.config: PairedConfig = config
        self.progress = progress
        self.clock = clock
        self.load = load
        self.sleep = sleep
        self.rng = random.Random(config.seed)
        self.sessions = len(arms[0].sessions)
        self.rounds: list[_Round] = []
        self.segments: list[dict] = []
        self.paused_ns = 0
        self.fallback = False

    # -- phases ----------------------------------------------------------------------------

    def execute(self) -> PairedResult:
        config, clock = self.config, self.clock
        wall_start = clock()
        # Each session's first call apart; the first session's is reported.
        first = [[self._timed(call) for call in arm.sessions][0] for arm in self.arms]
        self.start = clock()
        self.deadline = self.start + int(config.max_seconds * 1e9)
        warmups, steady, warmup_medians = self._warm_up()
        warmup_ns = clock() - self.start
        self.block_calls = [
            _block_calls(median, config.block_seconds, config.max_block_calls)
            for median in warmup_medians
        ]
        orders = balanced_orders(len(self.arms), self.rng)
        stop_reason = None
        while stop_reason is None:
            stop_reason = self._segment(orders)
        used = self._rounds_used()
        blocks = _block_medians(used, len(self.arms))
        arm_results = [
            self._arm_result(index, first[index], warmups[index], steady[index], used,
                             blocks[index])
            for index in range(len(self.arms))
        ]
        comparisons = self._comparisons(used)
        detail = self._stop_detail(stop_reason, used, comparisons, arm_results)
        result = PairedResult(
            arms=arm_results,
            comparisons=comparisons,
            stop_reason=stop_reason,
            stop_detail=detail,
            rounds_run=len(self.rounds),
            rounds_used=len(used),
            sessions=self.sessions,
            orders=[r.order for r in used],
            round_sessions=[r.session for r in used],
            segments=self.segments,
            contention_fallback=self.fallback,
            paused_seconds=self.paused_ns / 1e9,
            warmup_seconds=warmup_ns / 1e9,
            wall_seconds=(clock() - wall_start) / 1e9,
            config=config,
            warnings=[],
        )
        result.warnings.extend(_warnings(result))
        if self.progress is not None:
            self.progress("paired", 1.0)
        return result

    def _warm_up(self) -> tuple[list[int], list[bool], list[float]]:
        """Interleaved calls until every arm is steady; (calls, steady, median ns) per arm."""
        config = self.config
        budget_ns = int(min(config.warmup_max_seconds, config.max_seconds / 3) * 1e9)
        needed = max(config.warmup_min_iterations, 2 * config.warmup_window)
        durations: list[list[int]] = [[] for _ in self.arms]
        steady = [False] * len(self.arms)
        if self.progress is not None:
            self.progress("warm-up", 0.0)
        for turn in itertools.count():
            for index, arm in enumerate(self.arms):
                call = arm.sessions[turn % self.sessions]
                for _ in range(config.lead_in_calls):  # as in a block: after a switch
                    call()
                durations[index].append(self._timed(call))
                if len(durations[index]) >= needed:
                    steady[index] = is_steady(durations[index], config.warmup_window,
                                              config.warmup_tolerance)
            if all(steady) or self.clock() - self.start >= budget_ns:
                break
        if not all(steady):
            logger.info("warm-up did not reach steady state for %s; measuring anyway",
                        ", ".join(a.name for a, s in zip(self.arms, steady, strict=True)
                                  if not s))
        window = config.warmup_window
        medians = [float(np.median(d[-window:])) for d in durations]
        return [len(d) for d in durations], steady, medians

    def _segment(self, orders: Iterator[tuple[int, ...]]) -> str | None:
        """Run one segment of rounds; the stop reason once the rule says stop."""
        config, clock = self.config, self.clock
        before, seg_start = self.load(), clock()
        first_round = len(self.rounds)
        segment_ns = int(config.segment_seconds * 1e9)
        while True:
            self.rounds.append(self._round(next(orders), len(self.rounds)))
            now = clock()
            if len(self.rounds) >= config.max_rounds:
                break
            if now - seg_start >= segment_ns:
                break
            if now >= self.deadline and len(self.rounds) >= MIN_PAIRS:
                break
        after = self.load()
        other, own = other_cores_busy(before, after), own_cores_busy(before, after)
        is_contended = contended(other, own, threshold=config.contention_threshold)
        keep = not is_contended or config.contention == "flag"
        for r in self.rounds[first_round:]:
            r.kept = keep
        self.segments.append({
            "rounds": len(self.rounds) - first_round,
            "seconds": (clock() - seg_start) / 1e9,
            "other_cores_busy": other,
            "own_cores_busy": own,
            "contended": is_contended,
            "kept": keep,
        })
        if is_contended:
            logger.info("segment %d: others kept %.2f cores busy (own %.2f): %s",
                        len(self.segments) - 1, other, own or 0.0,
                        "kept, flagged" if keep else "dropped")
            if config.contention == "pause":
                self._pause_until_quiet(own)
        if self.progress is not None:
            elapsed = (clock() - self.start) / (self.deadline - self.start)
            self.progress("paired", min(1.0, elapsed))
        return self._stop_reason()

    def _stop_reason(self) -> str | None:
        config = self.config
        if len(self.rounds) >= config.max_rounds:
            return STOP_MAX_ROUNDS
        kept = [r for r in self.rounds if r.kept]
        half_budget = self.clock() - self.start >= (self.deadline - self.start) // 2
        dropped = len(kept) < len(self.rounds)
        if dropped and len(kept) < config.min_rounds and half_budget and not self.fallback:
            logger.info("only %d of %d rounds were quiet by half the budget: the machine is"
                        " busy, every round counts from now on", len(kept), len(self.rounds))
            self.fallback = True
        if self.fallback:
            kept = self.rounds
        if len(kept) >= config.min_rounds and self._worst_half_width(kept) <= config.ci_target:
            return STOP_CI_TARGET
        if self.clock() >= self.deadline and len(self.rounds) >= MIN_PAIRS:
            return STOP_TIME_BUDGET
        return None

    def _pause_until_quiet(self, own: float | None) -> None:
        """Wait (within the budget) until others would leave our cores alone, then re-warm."""
        start = self.clock()
        while self.clock() < self.deadline:
            before = self.load()
            self.sleep(_PAUSE_POLL_SECONDS)
            other = other_cores_busy(before, self.load())
            if not contended(other, own, threshold=self.config.contention_threshold):
                break
        self.paused_ns += self.clock() - start
        # One round outside the statistics (caches and threads), in a fixed order so the
        # balanced schedule stays balanced.
        self._round(tuple(range(len(self.arms))), len(self.rounds))

    # -- one round -------------------------------------------------------------------------

    def _round(self, order: tuple[int, ...], number: int) -> _Round:
        """Round ``number``: a block of every arm in ``order``, all on the session of that
        round's group (groups of A rounds take the sessions in turn)."""
        session = (number // len(self.arms)) % self.sessions
        timed: list[list[int]] = [[] for _ in self.arms]
        lead_in: list[list[int]] = [[] for _ in self.arms]
        for index in order:
            call = self.arms[index].sessions[session]
            for _ in range(self.config.lead_in_calls):
                lead_in[index].append(self._timed(call))
            for _ in range(self.block_calls[index]):
                timed[index].append(self._timed(call))
        return _Round(order, session, timed, lead_in)

    def _timed(self, call: Callable[[], object]) -> int:
        start = self.clock()
        call()
        return self.clock() - start

    # -- statistics ------------------------------------------------------------------------

    def _rounds_used(self) -> list[_Round]:
        kept = [r for r in self.rounds if r.kept]
        dropped = len(kept) < len(self.rounds)
        if dropped and not self.fallback and len(kept) < self.config.min_rounds:
            logger.info("only %d of %d rounds were quiet: using every round", len(kept),
                        len(self.rounds))
            self.fallback = True
        return list(self.rounds) if self.fallback else kept

    def _intervals(self, rounds: list[_Round]) -> list[SpeedupInterval]:
        blocks = _block_medians(rounds, len(self.arms))
        groups = [r.session for r in rounds] if self.sessions > 1 else None
        return [
            paired_speedup(blocks[0], blocks[index], confidence=self.config.confidence,
                           seed=self.config.seed, resamples=self.config.resamples,
                           groups=groups)
            for index in range(1, len(self.arms))
        ]

    def _worst_half_width(self, rounds: list[_Round]) -> float:
        if len(self.arms) > 1:
            return max(interval.half_width for interval in self._intervals(rounds))
        return _median_half_width(self._arm_stats(rounds, 0, bootstrap=500))

    def _comparisons(self, rounds: list[_Round]) -> list[Comparison]:
        baseline = self.arms[0].name
        return [
            Comparison(baseline, self.arms[index].name, interval)
            for index, interval in enumerate(self._intervals(rounds), start=1)
        ]

    def _arm_result(self, index: int, first_ns: int, warmups: int, steady: bool,
                    rounds: list[_Round], blocks: np.ndarray) -> ArmResult:
        samples, round_ids = _arm_samples(rounds, index)
        lead_in = [x for r in rounds for x in r.lead_in[index]]
        return ArmResult(
            name=self.arms[index].name,
            block_calls=self.block_calls[index],
            first_call_us=first_ns / 1e3,
            warmup_iterations=warmups,
            steady=steady,
            samples_us=samples,
            samples_round=round_ids,
            block_us=blocks / 1e3,
            lead_in_us=np.asarray(lead_in, dtype=np.float64) / 1e3,
            stats=self._arm_stats(rounds, index),
        )

    def _arm_stats(self, rounds: list[_Round], index: int,
                   bootstrap: int = DEFAULT_BOOTSTRAP) -> LatencyStats:
        samples, round_ids = _arm_samples(rounds, index)
        if self.sessions > 1:
            groups = np.array([rounds[r].session for r in round_ids])
        else:
            groups = round_ids * min(ABSOLUTE_GROUPS, len(rounds)) // len(rounds)
        return summarize(samples, groups=groups, seed=self.config.seed, bootstrap=bootstrap)

    def _stop_detail(self, reason: str, used: list[_Round], comparisons: list[Comparison],
                     arms: list[ArmResult]) -> str:
        config = self.config
        if comparisons:
            worst = max(c.interval.half_width for c in comparisons)
            what = "speedup CI"
        else:
            worst = _median_half_width(arms[0].stats)
            what = "CI of the median"
        seconds = (self.clock() - self.start) / 1e9
        if reason == STOP_CI_TARGET:
            return (f"the {what} is within +-{config.ci_target:.1%} after {len(used)} rounds"
                    f" ({seconds:.1f} s)")
        if reason == STOP_TIME_BUDGET:
            return (f"the {config.max_seconds:g} s budget ran out after {len(used)} rounds with"
                    f" the {what} at +-{worst:.1%} (target +-{config.ci_target:.1%})")
        return (f"{config.max_rounds} rounds reached with the {what} at +-{worst:.1%}"
                f" (target +-{config.ci_target:.1%})")


def _block_calls(median_ns: float, block_seconds: float, max_calls: int) -> int:
    if median_ns <= 0:
        return max_calls
    return int(min(max_calls, max(1, math.ceil(block_seconds * 1e9 / median_ns))))


def _block_medians(rounds: list[_Round], arms: int) -> list[np.ndarray]:
    """Per arm, the median of its timed calls in each round (ns)."""
    return [np.array([float(np.median(r.timed[index])) for r in rounds]) for index in range(arms)]


def _arm_samples(rounds: list[_Round], index: int) -> tuple[np.ndarray, np.ndarray]:
    """An arm's timed calls in ``rounds`` (us) and the round (0-based in ``rounds``) of each."""
    samples = np.concatenate([np.asarray(r.timed[index], dtype=np.float64) for r in rounds])
    round_ids = np.concatenate([np.full(len(r.timed[index]), i, dtype=np.int64)
                                for i, r in enumerate(rounds)])
    return samples / 1e3, round_ids


def _median_half_width(stats: LatencyStats) -> float:
    return max(stats.median_ci_high / stats.p50 - 1.0, 1.0 - stats.median_ci_low / stats.p50)


def _warnings(result: PairedResult) -> list[str]:
    warnings = []
    if result.stop_reason != STOP_CI_TARGET:
        warnings.append(f"stopped before the CI target: {result.stop_detail}")
    if result.contended_segments:
        segments = len(result.segments)
        action = {"flag": "kept", "extend": "dropped", "pause": "dropped (paused)"}[
            result.config.contention]
        warnings.append(f"other processes used our cores in {result.contended_segments} of"
                        f" {segments} segments ({action})")
    if result.contention_fallback:
        warnings.append("too few quiet rounds: contended rounds were used too")
    if not result.steady:
        warnings.append("warm-up did not reach a steady state before measuring")
    return warnings
