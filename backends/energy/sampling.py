"""Power sampled in a background thread and integrated by the trapezoid rule.

Shared by the meters that read instantaneous power rather than an energy counter (NVML's
fallback, the Jetson INA3221 rails, jetson-stats). :class:`RailSampler` samples several named
rails at once (``read`` returns watts per rail); :class:`PowerSampler` is its one-rail form.
The synchronous samples bracket the window as tightly as possible: the first is taken just
before the meter's window opens, the last right after it closes; background samples taken
after the last one (a late thread) are dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

__all__ = ["PowerSampler", "RailSampler", "trapezoid"]


class RailSampler:
    """Samples watts per rail in a daemon thread; :meth:`stop` integrates each rail in J."""

    def __init__(
        self, read: Callable[[], Mapping[str, float]], clock: Callable[[], float],
        interval: float, *, name: str = "energy",
    ) -> None:
        self._read = read
        self._clock = clock
        self._interval = interval
        self._times: list[float] = []
        self._watts: list[Mapping[str, float]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-power", daemon=True)
        self._lock = threading.Lock()
        self._window_start = 0.0
        self.samples = 0

    def start(self) -> None:
        self._thread.start()
        self._sample()
        self._window_start = self._clock()

    def stop(self) -> dict[str, float]:
        """Energy per rail over the window from the end of :meth:`start` to the start of this
        call: the samples' mean power (trapezoid over their span) times that window, so that
        the first and last samples, taken just outside it, do not add their delays."""
        window = self._clock() - self._window_start
        end = self._sample()
        self._done.set()
        self._thread.join()
        with self._lock:
            points = sorted((p for p in zip(self._times, self._watts, strict=True)
                             if p[0] <= end), key=lambda p: p[0])
        self.samples = len(points)
        times = [t for t, _ in points]
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        rails = sorted({rail for _, watts in points for rail in watts})
        scale = window / span if span > 0 else 1.0
        return {rail: scale * trapezoid(times, [w.get(rail, 0.0) for _, w in points])
                for rail in rails}

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            self._sample()

    def _sample(self) -> float:
        watts = dict(self._read())
        now = self._clock()
        with self._lock:
            self._times.append(now)
            self._watts.append(watts)
        return now


class PowerSampler(RailSampler):
    """One rail: :meth:`stop` returns the trapezoid integral in J."""

    def __init__(
        self, read_watts: Callable[[], float], clock: Callable[[], float], interval: float,
        *, name: str = "energy",
    ) -> None:
        super().__init__(lambda: {"power": read_watts()}, clock, interval, name=name)

    def stop(self) -> float:  # type: ignore[override]
        return super().stop().get("power", 0.0)


def trapezoid(times: list[float], watts: list[float]) -> float:
    total = 0.0
    for i in range(1, len(times)):
        total += (watts[i] + watts[i - 1]) / 2.0 * (times[i] - times[i - 1])
    return total
