"""Benchmark one model on one backend: speed, energy and fidelity, each labelled with its method.

Steps of :func:`benchmark`:

1. Load the model (path or ``zoo:NAME``), make deterministic inputs
   (``random_inputs(model, seed=seed, batch_size=batch_size)``) and the fp32 reference outputs
   from the oracle (onnxruntime, graph optimizations off).
2. For each of ``sessions`` fresh runner sessions (default :data:`DEFAULT_SESSIONS`): build and
   activate the runner (``compile_seconds`` is session creation / compilation alone), then time
   synchronous inference with :func:`graphopt.backends.timing.measure` on that session's share
   of the budget (:meth:`~graphopt.backends.timing.TimingConfig.split`): the first call apart,
   warm-up to steady state, then every call timed. The session is a random effect (memory
   layout, thread placement, stream set-up shift all its latencies), so the sessions' samples
   are pooled with their session ids and the CI of the median is the two-level bootstrap over
   sessions (:func:`graphopt.backends.timing.combine_sessions`). ``compile_seconds`` and
   ``first_inference_ms`` are the first session's (every session's compile time is kept in
   ``compile_seconds_sessions``); sync throughput = batch / pooled median latency.
3. The last session only (their cost is not multiplied): a measured energy meter (RAPL, NVML)
   brackets its timed phase when one is readable, counting every inference in it; then steps
   4 and 5 run on it.
4. Concurrent throughput with :func:`~graphopt.backends.timing.measure_concurrent` through the
   runner's ``submit``/``wait_all`` (OpenVINO async requests, a thread pool for ORT), when the
   runner supports it.
5. Fidelity: the runner's outputs on the benchmark inputs against the reference, judged on
   the budget of the precision the runner actually ran
   (:func:`graphopt.budget.precision_budget`, the definition the pipeline uses too).
6. Energy per inference: the measured reading, or when none is usable the time x power
   estimate (:class:`~graphopt.backends.energy.TimePowerEstimator`: this process's CPU time
   over every session's timed phase x the modelled power per busy CPU), with ``source`` saying
   which (and ``energy_fallback`` why no meter was used). Beside it, never as the headline, the
   analytical lower bound :class:`~graphopt.backends.energy.ModelEnergyEstimator` on the
   model's cost at the precision run (``energy["compute_bound"]`` in the JSON).

Every result also records how many cores other processes kept busy during the timed phases
(``background_cores_busy``, from :mod:`graphopt.backends.cpuload`, averaged over the sessions'
timed phases) and warns above :data:`BACKGROUND_LOAD_WARNING`, and the DVFS state of the CPUs in
use read during the last timed phase (``environment.extra.dvfs_during_timing``), with a warning
when the frequency governor is not ``performance``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graphopt.backends.base import Runner
from graphopt.backends.cpuload import (
    BACKGROUND_LOAD_WARNING,
    cpu_clocks,
    mean_other_cores_busy,
    other_cores_busy,
)
from graphopt.backends.registry import BACKENDS, BackendSpec, parse_backend, start_runner
from graphopt.backends.stats import CV_WARNING, is_noisy, throughput_from_latency
from graphopt.backends.timing import (
    TimingConfig,
    TimingResult,
    combine_sessions,
    measure,
    measure_concurrent,
)
from graphopt.budget import Budget, Judgement, precision_budget
from graphopt.errors import GraphoptError

__all__ = [
    "DEFAULT_TIMING",
    "DEFAULT_SESSIONS",
    "BenchmarkResult",
    "benchmark",
    "model_file",
    # re-exported from graphopt.backends.cpuload, where they are defined
    "cpu_clocks",
    "other_cores_busy",
    "BACKGROUND_LOAD_WARNING",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMING = TimingConfig()
DEFAULT_SESSIONS = 3
"""Fresh runner sessions a benchmark's timed budget is split over (see the module docstring)."""

Progress = Callable[[str, float], None]
"""``progress(phase, fraction)``; phases: ``compile``, ``measure``, ``concurrent``, ``fidelity``."""


def model_file(spec: str | os.PathLike) -> Path:
    """The .onnx file behind a model spec (a path, or ``zoo:NAME`` materialised in the cache)."""
    from graphopt.model_io import ZOO_PREFIX

    text = os.fspath(spec)
    if text.startswith(ZOO_PREFIX):
        from graphopt import zoo

        return zoo.path(text[len(ZOO_PREFIX):])
    return Path(text)


@dataclasses.dataclass
class BenchmarkResult:
    """Everything one benchmark measured, and how."""

    model: str
    backend: str
    precision: str
    requested_precision: str | None
    batch_size: int
    seed: int
    compile_seconds: float
    timing: TimingResult
    throughput_sync: float
    throughput_concurrent: float | None
    concurrent_method: str
    energy: object  # EnergyReading, or None when energy="none"
    energy_fallback: list[str]
    fidelity: object  # graphopt.verify.Fidelity
    fidelity_judgement: Judgement
    settings: dict
    cost: dict
    environment: dict
    warnings: list[str]
    background_cores_busy: float | None = None
    compile_seconds_sessions: list[float] = dataclasses.field(default_factory=list)
    energy_bound: object = None  # EnergyReading of the compute-bound model, beside `energy`

    @property
    def sessions(self) -> int:
        return max(1, len(self.compile_seconds_sessions))

    @property
    def first_inference_ms(self) -> float:
        return self.timing.first_call_us / 1e3

    @property
    def stats(self):
        return self.timing.stats

    @property
    def fidelity_ok(self) -> bool:
        return self.fidelity_judgement.ok

    @property
    def fidelity_failures(self) -> list[str]:
        return list(self.fidelity_judgement.failures)

    def to_dict(self, *, include_samples: bool = True) -> dict:
        return {
            "model": self.model,
            "backend": self.backend,
            "precision": self.precision,
            "requested_precision": self.requested_precision,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "sessions": self.sessions,
            "compile_seconds": self.compile_seconds,
            "compile_seconds_sessions": self.compile_seconds_sessions,
            "first_inference_ms": self.first_inference_ms,
            "latency": self.timing.to_dict(include_samples=include_samples),
            "stats": self.stats.to_dict(),
            "throughput": {
                "sync_per_second": self.throughput_sync,
                "sync_method": "batch_size / median latency of synchronous calls",
                "concurrent_per_second": self.throughput_concurrent,
                "concurrent_method": self.concurrent_method,
            },
            "energy": self._energy_dict(),
            "energy_fallback": self.energy_fallback,
            "fidelity": {
                **self.fidelity.to_dict(),
                "reference": "onnxruntime CPU fp32, graph optimizations off, same inputs",
                "judged_at": self.precision,
                **self.fidelity_judgement.to_dict(),
            },
            "fidelity_ok": self.fidelity_ok,
            "settings": self.settings,
            "background_cores_busy": self.background_cores_busy,
            "cost": self.cost,
            "environment": self.environment,
            "warnings": self.warnings,
        }


    def _energy_dict(self) -> dict | None:
        if self.energy is None:
            return None
        data = self.energy.to_dict()
        data["compute_bound"] = None if self.energy_bound is None else self.energy_bound.to_dict()
        return data


def _feed_batch(feed: dict[str, np.ndarray]) -> int | None:
    for array in feed.values():
        if array.ndim:
            return int(array.shape[0])
    return None


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


def _energy(preference: str, device: str, cost, precision: str, batch_size: int,
            measured, busy: tuple[float, float, int] | None, cpus: int,
            cpu_model: str | None) -> tuple[object, object, list[str]]:
    """(headline reading, compute-bound reading, reasons no meter was used)."""
    from graphopt.backends.energy import ModelEnergyEstimator, TimePowerEstimator, cpu_power
    from graphopt.backends.energy.model import PRECISIONS

    reading, reasons = measured
    if preference == "none":
        return None, None, ["energy not requested (--energy none)"]
    priced = precision if precision in PRECISIONS else "fp32"
    bound = ModelEnergyEstimator().estimate(cost, precision=priced, batch_size=batch_size)
    if reading is not None and reading.joules_per_inference is not None:
        return reading, bound, reasons
    if reading is not None:
        reasons = [*reasons, f"{reading.source}: {reading.note}"]
    if busy is None:
        return None, bound, [*reasons, "no CPU time reading (/proc/stat): no time x power"
                                       " estimate"]
    if device != "cpu":
        reasons = [*reasons, f"the estimate covers the host CPU only, not the {device}"]
    busy_seconds, wall_seconds, inferences = busy
    estimator = TimePowerEstimator(power=cpu_power(cpu_model))
    return estimator.estimate(busy_seconds=busy_seconds, wall_seconds=wall_seconds,
                              inferences=inferences, cpus_in_use=cpus), bound, reasons


def _busy(periods: list[tuple], inferences: int) -> tuple[float, float, int] | None:
    """(this process's CPU seconds, wall seconds, inferences) over the timed phases."""
    pairs = [(b, a) for b, a in periods if b is not None and a is not None]
    if not pairs or inferences < 1:
        return None
    wall = sum(a[0] - b[0] for b, a in pairs)
    busy = sum(a[2] - b[2] for b, a in pairs)
    return (max(0.0, busy), wall, inferences) if wall > 0 else None


def _pick_meter(preference: str, device: str):
    from graphopt.backends.energy import probe_meters

    if preference in ("estimate", "model", "none"):
        return None, [f"measurement not requested (--energy {preference})"]
    meter, reasons = probe_meters(preference, device=device)
    if meter is None and preference != "auto":
        raise GraphoptError(f"energy meter {preference} is not usable here: {'; '.join(reasons)}")
    return meter, reasons


def benchmark(
    model_spec: str | os.PathLike,
    backend_spec: str | BackendSpec,
    *,
    config: TimingConfig = DEFAULT_TIMING,
    sessions: int = DEFAULT_SESSIONS,
    batch_size: int = 1,
    threads: int | None = None,
    pin: bool | None = None,
    energy: str = "auto",
    seed: int = 0,
    concurrent_seconds: float | None = None,
    energy_baseline_seconds: float = 1.0,
    budget: Budget | None = None,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """Measure ``model_spec`` on ``backend_spec`` (steps in the module docstring).

    ``config`` is the whole timed budget, split evenly over ``sessions`` fresh runner sessions
    (1 measures a single session). ``threads`` and ``pin`` (bind intra-op threads to cores)
    apply to backends with those settings unless the spec sets its own. ``energy`` is
    ``auto`` (a measured meter if readable, else the time x power estimate), ``rapl``/``nvml``/
    ``jetson`` (that meter or an error), ``estimate`` (no meter; ``model`` is its older name)
    or ``none``.
    ``concurrent_seconds`` defaults to ``config.min_seconds``; 0 skips the concurrent phase. A
    measured meter first records ``energy_baseline_seconds`` of idle power, subtracted from
    the reading. ``budget`` judges the fidelity instead of the run precision's own budget.
    """
    from graphopt import oracle
    from graphopt.backends.cpufreq import cpus_in_use, dvfs_state, governor_warning
    from graphopt.backends.environment import capture_environment
    from graphopt.cost import model_cost
    from graphopt.model_io import resolve_model
    from graphopt.verify import compare_outputs, random_inputs

    spec = parse_backend(backend_spec) if isinstance(backend_spec, str) else backend_spec
    if batch_size < 1:
        raise GraphoptError(f"batch size must be >= 1, got {batch_size}")
    if sessions < 1:
        raise GraphoptError(f"sessions must be >= 1, got {sessions}")
    model = resolve_model(model_spec)
    path = model_file(model_spec)
    feed = random_inputs(model, seed=seed, batch_size=batch_size)
    if _feed_batch(feed) not in (None, batch_size):
        raise GraphoptError(
            f"{model_spec}: the model has a fixed batch of {_feed_batch(feed)};"
            f" batch size {batch_size} needs a dynamic batch dimension"
        )
    reference = oracle.run_model(oracle.make_session(model), feed)
    cost = model_cost(model)
    device = BACKENDS[spec.name].device
    meter, meter_reasons = _pick_meter(energy, device)
    session_config = config.split(sessions)
    runs: list[TimingResult] = []
    compile_times: list[float] = []
    load_periods: list[tuple] = []
    measured = (None, meter_reasons)
    inferences = 0
    dvfs: dict = {}
    try:
        for index in range(sessions):
            last = index == sessions - 1

            def report(phase: str, fraction: float, index=index) -> None:
                if progress is not None:
                    progress(phase, (index + fraction) / sessions)

            runner = _activate(spec, path, model_spec, threads, pin, batch_size, report)
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
                    measured = (metered.stop(calls[0] * batch_size), meter_reasons)
                compile_times.append(runner.compile_seconds)
                if last:
                    seconds = (config.min_seconds if concurrent_seconds is None
                               else concurrent_seconds)
                    concurrent, concurrent_method = _measure_concurrent(
                        runner, feed, seconds, batch_size, report)
                    report("fidelity", 0.0)
                    fidelity = compare_outputs(reference, runner.infer(feed))
                    precision, settings = runner.precision, dict(runner.settings)
            finally:
                runner.deactivate()
    finally:
        if meter is not None:
            meter.close()
    timing = combine_sessions(runs, config)
    background = mean_other_cores_busy(load_periods)
    judgement = (budget if budget else precision_budget(precision)).judge(fidelity)
    warnings = _warnings(spec, precision, timing, judgement, background)
    if governor_warning(dvfs):
        warnings.append(governor_warning(dvfs))
    environment = capture_environment(
        extra={"backend": str(spec), "precision": precision, "runner_settings": settings,
               "dvfs_during_timing": dvfs}
    )
    in_use = len(cpus_in_use())
    cpus = min(threads or in_use, in_use)
    reading, bound, fallback = _energy(energy, device, cost, precision, batch_size, measured,
                                       _busy(load_periods, inferences), cpus,
                                       environment["cpu"]["model"])
    return BenchmarkResult(
        model=os.fspath(model_spec),
        backend=str(spec),
        precision=precision,
        requested_precision=spec.precision,
        batch_size=batch_size,
        seed=seed,
        compile_seconds=compile_times[0],
        timing=timing,
        throughput_sync=throughput_from_latency(timing.stats, batch_size),
        throughput_concurrent=concurrent,
        concurrent_method=concurrent_method,
        energy=reading,
        energy_fallback=fallback,
        fidelity=fidelity,
        fidelity_judgement=judgement,
        settings=settings,
        cost=cost.to_dict(),
        environment=environment,
        warnings=warnings,
        background_cores_busy=background,
        compile_seconds_sessions=compile_times,
        energy_bound=bound,
    )


def _activate(spec: BackendSpec, path: Path, model_spec, threads: int | None, pin: bool | None,
              batch_size: int, report: Progress) -> Runner:
    """A fresh, activated runner (one session); activation failures become one-line errors."""
    report("compile", 0.0)
    runner = start_runner(spec, path, label=os.fspath(model_spec), threads=threads, pin=pin,
                          batch_size=batch_size)
    report("compile", 1.0)
    return runner


def _warnings(spec: BackendSpec, precision: str, timing: TimingResult, judgement: Judgement,
              background: float | None) -> list[str]:
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
    if not judgement.ok:
        warnings.append(f"fidelity outside the {precision} budget {judgement.budget}:"
                        f" {', '.join(judgement.failures)}")
    if math.isnan(timing.stats.p50):
        warnings.append("no latency samples")
    return warnings
