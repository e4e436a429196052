"""Energy readings and the meter template shared by RAPL, NVML and the Jetson rails.

A meter brackets a run: ``start()`` before the first inference, ``stop(inferences)`` after the
last. The reading is energy per inference in joules, per domain and in total, with an
uncertainty and a note saying how it was obtained. When :meth:`EnergyMeter.idle_baseline` has
been measured, the idle power times the window is subtracted, so readings are the energy the
inferences added above an idle machine; the note says whether that happened.

A window too short for the counter (see each meter's ``min_window_seconds``) gives
``joules_per_inference=None`` and a note, never a misleading 0.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np

__all__ = [
    "EnergyReading",
    "EnergyMeter",
    "IdleBaseline",
    "MEASURED_SOURCES",
    "Source",
    "measure_energy",
]

logger = logging.getLogger(__name__)

Source = Literal["rapl", "nvml", "jetson", "estimate:time-x-power", "model:compute-bound"]
"""Measured (``rapl``, ``nvml``, ``jetson``), estimated from measured busy time and a modelled
power (``estimate:time-x-power``), or the analytical lower bound (``model:compute-bound``)."""

MEASURED_SOURCES = ("rapl", "nvml", "jetson")

DEFAULT_BASELINE_REPEATS = 5


@dataclasses.dataclass(frozen=True)
class EnergyReading:
    """Energy per inference and how it was obtained.

    ``domains`` maps a domain (``package-0``, ``dram-0``, ``gpu-0``; for the model estimate
    ``compute``, ``weights``, ``activations``) to joules per inference. ``uncertainty_joules`` is
    a bound on the error of ``joules_per_inference`` (``None`` when it cannot be stated).
    ``power_watts`` and ``power_origin``: the modelled power an estimate used and where it came
    from. ``breakdown``: joules per inference of parts already inside ``domains`` (Jetson
    sub-rails under ``VDD_IN``), never added to the total.
    """

    joules_per_inference: float | None
    uncertainty_joules: float | None
    source: Source
    domains: dict[str, float]
    window_seconds: float | None
    inferences: int
    note: str = ""
    power_watts: float | None = None
    power_origin: str | None = None
    breakdown: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class IdleBaseline:
    """Idle power per domain: mean and sample standard deviation over repeated windows."""

    watts: dict[str, float]
    watts_std: dict[str, float]
    seconds: float
    repeats: int

    @property
    def total_watts(self) -> float:
        return sum(self.watts.values())

    @property
    def total_watts_std(self) -> float:
        return sum(self.watts_std.values())


class EnergyMeter(abc.ABC):
    """Template for counter-based meters.

    Subclasses implement :meth:`available`, :meth:`_begin` (read counters at the start of a
    window), :meth:`_end` (joules per domain since ``_begin``) and :meth:`_read_uncertainty`.
    ``clock`` (seconds) and ``sleep`` are injectable for tests.
    """

    source: Source
    min_window_seconds: float = 0.1

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._started_at: float | None = None
        self.baseline: IdleBaseline | None = None

    @abc.abstractmethod
    def available(self) -> tuple[bool, str]:
        """(True, description) when the meter can measure here, else (False, reason)."""

    @abc.abstractmethod
    def _begin(self) -> None:
        """Record the counters at the start of a window."""

    @abc.abstractmethod
    def _end(self) -> dict[str, float]:
        """Joules per domain consumed since :meth:`_begin`."""

    @abc.abstractmethod
    def _read_uncertainty(self, domains_j: Mapping[str, float], window: float) -> float:
        """Bound, in joules, of the counter error over a window with these readings."""

    def _method(self) -> str:
        """How the meter measures, prefixed to every reading's note."""
        return self.source

    def _breakdown_joules(self) -> dict[str, float]:
        """Joules of parts inside the counted domains in the last window (none by default)."""
        return {}

    def _too_short(self, domains_j: Mapping[str, float], window: float) -> str | None:
        """Reason the window is too short to trust, or None."""
        if window < self.min_window_seconds:
            return (
                f"window {window * 1e3:.1f} ms is shorter than the {self.source} minimum of "
                f"{self.min_window_seconds * 1e3:.0f} ms; run more inferences"
            )
        return None

    def start(self) -> None:
        """Begin a measurement window."""
        self._begin()
        self._started_at = self._clock()

    def stop(self, inferences: int) -> EnergyReading:
        """End the window opened by :meth:`start` and attribute it to ``inferences``."""
        if self._started_at is None:
            raise RuntimeError("stop() called without start()")
        if inferences < 1:
            raise ValueError(f"inferences must be >= 1, got {inferences}")
        window = self._clock() - self._started_at
        self._started_at = None
        domains_j = self._end()
        return self._reading(domains_j, window, inferences)

    def idle_baseline(
        self, seconds: float = 2.0, *, repeats: int = DEFAULT_BASELINE_REPEATS
    ) -> IdleBaseline:
        """Measure idle power over ``repeats`` windows totalling ``seconds``; keep and return it.

        Later readings subtract this power times their window. Run it on a quiet machine, right
        before the measured run. Every window must last the meter's ``min_window_seconds``:
        when ``seconds`` is too short for ``repeats`` of them, fewer windows are used, and
        ``seconds`` is raised to two minimal windows (the least that gives a spread).
        """
        if repeats < 2:
            raise ValueError(f"repeats must be >= 2 to estimate a spread, got {repeats}")
        seconds, repeats = self._baseline_plan(seconds, repeats)
        each = seconds / repeats
        powers: dict[str, list[float]] = {}
        for _ in range(repeats):
            self._begin()
            t0 = self._clock()
            self._sleep(each)
            window = self._clock() - t0
            for domain, joules in self._end().items():
                powers.setdefault(domain, []).append(joules / window)
        self.baseline = IdleBaseline(
            watts={d: float(np.mean(p)) for d, p in powers.items()},
            watts_std={d: float(np.std(p, ddof=1)) for d, p in powers.items()},
            seconds=seconds,
            repeats=repeats,
        )
        logger.info("%s idle baseline: %.2f W +- %.2f W", self.source,
                    self.baseline.total_watts, self.baseline.total_watts_std)
        return self.baseline

    def _baseline_plan(self, seconds: float, repeats: int) -> tuple[float, int]:
        minimum = self.min_window_seconds
        if seconds < 2 * minimum:
            logger.info("%s idle baseline lengthened from %.3f s to %.3f s (two %.3f s windows)",
                        self.source, seconds, 2 * minimum, minimum)
            seconds = 2 * minimum
        fitting = int(seconds / minimum + 1e-9) if minimum > 0 else repeats
        return seconds, max(2, min(repeats, fitting))

    def close(self) -> None:  # noqa: B027 - optional hook, most meters hold nothing
        """Release the meter's resources (nothing by default)."""

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reading(
        self, domains_j: dict[str, float], window: float, inferences: int
    ) -> EnergyReading:
        short = self._too_short(domains_j, window)
        if short is not None:
            logger.warning("%s energy not reported: %s", self.source, short)
            note = f"{self._method()}; not reported: {short}"
            return EnergyReading(None, None, self.source, {}, window, inferences, note)
        net, note = self._subtract_baseline(domains_j, window)
        uncertainty = self._read_uncertainty(domains_j, window)
        if self.baseline is not None:
            uncertainty += self.baseline.total_watts_std * window
        total = sum(net.values())
        return EnergyReading(
            joules_per_inference=total / inferences,
            uncertainty_joules=uncertainty / inferences,
            source=self.source,
            domains={d: j / inferences for d, j in net.items()},
            window_seconds=window,
            inferences=inferences,
            note=f"{self._method()}; {note}",
            breakdown={d: j / inferences for d, j in self._breakdown_joules().items()},
        )

    def _subtract_baseline(
        self, domains_j: dict[str, float], window: float
    ) -> tuple[dict[str, float], str]:
        if self.baseline is None:
            return dict(domains_j), "gross energy: no idle baseline subtracted"
        net = {d: j - self.baseline.watts.get(d, 0.0) * window for d, j in domains_j.items()}
        note = (
            f"net of idle baseline {self.baseline.total_watts:.2f} W "
            f"(+- {self.baseline.total_watts_std:.2f} W over {self.baseline.repeats} windows)"
        )
        if sum(net.values()) <= 0:
            note += "; run energy did not exceed idle energy, result is within the idle noise"
        return net, note


def measure_energy(
    meter: EnergyMeter,
    call: Callable[[], object],
    *,
    seconds: float = 2.0,
    batch_size: int = 1,
    sync: Callable[[], None] | None = None,
) -> EnergyReading:
    """Run ``call`` back to back for ``seconds`` inside one meter window.

    Each call is one batch of ``batch_size`` inferences (``sync`` after each, for device work).
    Warm the call up first (e.g. with :func:`graphopt.backends.timing.measure`): this loop
    measures steady-state energy, not first-call costs.
    """
    if seconds < meter.min_window_seconds:
        raise ValueError(
            f"seconds={seconds} is shorter than the {meter.source} minimum window of "
            f"{meter.min_window_seconds} s"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    calls = 0
    meter.start()
    deadline = meter._clock() + seconds
    while True:
        call()
        if sync is not None:
            sync()
        calls += 1
        if meter._clock() >= deadline:
            break
    return meter.stop(calls * batch_size)
