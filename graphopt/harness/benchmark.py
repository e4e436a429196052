"""Benchmark one model on one backend: speed, energy and fidelity, each labelled with its method.

Steps of :func:`benchmark`:

1. The model: a path, ``zoo:NAME`` or an onnx-ir model in memory (written to a temporary
   folder for the runtime). Inputs: the caller's, or deterministic random ones
   (``random_inputs(model, seed=seed, batch_size=batch_size)``).
2. The reference outputs: from the oracle (onnxruntime CPU fp32, graph optimizations off) on
   ``reference`` (the original fp32 model, so an optimized model is judged against what it
   replaced, not against itself), or on the model itself when no reference is given; or the
   reference's outputs themselves when the caller computed them.
3. The runtime measurement, :func:`graphopt.backends.benchmark.measure_sessions`: timed runner
   sessions, concurrent throughput, a measured energy meter where readable.
4. Fidelity: the runner's outputs against the reference, judged on the budget of the precision
   the runner actually ran (:func:`graphopt.budget.precision_budget`, the definition the
   pipeline uses too) or on the caller's ``budget``.
5. Energy per inference (:func:`graphopt.backends.benchmark.energy_per_inference`): the
   measured reading or the time x power estimate, with the compute-bound figure of the cost
   model beside (``energy["compute_bound"]`` in the JSON).

:class:`BenchmarkResult` is the record: ``to_dict`` is JSON-ready and ``from_dict`` reads it
back, so results stored by the harness (:mod:`graphopt.harness.store`) load as results again.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir

from graphopt import oracle
from graphopt.backends.benchmark import (
    DEFAULT_SESSIONS,
    DEFAULT_TIMING,
    Progress,
    energy_per_inference,
    measure_sessions,
)
from graphopt.backends.energy import EnergyReading
from graphopt.backends.environment import capture_environment
from graphopt.backends.registry import BACKENDS, BackendSpec, parse_backend
from graphopt.backends.stats import LatencyStats, throughput_from_latency
from graphopt.backends.timing import TimingConfig, TimingResult
from graphopt.budget import Budget, Judgement, precision_budget
from graphopt.cost import model_cost
from graphopt.errors import GraphoptError
from graphopt.model_io import model_file, resolve_model, save_model
from graphopt.verify import Fidelity, OutputFidelity, compare_outputs, random_inputs

__all__ = ["BenchmarkResult", "ReferenceOutputs", "benchmark", "benchmark_feed",
           "reference_outputs", "timing_config", "ORACLE_REFERENCE"]

ORACLE_REFERENCE = "onnxruntime CPU fp32, graph optimizations off, same inputs"
MAX_WARMUP_SECONDS = 10.0

ModelLike = str | os.PathLike | ir.Model


@dataclasses.dataclass(frozen=True)
class ReferenceOutputs:
    """A reference model's outputs on a feed, computed once for many benchmarks of its
    rewrites (:func:`reference_outputs`), with what they are for the record."""

    outputs: Mapping[str, np.ndarray]
    description: str


Reference = ModelLike | Mapping[str, np.ndarray] | ReferenceOutputs


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
    energy: EnergyReading | None  # None when energy="none"
    energy_fallback: list[str]
    fidelity: Fidelity
    fidelity_judgement: Judgement
    settings: dict
    cost: dict
    environment: dict
    warnings: list[str]
    background_cores_busy: float | None = None
    compile_seconds_sessions: list[float] = dataclasses.field(default_factory=list)
    energy_bound: EnergyReading | None = None  # the compute-bound model, beside `energy`
    reference: str = ORACLE_REFERENCE

    @property
    def sessions(self) -> int:
        return max(1, len(self.compile_seconds_sessions))

    @property
    def first_inference_ms(self) -> float:
        return self.timing.first_call_us / 1e3

    @property
    def stats(self) -> LatencyStats:
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
                "reference": self.reference,
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

    @classmethod
    def from_dict(cls, data: Mapping) -> BenchmarkResult:
        """The result ``to_dict`` wrote (with samples: without them the latency samples are
        empty, the statistics are kept)."""
        energy = data["energy"]
        fidelity = data["fidelity"]
        throughput = data["throughput"]
        return cls(
            model=data["model"],
            backend=data["backend"],
            precision=data["precision"],
            requested_precision=data["requested_precision"],
            batch_size=data["batch_size"],
            seed=data["seed"],
            compile_seconds=data["compile_seconds"],
            timing=_timing_from_dict(data["latency"]),
            throughput_sync=throughput["sync_per_second"],
            throughput_concurrent=throughput["concurrent_per_second"],
            concurrent_method=throughput["concurrent_method"],
            energy=None if energy is None else _reading(
                {k: v for k, v in energy.items() if k != "compute_bound"}),
            energy_fallback=list(data["energy_fallback"]),
            fidelity=_fidelity_from_dict(fidelity),
            fidelity_judgement=Judgement(_budget(fidelity["budget"]),
                                         tuple(fidelity["failures"]),
                                         tuple(fidelity["unchecked"])),
            settings=dict(data["settings"]),
            cost=dict(data["cost"]),
            environment=dict(data["environment"]),
            warnings=list(data["warnings"]),
            background_cores_busy=data["background_cores_busy"],
            compile_seconds_sessions=list(data["compile_seconds_sessions"]),
            energy_bound=(None if energy is None or energy.get("compute_bound") is None
                          else _reading(energy["compute_bound"])),
            reference=fidelity.get("reference", ORACLE_REFERENCE),
        )

    def _energy_dict(self) -> dict | None:
        if self.energy is None:
            return None
        data = self.energy.to_dict()
        data["compute_bound"] = None if self.energy_bound is None else self.energy_bound.to_dict()
        return data


def _reading(data: Mapping) -> EnergyReading:
    return EnergyReading(**data)


def _budget(text: str) -> Budget:
    return Budget() if text == str(Budget()) else Budget.parse(text)


def _json_float(value) -> float:
    return float(value) if isinstance(value, str) else value


def _fidelity_from_dict(data: Mapping) -> Fidelity:
    return Fidelity(tuple(OutputFidelity(**{**o, "sqnr_db": _json_float(o["sqnr_db"])})
                          for o in data["outputs"]))


def _stats(data: Mapping) -> LatencyStats:
    names = {f.name for f in dataclasses.fields(LatencyStats)}
    return LatencyStats(**{k: v for k, v in data.items() if k in names})


def _timing_from_dict(data: Mapping) -> TimingResult:
    samples = np.asarray(data.get("samples_us", []), dtype=np.float64)
    groups = data.get("samples_session")
    groups = None if groups is None else np.asarray(groups, dtype=np.int64)
    sessions = []
    for entry in data.get("sessions", []):
        # The dict keeps each session's count and median only: the rest of its statistics
        # are not recorded, so they read back as NaN.
        nan = math.nan
        stats = LatencyStats(n=entry["n"], min=nan, max=nan, mean=nan, std=nan, cv=nan,
                             p50=entry["p50_us"], p90=nan, p95=nan, p99=nan, p999=nan,
                             median_ci_low=nan, median_ci_high=nan)
        own = samples if groups is None else samples[groups == entry["session"]]
        sessions.append(TimingResult(
            samples_us=own, warmup_iterations=entry["warmup_iterations"], warmup_seconds=nan,
            first_call_us=entry["first_call_us"], steady=entry["steady"], stats=stats,
            wall_seconds=nan, config=TimingConfig(**entry["config"])))
    return TimingResult(
        samples_us=samples,
        warmup_iterations=data["warmup_iterations"],
        warmup_seconds=data["warmup_seconds"],
        first_call_us=data["first_call_us"],
        steady=data["steady"],
        stats=_stats(data["stats"]),
        wall_seconds=data["wall_seconds"],
        config=TimingConfig(**data["config"]),
        samples_session=groups,
        sessions=sessions,
    )


def timing_config(duration: float, min_iterations: int) -> TimingConfig:
    """The timed budget of ``graphopt bench`` and of suites: at least ``duration`` seconds
    and ``min_iterations`` calls, warm-up allowed twice the duration (1 to 10 s)."""
    return TimingConfig(min_iterations=min_iterations, min_seconds=duration,
                        warmup_max_seconds=min(MAX_WARMUP_SECONDS, max(1.0, 2 * duration)))


def _feed_batch(feed: Mapping[str, np.ndarray]) -> int | None:
    for array in feed.values():
        if array.ndim:
            return int(array.shape[0])
    return None


def _label(model: ModelLike) -> str:
    if isinstance(model, ir.Model):
        return f"model in memory ({model.graph.name or 'unnamed graph'})"
    return os.fspath(model)


def _loaded(model: ModelLike) -> ir.Model:
    return model if isinstance(model, ir.Model) else resolve_model(model)


def reference_outputs(reference: ModelLike, feed: Mapping[str, np.ndarray]) -> ReferenceOutputs:
    """The oracle's outputs of ``reference`` on ``feed``, to pass as ``benchmark(reference=)``
    to many benchmarks on that feed."""
    outputs = oracle.run_model(oracle.make_session(_loaded(reference)), dict(feed))
    return ReferenceOutputs(outputs,
                            f"{ORACLE_REFERENCE}, of the reference model {_label(reference)}")


def benchmark_feed(model: ModelLike, *, seed: int = 0, batch_size: int = 1,
                   label: str | None = None) -> dict[str, np.ndarray]:
    """The random feed :func:`benchmark` uses without ``inputs``."""
    loaded = _loaded(model)
    feed = random_inputs(loaded, seed=seed, batch_size=batch_size)
    if _feed_batch(feed) not in (None, batch_size):
        raise GraphoptError(
            f"{label or _label(model)}: the model has a fixed batch of {_feed_batch(feed)};"
            f" batch size {batch_size} needs a dynamic batch dimension"
        )
    return feed


def _reference_outputs(reference: Reference | None, model: ir.Model,
                       feed: Mapping[str, np.ndarray]) -> tuple[dict, str]:
    if reference is None:
        return oracle.run_model(oracle.make_session(model), feed), ORACLE_REFERENCE
    if isinstance(reference, ReferenceOutputs):
        return dict(reference.outputs), reference.description
    if isinstance(reference, Mapping):
        return dict(reference), "outputs given by the caller, same inputs"
    computed = reference_outputs(reference, feed)
    return dict(computed.outputs), computed.description


def benchmark(
    model: ModelLike,
    backend: str | BackendSpec,
    *,
    reference: Reference | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
    label: str | None = None,
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
    work_dir: str | os.PathLike | None = None,
) -> BenchmarkResult:
    """Measure ``model`` (path, ``zoo:NAME`` or onnx-ir model) on ``backend`` (steps in the
    module docstring).

    ``reference``: the fp32 model fidelity is measured against (path, ``zoo:NAME``, onnx-ir
    model), its outputs on ``inputs`` (a mapping or :class:`ReferenceOutputs`); default the
    model itself. ``inputs``: the feed
    (default random with ``seed`` and ``batch_size``). ``label`` names the model in the result
    (default the spec as written). An in-memory model is written into a temporary folder inside
    ``work_dir`` (default the system's) and removed afterwards. ``budget`` judges the fidelity
    instead of the run precision's own budget. The timing arguments are those of
    :func:`graphopt.backends.benchmark.measure_sessions`.
    """
    spec = parse_backend(backend) if isinstance(backend, str) else backend
    if batch_size < 1:
        raise GraphoptError(f"batch size must be >= 1, got {batch_size}")
    if sessions < 1:
        raise GraphoptError(f"sessions must be >= 1, got {sessions}")
    loaded = _loaded(model)
    name = label or _label(model)
    if inputs is None:
        feed = benchmark_feed(loaded, seed=seed, batch_size=batch_size, label=name)
    else:
        feed = dict(inputs)
    expected, reference_text = _reference_outputs(reference, loaded, feed)
    cost = model_cost(loaded)

    def measure_file(path: Path):
        return measure_sessions(
            spec, path, feed, label=name, config=config, sessions=sessions,
            batch_size=batch_size, threads=threads, pin=pin, energy=energy,
            concurrent_seconds=concurrent_seconds,
            energy_baseline_seconds=energy_baseline_seconds, progress=progress)

    if isinstance(model, ir.Model):
        if work_dir is not None:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="graphopt-bench-", dir=work_dir) as folder:
            run = measure_file(save_model(model, Path(folder) / "model.onnx"))
    else:
        run = measure_file(model_file(model))
    fidelity = compare_outputs(expected, run.outputs)
    judgement = (budget if budget else precision_budget(run.precision)).judge(fidelity)
    warnings = list(run.warnings)
    if not judgement.ok:
        warnings.append(f"fidelity outside the {run.precision} budget {judgement.budget}:"
                        f" {', '.join(judgement.failures)}")
    environment = capture_environment(
        extra={"backend": str(spec), "precision": run.precision,
               "runner_settings": run.settings, "dvfs_during_timing": run.dvfs}
    )
    reading, bound, fallback = energy_per_inference(
        energy, BACKENDS[spec.name].device, cost, run.precision, batch_size,
        (run.measured_energy, run.meter_reasons), run.busy, run.cpus,
        environment["cpu"]["model"])
    return BenchmarkResult(
        model=name,
        backend=str(spec),
        precision=run.precision,
        requested_precision=spec.precision,
        batch_size=batch_size,
        seed=seed,
        compile_seconds=run.compile_seconds[0],
        timing=run.timing,
        throughput_sync=throughput_from_latency(run.timing.stats, batch_size),
        throughput_concurrent=run.throughput_concurrent,
        concurrent_method=run.concurrent_method,
        energy=reading,
        energy_fallback=fallback,
        fidelity=fidelity,
        fidelity_judgement=judgement,
        settings=run.settings,
        cost=cost.to_dict(),
        environment=environment,
        warnings=warnings,
        background_cores_busy=run.background_cores_busy,
        compile_seconds_sessions=run.compile_seconds,
        energy_bound=bound,
        reference=reference_text,
    )
