"""Every (model, backend) pair benchmarked, then measured paired against its baseline.

:func:`run_pairs` is the loop behind ``graphopt bench``: each pair gets an absolute
:func:`~graphopt.harness.benchmark.benchmark`; a failing pair is recorded and the others go on
(a single pair's failure is raised). With a :class:`~graphopt.backends.paired.PairedConfig`,
the measured pairs are then measured paired (:func:`graphopt.backends.comparison.compare`:
all runners alive, short blocks in a balanced random order, a bootstrap CI of the speedup and
a verdict), in groups that share a baseline (:func:`baseline_groups`):

- several models: one group per backend, its baseline the baseline model (the first, or
  ``baseline``) on that backend, so every speedup compares models on the same backend;
- one model on several backends: one group, the model on the first backend the baseline.

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

__all__ = ["Pairing", "PairsRun", "Task", "baseline_groups", "contenders", "run_pairs"]

Task = Callable[[str], AbstractContextManager[Progress]]
"""``task(description)``: a context manager around one unit of work yielding its
``progress(phase, fraction)`` callback (the CLI shows a progress bar per task)."""


@dataclasses.dataclass
class Pairing:
    """One paired measurement: ``indices`` are the results it measured, the first the
    baseline of the others."""

    indices: list[int]
    benchmark: PairedBenchmark


@dataclasses.dataclass
class PairsRun:
    """The measured pairs in order, the failed ones, and the paired comparisons if any (one
    :class:`Pairing` per baseline)."""

    results: list[BenchmarkResult]
    failures: list[dict]
    pairings: list[Pairing] = dataclasses.field(default_factory=list)
    paired_errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def paired_error(self) -> str | None:
        return "; ".join(self.paired_errors) if self.paired_errors else None

    def baseline_of(self, index: int) -> int | None:
        """The result index that result ``index`` was compared with (itself for a
        baseline), ``None`` when it was not measured paired."""
        for pairing in self.pairings:
            if index in pairing.indices:
                return pairing.indices[0]
        return None

    def comparison_of(self, index: int):
        """Result ``index`` against its baseline (``None`` for a baseline or unpaired)."""
        for pairing in self.pairings:
            if index in pairing.indices:
                return pairing.benchmark.comparison_of(pairing.indices.index(index))
        return None

    def speedups(self) -> dict[int, object] | None:
        """Result index -> its paired comparison against its baseline (``None`` for a
        baseline), or ``None`` without a paired phase."""
        if not self.pairings:
            return None
        return {i: self.comparison_of(i) for i in range(len(self.results))}

    def baselines(self) -> set[int]:
        return {pairing.indices[0] for pairing in self.pairings}


def baseline_groups(measured: Sequence[tuple[str, str]], baseline: str | None = None,
                    ) -> list[list[int]]:
    """Indices of ``measured`` (model, backend) pairs grouped by baseline, the baseline first
    (see the module docstring); groups of one are left out. ``baseline`` is a model of
    ``measured`` (default: the first)."""
    models = list(dict.fromkeys(model for model, _ in measured))
    if not models:
        return []
    base = baseline if baseline is not None else models[0]
    if len(models) == 1:
        groups = [list(range(len(measured)))]
    else:
        groups = []
        for backend in dict.fromkeys(b for _, b in measured):
            on_it = [i for i, (_, b) in enumerate(measured) if b == backend]
            first = [i for i in on_it if measured[i][0] == base]
            if first:  # the baseline failed on this backend: nothing to compare with
                groups.append(first[:1] + [i for i in on_it if i != first[0]])
    return [g for g in groups if len(g) > 1]


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
    baseline: str | os.PathLike | None = None,
    **benchmark_options,
) -> PairsRun:
    """Benchmark every (model, backend) pair, models outermost, then (``paired`` given) the
    paired phase of each baseline group (:func:`baseline_groups`; ``baseline`` is one of
    ``models``, default the first).

    ``benchmark_options`` go to :func:`~graphopt.harness.benchmark.benchmark` (``config``,
    ``energy``, ``budget``, ...). ``on_failure`` hears of each failed pair as it fails
    (``{"model", "backend", "error"}``); a failing paired phase is ``paired_error``.
    """
    task = task or _silent
    specs = [parse_backend(b) if isinstance(b, str) else b for b in backends]
    run = PairsRun(results=[], failures=[])
    measured: list[tuple[str, BackendSpec]] = []
    labels = [os.fspath(m) for m in models]
    if baseline is not None and os.fspath(baseline) not in labels:
        raise GraphoptError(f"--baseline {os.fspath(baseline)}: not one of the models measured"
                            f" ({', '.join(labels)})")
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
    if paired is None:
        return run
    groups = baseline_groups([(m, str(spec)) for m, spec in measured],
                             None if baseline is None else os.fspath(baseline))
    for group in groups:
        entries: list[Contender] = []
        for index in group:
            model, spec = measured[index]
            entries += contenders([model], [spec], seed=seed, batch_size=batch_size)
        with task(f"paired: {len(entries) - 1} against {entries[0].name}") as report:
            try:
                run.pairings.append(Pairing(group, compare(
                    entries, paired, sessions=sessions, threads=threads, pin=pin,
                    batch_size=batch_size, progress=report)))
            except GraphoptError as exc:
                run.paired_errors.append(f"against {entries[0].name}: {exc}")
    return run
