"""Every (model, backend) pair benchmarked, then measured paired against the first.

:func:`run_pairs` is the loop behind ``graphopt bench``: each pair gets an absolute
:func:`~graphopt.harness.benchmark.benchmark`; a failing pair is recorded and the others go on
(a single pair's failure is raised). With more than one measured pair and a
:class:`~graphopt.backends.paired.PairedConfig`, every measured pair is also measured paired
against the first (:func:`graphopt.backends.comparison.compare`: all runners alive, short
blocks in a balanced random order, a bootstrap CI of the speedup and a verdict).

:func:`contenders` turns model specs (paths or ``zoo:NAME``) and backend specs into the arms
of a paired comparison, each with its model file and deterministic inputs
(``random_inputs(model, seed=seed, batch_size=batch_size)``, the same arrays for models with
the same inputs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager

import numpy as np

from graphopt.backends.benchmark import Progress
from graphopt.backends.comparison import Contender, PairedBenchmark, compare
from graphopt.backends.paired import PairedConfig
from graphopt.backends.registry import BackendSpec, parse_backend
from graphopt.errors import GraphoptError
from graphopt.harness.benchmark import BenchmarkResult, benchmark
from graphopt.model_io import model_file, resolve_model
from graphopt.verify import random_inputs

__all__ = ["PairsRun", "Task", "contenders", "run_pairs"]

Task = Callable[[str], AbstractContextManager[Progress]]
"""``task(description)``: a context manager around one unit of work yielding its
``progress(phase, fraction)`` callback (the CLI shows a progress bar per task)."""


@dataclasses.dataclass
class PairsRun:
    """The measured pairs in order, the failed ones, and the paired comparison if any."""

    results: list[BenchmarkResult]
    failures: list[dict]
    pairing: PairedBenchmark | None = None
    paired_error: str | None = None

    def speedups(self) -> dict[int, object] | None:
        """Result index -> its paired comparison against the baseline (``None`` for the
        baseline), or ``None`` without a paired phase."""
        if self.pairing is None:
            return None
        return {i: self.pairing.comparison_of(i) for i in range(len(self.results))}


@contextlib.contextmanager
def _silent(_: str) -> Iterator[Progress]:
    yield lambda phase, fraction: None


def contenders(
    models: Sequence[str | os.PathLike],
    backends: Sequence[BackendSpec | str],
    *,
    seed: int = 0,
    batch_size: int = 1,
) -> list[Contender]:
    """Every (model, backend) pair, models outermost, each model loaded once."""
    specs = [parse_backend(b) if isinstance(b, str) else b for b in backends]
    feeds: dict[str, Mapping[str, np.ndarray]] = {}
    result = []
    for model in models:
        label = os.fspath(model)
        if label not in feeds:
            feeds[label] = random_inputs(resolve_model(label), seed=seed, batch_size=batch_size)
        path = model_file(label)
        result.extend(Contender(label, path, feeds[label], spec) for spec in specs)
    return result


def run_pairs(
    models: Sequence[str | os.PathLike],
    backends: Sequence[BackendSpec | str],
    *,
    paired: PairedConfig | None = None,
    task: Task | None = None,
    on_failure: Callable[[dict], None] | None = None,
    sessions: int,
    threads: int | None = None,
    pin: bool | None = None,
    batch_size: int = 1,
    seed: int = 0,
    **benchmark_options,
) -> PairsRun:
    """Benchmark every (model, backend) pair, models outermost, then (``paired`` given, more
    than one pair measured) the paired phase against the first pair.

    ``benchmark_options`` go to :func:`~graphopt.harness.benchmark.benchmark` (``config``,
    ``energy``, ``budget``, ...). ``on_failure`` hears of each failed pair as it fails
    (``{"model", "backend", "error"}``); a failing paired phase is ``paired_error``.
    """
    task = task or _silent
    specs = [parse_backend(b) if isinstance(b, str) else b for b in backends]
    run = PairsRun(results=[], failures=[])
    measured: list[tuple[str, BackendSpec]] = []
    for model in models:
        for spec in specs:
            with task(f"{os.fspath(model)} on {spec}") as report:
                try:
                    run.results.append(benchmark(
                        model, spec, sessions=sessions, threads=threads, pin=pin,
                        batch_size=batch_size, seed=seed, progress=report,
                        **benchmark_options))
                    measured.append((os.fspath(model), spec))
                except GraphoptError as exc:
                    if len(models) * len(specs) == 1:
                        raise
                    # One failing pair must not throw away the others' measurements.
                    failure = {"model": os.fspath(model), "backend": str(spec),
                               "error": str(exc)}
                    run.failures.append(failure)
                    if on_failure is not None:
                        on_failure(failure)
    if paired is not None and len(measured) > 1:
        entries: list[Contender] = []
        for model, spec in measured:
            entries += contenders([model], [spec], seed=seed, batch_size=batch_size)
        with task(f"paired: {len(entries) - 1} against {entries[0].name}") as report:
            try:
                run.pairing = compare(entries, paired, sessions=sessions, threads=threads,
                                      pin=pin, batch_size=batch_size, progress=report)
            except GraphoptError as exc:
                run.paired_error = str(exc)
    return run
