"""One timing method for every backend.

:func:`measure` times a synchronous inference call in three phases:

1. **First call**, timed on its own: first-inference latency (lazy initialisation, kernel
   selection, allocation) is reported separately and never mixed into steady-state statistics.
2. **Warm-up until steady state**, untimed for the statistics: calls continue until the median
   of the last ``warmup_window`` calls is within ``warmup_tolerance`` (relative) of the median of
   the window before, after at least ``warmup_min_iterations`` calls. If that has not happened
   within ``warmup_max_seconds`` the warm-up stops and the result says ``steady=False``.
3. **Measurement**: at least ``min_iterations`` calls *and* at least ``min_seconds`` of wall
   time (whichever comes last), at most ``max_iterations`` calls. Each call is timed alone with
   ``time.perf_counter_ns``; when ``sync`` is given it is called inside the timed region right
   after the call, so asynchronous device work is finished before the clock stops. Every raw
   sample is kept, in microseconds, and summarised by :func:`graphopt.backends.stats.summarize`.

Sessions: a runner session (memory layout, thread placement, a runtime's stream set-up) shifts
every latency it produces, so samples of one session understate run-to-run variation. A
benchmark over several sessions splits its budget with :meth:`TimingConfig.split`, runs
:func:`measure` once per session (each with its own first call and warm-up) and pools the
results with :func:`combine_sessions`, whose statistics use the two-level bootstrap of
:func:`graphopt.backends.stats.summarize` with the session as the group.

:func:`measure_concurrent` measures the throughput of an asynchronous, many-requests-in-flight
mode, where per-call latency is not meaningful.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from .stats import LatencyStats, summarize

__all__ = [
    "TimingConfig",
    "TimingResult",
    "combine_sessions",
    "is_steady",
    "measure",
    "measure_concurrent",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], int]
"""A monotonic clock in nanoseconds, ``time.perf_counter_ns`` unless a test injects one."""

_PROGRESS_INTERVAL_NS = 100_000_000


@dataclasses.dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and to measure; see the module docstring for the method."""

    min_iterations: int = 50
    min_seconds: float = 2.0
    max_iterations: int = 100_000
    warmup_min_iterations: int = 5
    warmup_max_seconds: float = 10.0
    warmup_window: int = 10
    warmup_tolerance: float = 0.05

    def __post_init__(self) -> None:
        if self.min_iterations < 1:
            raise ValueError(f"min_iterations must be >= 1, got {self.min_iterations}")
        if self.max_iterations < self.min_iterations:
            raise ValueError(
                f"max_iterations ({self.max_iterations}) < min_iterations ({self.min_iterations})"
            )
        if self.min_seconds < 0 or self.warmup_max_seconds < 0:
            raise ValueError("min_seconds and warmup_max_seconds must be >= 0")
        if self.warmup_min_iterations < 0:
            raise ValueError("warmup_min_iterations must be >= 0")
        if self.warmup_window < 1:
            raise ValueError(f"warmup_window must be >= 1, got {self.warmup_window}")
        if self.warmup_tolerance <= 0:
            raise ValueError(f"warmup_tolerance must be > 0, got {self.warmup_tolerance}")

    def split(self, sessions: int) -> TimingConfig:
        """The share of one of ``sessions`` sessions of the timed budget: ``min_seconds``
        divided evenly, ``min_iterations`` and ``max_iterations`` rounded up (the sessions
        together time at least as much as this config). The warm-up settings are per session
        and stay as they are."""
        if sessions < 1:
            raise ValueError(f"sessions must be >= 1, got {sessions}")
        if sessions == 1:
            return self
        return dataclasses.replace(
            self,
            min_seconds=self.min_seconds / sessions,
            min_iterations=math.ceil(self.min_iterations / sessions),
            max_iterations=math.ceil(self.max_iterations / sessions),
        )


@dataclasses.dataclass
class TimingResult:
    """Raw samples and summary of one :func:`measure` run, or of several sessions' runs
    pooled by :func:`combine_sessions`.

    ``samples_session`` gives each sample's session (``None`` for a single run) and
    ``sessions`` the per-session runs; ``first_call_us`` is the first session's, the warm-up
    figures and ``wall_seconds`` add up over the sessions and ``steady`` holds for all of them.
    """

    samples_us: np.ndarray
    warmup_iterations: int
    warmup_seconds: float
    first_call_us: float
    steady: bool
    stats: LatencyStats
    wall_seconds: float
    config: TimingConfig = dataclasses.field(default_factory=TimingConfig)
    samples_session: np.ndarray | None = None
    sessions: list[TimingResult] = dataclasses.field(default_factory=list)

    def to_dict(self, include_samples: bool = True) -> dict:
        """JSON-ready dict; ``include_samples=False`` drops the raw samples."""
        data = {
            "method": "perf_counter_ns per synchronous call after steady-state warm-up",
            "first_call_us": self.first_call_us,
            "warmup_iterations": self.warmup_iterations,
            "warmup_seconds": self.warmup_seconds,
            "steady": self.steady,
            "wall_seconds": self.wall_seconds,
            "config": dataclasses.asdict(self.config),
            "stats": self.stats.to_dict(),
        }
        if self.sessions:
            data["sessions"] = [
                {
                    "session": index,
                    "n": run.stats.n,
                    "p50_us": run.stats.p50,
                    "first_call_us": run.first_call_us,
                    "warmup_iterations": run.warmup_iterations,
                    "steady": run.steady,
                    "config": dataclasses.asdict(run.config),
                }
                for index, run in enumerate(self.sessions)
            ]
        if include_samples:
            data["samples_us"] = [float(s) for s in self.samples_us]
            if self.samples_session is not None:
                data["samples_session"] = [int(g) for g in self.samples_session]
        return data


def measure(
    call: Callable[[], object],
    config: TimingConfig = TimingConfig(),
    *,
    sync: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
    clock: Clock = time.perf_counter_ns,
) -> TimingResult:
    """Time ``call`` with the method in the module docstring.

    ``progress`` receives the measurement phase's completion in [0, 1] about ten times a
    second and 1.0 at the end. ``clock`` exists for tests; leave it alone.
    """
    wall_start = clock()
    first_ns = _timed(call, sync, clock)[1]
    warmup_iterations, warmup_ns, steady = _warm_up(call, sync, clock, config)
    if not steady:
        logger.warning(
            "warm-up did not reach steady state after %d calls (%.1f s); measuring anyway",
            warmup_iterations, warmup_ns / 1e9,
        )
    samples_ns = _measure_phase(call, sync, clock, config, progress)
    samples_us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return TimingResult(
        samples_us=samples_us,
        warmup_iterations=warmup_iterations,
        warmup_seconds=warmup_ns / 1e9,
        first_call_us=first_ns / 1e3,
        steady=steady,
        stats=summarize(samples_us),
        wall_seconds=(clock() - wall_start) / 1e9,
        config=config,
    )


def combine_sessions(runs: Sequence[TimingResult], config: TimingConfig) -> TimingResult:
    """Pool the :func:`measure` runs of several sessions (in order) into one result.

    Every sample is kept, with its session index in ``samples_session``; the statistics are
    over all samples, the CI of the median is the two-level bootstrap over sessions (see
    :mod:`graphopt.backends.stats`). ``config`` is the whole benchmark's budget. A single run
    keeps its statistics (one group is the flat bootstrap).
    """
    if not runs:
        raise ValueError("no session runs to combine")
    if len(runs) == 1:
        (run,) = runs
        return dataclasses.replace(
            run, config=config, samples_session=np.zeros(run.samples_us.size, dtype=np.int64),
            sessions=[run],
        )
    samples = np.concatenate([run.samples_us for run in runs])
    session = np.concatenate(
        [np.full(run.samples_us.size, index, dtype=np.int64) for index, run in enumerate(runs)]
    )
    return TimingResult(
        samples_us=samples,
        warmup_iterations=sum(run.warmup_iterations for run in runs),
        warmup_seconds=sum(run.warmup_seconds for run in runs),
        first_call_us=runs[0].first_call_us,
        steady=all(run.steady for run in runs),
        stats=summarize(samples, groups=session),
        wall_seconds=sum(run.wall_seconds for run in runs),
        config=config,
        samples_session=session,
        sessions=list(runs),
    )


def measure_concurrent(
    submit: Callable[[], object],
    wait_all: Callable[[], None],
    *,
    seconds: float,
    batch_size: int = 1,
    warmup_requests: int = 0,
    clock: Clock = time.perf_counter_ns,
) -> float:
    """Throughput in inferences per second of an asynchronous mode.

    Method: optionally submit ``warmup_requests`` requests and drain them untimed. Then start
    the clock, call ``submit`` (enqueue one request of ``batch_size`` inferences) repeatedly
    until ``seconds`` have passed, call ``wait_all`` to drain every request in flight, and stop
    the clock. Throughput = requests x ``batch_size`` / (submit start to drain end), so no
    request is counted that has not finished. ``submit`` must apply back-pressure (block while
    the runtime's in-flight limit is reached, as OpenVINO's ``AsyncInferQueue.start_async``
    does), otherwise the loop only measures how fast requests can be queued.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for _ in range(warmup_requests):
        submit()
    if warmup_requests:
        wait_all()
    budget_ns = int(seconds * 1e9)
    start = clock()
    requests = 0
    while True:
        submit()
        requests += 1
        if clock() - start >= budget_ns:
            break
    wait_all()
    elapsed_ns = clock() - start
    return requests * batch_size * 1e9 / max(elapsed_ns, 1)


def _timed(
    call: Callable[[], object], sync: Callable[[], None] | None, clock: Clock
) -> tuple[int, int]:
    """Run one call (and ``sync``); return (end timestamp, duration), both in ns."""
    start = clock()
    call()
    if sync is not None:
        sync()
    end = clock()
    return end, end - start


def _warm_up(
    call: Callable[[], object], sync: Callable[[], None] | None, clock: Clock, config: TimingConfig
) -> tuple[int, int, bool]:
    """Call until steady; return (iterations, elapsed ns, steady)."""
    durations: list[int] = []
    window = config.warmup_window
    needed = max(config.warmup_min_iterations, 2 * window)
    budget_ns = int(config.warmup_max_seconds * 1e9)
    start = clock()
    while True:
        end, duration = _timed(call, sync, clock)
        durations.append(duration)
        if len(durations) >= needed and is_steady(durations, window, config.warmup_tolerance):
            return len(durations), end - start, True
        if end - start >= budget_ns:
            return len(durations), end - start, False


def is_steady(durations: Sequence[float], window: int, tolerance: float) -> bool:
    """The warm-up rule: the median of the last ``window`` durations is within ``tolerance``
    (relative) of the median of the ``window`` before (needs ``2 * window`` durations)."""
    if len(durations) < 2 * window:
        return False
    last = float(np.median(durations[-window:]))
    before = float(np.median(durations[-2 * window : -window]))
    return abs(last - before) <= tolerance * max(before, 1.0)


def _measure_phase(
    call: Callable[[], object],
    sync: Callable[[], None] | None,
    clock: Clock,
    config: TimingConfig,
    progress: Callable[[float], None] | None,
) -> list[int]:
    samples: list[int] = []
    min_ns = int(config.min_seconds * 1e9)
    start = last_report = clock()
    while True:
        end, duration = _timed(call, sync, clock)
        samples.append(duration)
        count, elapsed = len(samples), end - start
        if count >= config.max_iterations:
            break
        if count >= config.min_iterations and elapsed >= min_ns:
            break
        if progress is not None and end - last_report >= _PROGRESS_INTERVAL_NS:
            last_report = end
            progress(_completion(count, elapsed, config, min_ns))
    if progress is not None:
        progress(1.0)
    return samples


def _completion(count: int, elapsed_ns: int, config: TimingConfig, min_ns: int) -> float:
    by_count = count / config.min_iterations
    by_time = elapsed_ns / min_ns if min_ns > 0 else 1.0
    return min(1.0, by_count, by_time)
