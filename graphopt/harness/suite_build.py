"""A suite's models, built before anything is timed: every pipeline of every model.

One :class:`BuildJob` per model (and per seed and batch size among its cells' options) runs
the model's pipelines with :func:`graphopt.pipeline_tree.run_sharing_prefixes`, so the passes
its pipelines start with (``cleanup,fuse``; ``prune`` for ``compress``) run once, and saves
each result into the run's scratch folder. :func:`build_all` runs the jobs in a process pool
(``workers``; 0 or 1: in this process), models in parallel: the build is the longest part of
a suite. Nothing is timed while it runs: :func:`graphopt.harness.suite.run_suite` measures
the cells one at a time after the last job has ended.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from graphopt.budget import Budget
from graphopt.calibration import SampleData
from graphopt.errors import GraphoptError, error_text
from graphopt.model_io import model_file, resolve_model, save_model, stored_size_bytes, zoo_name
from graphopt.pass_context import PassContext
from graphopt.pipeline import Pipeline
from graphopt.pipeline_tree import run_sharing_prefixes
from graphopt.run_data import resolve_run_data

__all__ = ["BuildJob", "Built", "build_job", "build_all", "default_workers"]

logger = logging.getLogger(__name__)

BuiltCallback = Callable[[int, int, str], None]
"""``on_built(jobs done, jobs in all, model label)`` as each job ends."""
BuildFn = Callable[["BuildJob", Path], dict]
"""What a build process runs for one job: :func:`build_job` (tests give others)."""


@dataclasses.dataclass(frozen=True)
class BuildJob:
    """The pipelines to run on one model: ``pipelines`` maps each spec (``""`` for the model
    as given) to the pipeline name its cells use."""

    label: str
    spec: str
    calib: str | None
    pipelines: tuple[tuple[str, str], ...]
    seed: int = 0
    batch_size: int = 1
    budget: str | None = None


@dataclasses.dataclass
class Built:
    """One pipeline's model file (the input file for ``none``), a summary of its run, the
    benchmark feed (``None``: the benchmark's seeded random inputs), or why it failed."""

    path: str | None
    summary: dict
    feed: dict[str, np.ndarray] | None = None
    error: str | None = None


def default_workers() -> int:
    """Build processes when none are asked for: one per core."""
    return max(1, os.cpu_count() or 1)


def _first_samples(data: SampleData, count: int) -> dict[str, np.ndarray]:
    """The first ``count`` samples of ``data`` as one feed."""
    batches = list(data.subset(np.arange(min(count, data.samples))))
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def _failure(exc: Exception) -> str:
    return f"pipeline: {error_text(exc)}"


def _all_failed(job: BuildJob, exc: Exception) -> dict[str, Built]:
    return {spec: Built(None, {"name": name, "spec": spec}, error=_failure(exc))
            for spec, name in job.pipelines}


def build_job(job: BuildJob, folder: str | os.PathLike) -> dict[str, Built]:
    """Run ``job``'s pipelines, saving each model in its own folder under ``folder``; by spec.
    A pipeline that fails is that spec's error (a pass's own bug included)."""
    try:
        return _build(job, Path(folder))
    except Exception as exc:  # the model itself: every pipeline of it fails
        logger.debug("building %s failed", job.label, exc_info=True)
        return _all_failed(job, exc)


def _build(job: BuildJob, folder: Path) -> dict[str, Built]:
    source = model_file(job.spec)  # zoo models too: materialised in the cache
    loaded = resolve_model(job.spec)
    input_size = stored_size_bytes(source, loaded if zoo_name(job.spec) is None else None)
    data = resolve_run_data(loaded, job.spec, calib=job.calib, seed=job.seed)
    feed, inputs_text = None, None
    if isinstance(data.verification, SampleData) and data.verification.samples:
        feed = _first_samples(data.verification, job.batch_size)
        inputs_text = data.verification.description

    def summary(spec: str, name: str) -> dict:
        found = {"name": name, "spec": spec, "input_size_bytes": input_size}
        if inputs_text is not None:
            found["benchmark_inputs"] = inputs_text
        return found

    built: dict[str, Built] = {}
    specs = []
    for spec, name in job.pipelines:
        if not spec:
            accuracy = None if data.evaluator is None else data.evaluator.accuracy(loaded)
            built[spec] = Built(str(source), {
                **summary(spec, name), "output_size_bytes": input_size, "size_ratio": 1.0,
                "accuracy_after": accuracy,
                "accuracy_data": None if data.evaluator is None else data.evaluator.description,
            }, feed)
        else:
            specs.append((spec, name))
    pipelines = [Pipeline.from_spec(spec) for spec, _ in specs]
    context = PassContext(calibration=data.calibration, evaluator=data.evaluator,
                          seed=job.seed)
    runs = run_sharing_prefixes(pipelines, loaded, inputs=data.verification,
                                budget=Budget.parse(job.budget), on_budget="warn",
                                context=context)
    for outcome in runs:
        spec, name = specs[outcome.index]
        if outcome.error is not None or outcome.report is None or outcome.model is None:
            logger.debug("pipeline %s failed", name, exc_info=outcome.error)
            built[spec] = Built(None, summary(spec, name), error=_failure(outcome.error))
            continue
        report = outcome.report
        path = save_model(outcome.model, folder / f"pipeline-{outcome.index}" / "model.onnx")
        output_size = stored_size_bytes(path)
        built[spec] = Built(str(path), {
            **summary(spec, name),
            "passes": [p.name for p in report.passes],
            "warnings": list(report.warnings),
            "fidelity": None if report.fidelity is None else report.fidelity.to_dict(),
            "accuracy_before": report.accuracy_before,
            "accuracy_after": report.accuracy_after,
            "accuracy_data": report.accuracy_data,
            "output_size_bytes": output_size,
            "size_ratio": output_size / input_size if input_size else None,
        }, feed)
    return built


def build_all(jobs: Sequence[BuildJob], folder: str | os.PathLike, *,
              workers: int | None = None, on_built: BuiltCallback | None = None,
              build: BuildFn = build_job) -> Iterator[tuple[BuildJob, dict]]:
    """Every job's ``build`` (:func:`build_job`), each in ``folder/job-N``, yielded as it
    ends: in a pool of ``workers`` processes (default :func:`default_workers`), in this
    process for 0 or 1. A job whose worker died (out of memory, a crash inside a runtime) is
    built again alone in a fresh process, so it fails by itself and the jobs queued with it
    are built. Ctrl-C cancels what has not started."""
    workers = default_workers() if workers is None else workers
    places = [Path(folder) / f"job-{n}" for n in range(len(jobs))]
    if workers <= 1 or len(jobs) <= 1:
        for count, (job, place) in enumerate(zip(jobs, places, strict=True), 1):
            built = build(job, place)
            if on_built is not None:
                on_built(count, len(jobs), job.label)
            yield job, built
        return
    count = 0
    for index, built in _isolating_deaths(jobs, places, min(workers, len(jobs)), build):
        count += 1
        if on_built is not None:
            on_built(count, len(jobs), jobs[index].label)
        yield jobs[index], built


def _isolating_deaths(jobs: Sequence[BuildJob], places: list[Path], workers: int,
                      build: BuildFn) -> Iterator[tuple[int, dict]]:
    """``(job index, built)`` from a pool; the jobs a dead worker took down with it are run
    again one per fresh process, and only one that dies alone too fails."""
    died = yield from _pool_run(jobs, places, range(len(jobs)), workers, build)
    for index in sorted(died):
        again = yield from _pool_run(jobs, places, [index], 1, build)
        if again:
            yield index, _all_failed(jobs[index], GraphoptError(
                "the build process died (out of memory, or a crash inside a runtime),"
                " in the pool and again on its own"))


def _pool_run(jobs: Sequence[BuildJob], places: list[Path], indices: Iterable[int],
              workers: int, build: BuildFn) -> Generator[tuple[int, dict], None, set[int]]:
    """Build ``indices`` in a fresh spawn pool, yielding each result; returns the jobs lost
    to a dead worker (a broken pool fails every job it still held)."""
    spawn = multiprocessing.get_context("spawn")  # onnxruntime's threads do not survive fork
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn)
    died: set[int] = set()
    try:
        futures = {pool.submit(build, jobs[i], places[i]): i for i in indices}
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            try:
                built = future.result()
            except BrokenProcessPool:
                died.add(index)
                continue
            except Exception as exc:  # the result could not come back (it did not pickle)
                built = _all_failed(jobs[index], exc)
            yield index, built
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return died
