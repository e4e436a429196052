"""The runtime half of a benchmark: timed runner sessions of one model file on one backend.

:func:`measure_sessions` takes a model file, its inputs and a backend spec (the harness,
:func:`graphopt.harness.benchmark.benchmark`, loads the model, makes the inputs and the fp32
reference, judges fidelity and assembles the result). Steps:

1. For each of ``sessions`` fresh runner sessions (default :data:`DEFAULT_SESSIONS`): build and
   activate the runner (``compile_seconds`` is session creation / compilation alone), then time
   synchronous inference with :func:`graphopt.backends.timing.measure` on that session's share
   of the budget (:meth:`~graphopt.backends.timing.TimingConfig.split`): the first call apart,
   warm-up to steady state, then every call timed. The session is a random effect (memory
   layout, thread placement, stream set-up shift all its latencies), so the sessions' samples
   are pooled with their session ids and the CI of the median is the two-level bootstrap over
   sessions (:func:`graphopt.backends.timing.combine_sessions`).
2. The last session only (their cost is not multiplied): a measured energy meter (RAPL, NVML)
   brackets its timed phase when one is readable, counting every inference in it; then
   concurrent throughput with :func:`~graphopt.backends.timing.measure_concurrent` through the
   runner's ``submit``/``wait_all`` (OpenVINO async requests, a thread pool for ORT), when the
   runner supports it, and one more call whose outputs the caller compares to its reference.
3. :func:`energy_per_inference`: the measured reading, or when none is usable the time x power
   estimate (:class:`~graphopt.backends.energy.TimePowerEstimator`: this process's CPU time
   over every session's timed phase x the modelled power per busy CPU), with the reasons no
   meter was used. Beside it, never as the headline, the analytical lower bound
   :class:`~graphopt.backends.energy.ModelEnergyEstimator` on the model's cost: each node at
   its own precision, lowered where the runtime ran a lower float precision than the graph's.

Every run also records how many cores other processes kept busy during the timed phases
(``background_cores_busy``, from :mod:`graphopt.backends.cpuload`, averaged over the sessions'
timed phases) and warns above :data:`BACKGROUND_LOAD_WARNING`, and the DVFS state of the CPUs in
use read during the last timed phase, with a warning when the frequency governor is not
``performance``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping

import numpy as np

from graphopt.backends.base import Runner
from graphopt.backends.cpufreq import cpus_in_use, dvfs_state, governor_warning
from graphopt.backends.cpuload import (
    BACKGROUND_LOAD_WARNING,
    cpu_clocks,
    mean_other_cores_busy,
    other_cores_busy,
)
from graphopt.backends.energy import (
    ModelEnergyEstimator,
    TimePowerEstimator,
    cpu_power,
    probe_meters,
)
from graphopt.backends.energy.model import RUNTIME_PRECISIONS
from graphopt.backends.registry import BACKENDS, BackendSpec, start_runner
from graphopt.backends.stats import CV_WARNING, is_noisy
from graphopt.backends.timing import (
    TimingConfig,
    TimingResult,
    combine_sessions,
    measure,
    measure_concurrent,
)
from graphopt.errors import GraphoptError

__all__ = [
    "DEFAULT_TIMING",
    "DEFAULT_SESSIONS",
    "ENERGY_PREFERENCES",
    "SessionsRun",
    "measure_sessions",
    "energy_per_inference",
    "busy_seconds",
    # re-exported from graphopt.backends.cpuload, where they are defined
    "cpu_clocks",
    "other_cores_busy",
    "BACKGROUND_LOAD_WARNING",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMING = TimingConfig()
DEFAULT_SESSIONS = 3
"""Fresh runner sessions a benchmark's timed budget is split over (see the module docstring)."""
ENERGY_PREFERENCES = ("auto", "rapl", "nvml", "jetson", "estimate", "model", "none")

Progress = Callable[[str, float], None]
"""``progress(phase, fraction)``; phases: ``compile``, ``measure``, ``concurrent``, ``fidelity``."""
Busy = tuple[float, float, int]
"""(this process's CPU seconds, wall seconds, inferences) over the timed phases."""


@dataclasses.dataclass
class SessionsRun:
    """What :func:`measure_sessions` measured; ``outputs`` are the last session's on the feed."""

    timing: TimingResult
    compile_seconds: list[float]
    precision: str
    settings: dict
    outputs: dict[str, np.ndarray]
    throughput_concurrent: float | None
    concurrent_method: str
    measured_energy: object  # EnergyReading of the meter, or None
    meter_reasons: list[str]
    busy: Busy | None
    cpus: int
    background_cores_busy: float | None
    dvfs: dict
    warnings: list[str]


def _measure_concurrent(runner: Runner, feed, seconds: float, batch_size: int,
                        progress: Progress | None) -> tuple[float | None, str]:
    if seconds <= 0:
        return None, "not measured (disabled)"
    if not runner.supports_async:
        return None, f"not supported by {runner.name}"
    if progress is not None:
        progress("concurrent", 0.0)
    requests = runner.settings.get("async_requests")
    workers = int(requests or runner.async_workers)
    value = measure_concurrent(
        lambda: runner.submit(feed), runner.wait_all, seconds=seconds, batch_size=batch_size,
        warmup_requests=2 * workers,
    )
    if progress is not None:
        progress("concurrent", 1.0)
    how = (f"async queue of {workers} infer requests" if requests is not None
           else f"thread pool of {workers} worker{'s' if workers > 1 else ''}")
    return value, f"{how}, {seconds:g} s, completed requests only"


def energy_per_inference(preference: str, device: str, cost, precision: str, batch_size: int,
                         measured, busy: Busy | None, cpus: int,
                         cpu_model: str | None) -> tuple[object, object, list[str]]:
    """(headline reading, compute-bound reading, reasons no meter was used).

    ``cost`` is the model's :class:`graphopt.cost.ModelCost`, ``measured`` the pair (meter
    reading or ``None``, reasons) of :class:`SessionsRun`. ``precision`` is the runner's:
    the graph's own name (or one not known, ``unknown``) prices each node at its own
    precision, another one is the runtime's lowering (``bf16`` on an fp32 graph)."""
    reading, reasons = measured
    if preference == "none":
        return None, None, ["energy not requested (--energy none)"]
    lowered = precision in RUNTIME_PRECISIONS and precision != cost.precision
    bound = ModelEnergyEstimator().estimate(cost, precision=precision if lowered else None,
                                            batch_size=batch_size)
    if reading is not None and reading.joules_per_inference is not None:
        return reading, bound, reasons
    if reading is not None:
        reasons = [*reasons, f"{reading.source}: {reading.note}"]
    if busy is None:
        return None, bound, [*reasons, "no CPU time reading (/proc/stat): no time x power"
                                       " estimate"]
    if device != "cpu":
        reasons = [*reasons, f"the estimate covers the host CPU only, not the {device}"]
    busy_cpu, wall_seconds, inferences = busy
    estimator = TimePowerEstimator(power=cpu_power(cpu_model))
    return estimator.estimate(busy_seconds=busy_cpu, wall_seconds=wall_seconds,
                              inferences=inferences, cpus_in_use=cpus), bound, reasons


def busy_seconds(periods: list[tuple], inferences: int) -> Busy | None:
    """(this process's CPU seconds, wall seconds, inferences) over the timed phases."""
    pairs = [(b, a) for b, a in periods if b is not None and a is not None]
    if not pairs or inferences < 1:
        return None
    wall = sum(a[0] - b[0] for b, a in pairs)
    busy = sum(a[2] - b[2] for b, a in pairs)
    return (max(0.0, busy), wall, inferences) if wall > 0 else None


def _pick_meter(preference: str, device: str):
    if preference in ("estimate", "model", "none"):
        return None, [f"measurement not requested (--energy {preference})"]
    meter, reasons = probe_meters(preference, device=device)
    if meter is None and preference != "auto":
        raise GraphoptError(f"energy meter {preference} is not usable here: {'; '.join(reasons)}")
    return meter, reasons


def measure_sessions(
    spec: BackendSpec,
    path: str | os.PathLike,
    feed: Mapping[str, np.ndarray],
    *,
    label: str,
    config: TimingConfig = DEFAULT_TIMING,
    sessions: int = DEFAULT_SESSIONS,
    batch_size: int = 1,
    threads: int | None = None,
    pin: bool | None = None,
    energy: str = "auto",
    concurrent_seconds: float | None = None,
    energy_baseline_seconds: float = 1.0,
    progress: Progress | None = None,
) -> SessionsRun:
    """Measure the model file ``path`` on ``spec`` with inputs ``feed`` (steps in the module
    docstring).

    ``config`` is the whole timed budget, split evenly over ``sessions`` fresh runner sessions.
    ``threads`` and ``pin`` apply to backends with those settings unless the spec sets its own.
    ``energy`` is ``auto`` (a measured meter if readable), ``rapl``/``nvml``/``jetson`` (that
    meter or an error), ``estimate``/``model`` or ``none`` (no meter). ``concurrent_seconds``
    defaults to ``config.min_seconds``; 0 skips the concurrent phase. A measured meter first
    records ``energy_baseline_seconds`` of idle power, subtracted from the reading.
    """
    if sessions < 1:
        raise GraphoptError(f"sessions must be >= 1, got {sessions}")
    if energy not in ENERGY_PREFERENCES:
        raise GraphoptError(f"energy {energy!r}: expected one of {', '.join(ENERGY_PREFERENCES)}")
    device = BACKENDS[spec.name].device
    meter, meter_reasons = _pick_meter(energy, device)
    session_config = config.split(sessions)
    runs: list[TimingResult] = []
    compile_times: list[float] = []
    load_periods: list[tuple] = []
    measured = None
    inferences = 0
    dvfs: dict = {}
    try:
        for index in range(sessions):
            last = index == sessions - 1

            def report(phase: str, fraction: float, index=index) -> None:
                if progress is not None:
                    progress(phase, (index + fraction) / sessions)

            report("compile", 0.0)
            runner = start_runner(spec, path, label=label, threads=threads, pin=pin,
                                  batch_size=batch_size)
            report("compile", 1.0)
            try:
                calls = [0]

                def call(runner=runner, calls=calls) -> None:
                    runner.infer(feed)
                    calls[0] += 1

                metered = meter if last else None
                if metered is not None and energy_baseline_seconds > 0:
                    metered.idle_baseline(energy_baseline_seconds)
                if metered is not None:
                    metered.start()
                before = cpu_clocks()
                runs.append(measure(call, session_config,
                                    progress=None if progress is None
                                    else lambda f, report=report: report("measure", f)))
                load_periods.append((before, cpu_clocks()))
                inferences += calls[0] * batch_size
                if last:
                    dvfs = dvfs_state()
                if metered is not None:
                    measured = metered.stop(calls[0] * batch_size)
                compile_times.append(runner.compile_seconds)
                if last:
                    seconds = (config.min_seconds if concurrent_seconds is None
                               else concurrent_seconds)
                    concurrent, concurrent_method = _measure_concurrent(
                        runner, feed, seconds, batch_size, report)
                    report("fidelity", 0.0)
                    outputs = runner.infer(feed)
                    precision, settings = runner.precision, dict(runner.settings)
            finally:
                runner.deactivate()
    finally:
        if meter is not None:
            meter.close()
    timing = combine_sessions(runs, config)
    background = mean_other_cores_busy(load_periods)
    in_use = len(cpus_in_use())
    return SessionsRun(
        timing=timing,
        compile_seconds=compile_times,
        precision=precision,
        settings=settings,
        outputs=outputs,
        throughput_concurrent=concurrent,
        concurrent_method=concurrent_method,
        measured_energy=measured,
        meter_reasons=meter_reasons,
        busy=busy_seconds(load_periods, inferences),
        cpus=min(threads or in_use, in_use),
        background_cores_busy=background,
        dvfs=dvfs,
        warnings=_warnings(spec, precision, timing, background, dvfs),
    )


def _warnings(spec: BackendSpec, precision: str, timing: TimingResult,
              background: float | None, dvfs: dict) -> list[str]:
    warnings = []
    if background is not None and background > BACKGROUND_LOAD_WARNING:
        warnings.append(
            f"other processes kept {background:.2f} cores busy while measuring: latencies are"
            " inflated and will not repeat"
        )
    if is_noisy(timing.stats):
        warnings.append(
            f"noisy: latency CV {timing.stats.cv:.1%} > {CV_WARNING:.0%}; close other programs,"
            " pin threads or measure longer"
        )
    if not timing.steady:
        warnings.append("warm-up did not reach a steady state before measuring")
    if spec.precision is not None and precision != spec.precision:
        warnings.append(f"asked for {spec.precision}, the runtime ran {precision}")
    if math.isnan(timing.stats.p50):
        warnings.append("no latency samples")
    if governor_warning(dvfs):
        warnings.append(governor_warning(dvfs))
    return warnings
