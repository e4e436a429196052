"""The latency probe of :mod:`graphopt.latency`, implemented on a backend's runners.

Passes that decide by speed receive a :class:`~graphopt.latency.LatencyProbe` and never
import backends/; the CLI or the harness builds this one and hands it over::

    probe = RunnerLatencyProbe("openvino-cpu", threads=1, max_seconds=10)
    comparison = probe.compare(original, candidate)   # onnx_ir models
    if comparison.verdict == "faster": ...

Each model is written with :func:`graphopt.model_io.save_model` to a temporary folder
(inside ``work_dir`` when given, removed afterwards), run on inputs from
:func:`graphopt.verify.random_inputs` with the probe's seed, and measured by
:func:`graphopt.backends.comparison.compare`: ``compare`` measures both models paired (the
speedup CI of :mod:`graphopt.backends.speedup`, stopping at ``+-ci_target`` or after
``max_seconds``), ``measure`` one model the same way (its median and 95% CI).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx_ir as ir

from graphopt.backends.comparison import DEFAULT_SESSIONS, Contender, PairedBenchmark, compare
from graphopt.backends.paired import DEFAULT_CI_TARGET, PairedConfig
from graphopt.backends.registry import DEFAULT_BACKEND, check_available, parse_backend
from graphopt.errors import BackendUnavailableError, GraphoptError
from graphopt.latency import CandidateUnsupported, LatencyComparison, LatencyEstimate
from graphopt.model_io import save_model
from graphopt.verify import random_inputs

__all__ = ["DEFAULT_PROBE_SECONDS", "RunnerLatencyProbe"]

DEFAULT_PROBE_SECONDS = 10.0
"""Time budget of one probe measurement (warm-up included, compilation not)."""


class RunnerLatencyProbe:
    """:class:`graphopt.latency.LatencyProbe` on ``target`` (a backend spec such as
    ``ort-cpu`` or ``openvino-cpu:f32@pin=true``)."""

    def __init__(
        self,
        target: str = DEFAULT_BACKEND,
        *,
        threads: int | None = None,
        pin: bool | None = None,
        max_seconds: float = DEFAULT_PROBE_SECONDS,
        ci_target: float = DEFAULT_CI_TARGET,
        confidence: float = 0.95,
        sessions: int = DEFAULT_SESSIONS,
        seed: int = 0,
        work_dir: str | os.PathLike | None = None,
    ) -> None:
        self.spec = parse_backend(target)
        ok, reason = check_available(self.spec.name)
        if not ok:
            raise BackendUnavailableError(f"{self.spec.name} is not available here: {reason}")
        self.target = str(self.spec)
        self.threads = threads
        self.pin = pin
        self.config = PairedConfig(max_seconds=max_seconds, ci_target=ci_target,
                                   confidence=confidence, seed=seed)
        self.sessions = sessions
        self.seed = seed
        self.work_dir = None if work_dir is None else Path(work_dir)

    def measure(self, model: ir.Model) -> LatencyEstimate:
        """Median latency of ``model`` on the target, with its 95% CI."""
        run = self._run([model])
        return self._estimate(run, 0)

    def compare(self, baseline: ir.Model, candidate: ir.Model) -> LatencyComparison:
        """Paired measurement; ``speedup`` = baseline time / candidate time."""
        run = self._run([baseline, candidate])
        (comparison,) = run.result.comparisons
        interval = comparison.interval
        return LatencyComparison(
            target=self.target,
            speedup=interval.estimate,
            ci_low=interval.low,
            ci_high=interval.high,
            confidence=interval.confidence,
            baseline=self._estimate(run, 0),
            candidate=self._estimate(run, 1),
            stop_reason=run.result.stop_reason,
            method=self._method(run),
        )

    # -- helpers ---------------------------------------------------------------------------

    def _run(self, models: list[ir.Model]) -> PairedBenchmark:
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="graphopt-probe-", dir=self.work_dir) as folder:
            entries = []
            for index, model in enumerate(models):
                label = ("baseline", "candidate")[index] if len(models) > 1 else "model"
                path = save_model(model, Path(folder) / f"{label}.onnx")
                feed = random_inputs(model, seed=self.seed)
                entries.append(Contender(label, path, feed, self.spec))
            try:
                return compare(entries, self.config, sessions=self.sessions,
                               threads=self.threads, pin=self.pin)
            except GraphoptError as exc:
                if len(models) > 1 and f"cannot run {entries[1].label}" in str(exc):
                    raise CandidateUnsupported(str(exc)) from exc
                raise

    def _estimate(self, run: PairedBenchmark, index: int) -> LatencyEstimate:
        stats = run.result.arms[index].stats
        return LatencyEstimate(
            target=self.target,
            median_ms=stats.p50 / 1e3,
            ci_low_ms=stats.median_ci_low / 1e3,
            ci_high_ms=stats.median_ci_high / 1e3,
            samples=stats.n,
            method=self._method(run),
        )

    def _method(self, run: PairedBenchmark) -> str:
        result = run.result
        return (f"paired blocks over {result.sessions} runner session(s) per model,"
                f" {result.rounds_used} rounds; {result.stop_detail}")
