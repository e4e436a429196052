"""Benchmark suites: models x pipelines x backends x options, declared in TOML, run into a store.

A suite file (``bench/suites/*.toml``)::

    name = "zoo"
    models = ["zoo:resnet50", {model = "zoo:digits", calib = "zoo:digits"},
              "../../../shared/models/superres-10/super-resolution-10.onnx"]
    pipelines = ["none", "lossless", "fp16", "int8", "prune30"]
    backends = ["ort-cpu", "openvino-cpu"]
    options = [{threads = 1}, {threads = 2}]    # optional: one axis more, default [{}]

    [pipeline_specs]                            # names that are not presets
    prune30 = "cleanup,fuse,prune(ratio=0.3)"

    [timing]                                    # every field optional, see SuiteTiming
    duration = 1.0
    sessions = 3

Model paths are relative to the suite file. A pipeline is ``none`` (the model as given), a
preset (:mod:`graphopt.passes`) or a name from ``[pipeline_specs]``; its passes are checked
when the suite is planned: a pass that is not registered (not written yet), an unknown option
or a backend not available here makes the cell ``skipped`` with the reason recorded, tried
again by the next run, never a crash.

:func:`run_suite` measures every cell the store (:class:`~graphopt.harness.store.ResultStore`)
does not hold yet, in two phases:

1. Build: every model's pipelines, run once per model, seed and batch size (verified, a
   broken fidelity budget warned, not fatal; the passes pipelines start with run once, see
   :mod:`graphopt.pipeline_tree`), models in parallel in a process pool
   (:mod:`graphopt.harness.suite_build`), each result saved to a scratch folder.
2. Measure: after the last build has ended, the cells one at a time in this process with
   :func:`graphopt.harness.benchmark.benchmark`, fidelity against the original fp32 model on
   the same inputs (its outputs computed once per model). So no timing cell shares a core
   with another cell or with a build. Each cell's record is appended as soon as it is
   measured, so a stopped sweep resumes where it stopped (a build interrupted is redone).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from graphopt import __version__
from graphopt.atomic import scratch_dir
from graphopt.backends.registry import check_available, parse_backend
from graphopt.backends.timing import TimingConfig
from graphopt.errors import GraphoptError, error_text
from graphopt.harness.benchmark import (
    ReferenceOutputs,
    benchmark,
    benchmark_feed,
    reference_outputs,
    timing_config,
)
from graphopt.harness.store import Cell, ResultStore, model_digest
from graphopt.harness.suite_build import BuildJob, BuiltCallback, build_all, build_job
from graphopt.model_io import resolve_model, zoo_name
from graphopt.pass_api import get_preset, pass_names
from graphopt.spec import build_passes, parse_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["NO_PIPELINE", "SuiteTiming", "SuiteModel", "Suite", "PlannedCell", "SuiteRun",
           "load_suite", "plan", "run_suite", "measure_cell", "start_run"]

logger = logging.getLogger(__name__)

NO_PIPELINE = "none"
"""The pipeline name for the model as given."""
_TOP_KEYS = {"name", "description", "models", "pipelines", "backends", "options",
             "pipeline_specs", "timing", "budget"}


@dataclasses.dataclass(frozen=True)
class SuiteTiming:
    """How each cell is measured (the ``[timing]`` table; ``options`` entries override)."""

    duration: float = 1.0
    min_iterations: int = 20
    sessions: int = 1
    concurrent_seconds: float = 0.0
    energy: str = "estimate"
    seed: int = 0
    batch_size: int = 1
    threads: int | None = None
    pin: bool | None = None

    def config(self) -> TimingConfig:
        return timing_config(self.duration, self.min_iterations)


@dataclasses.dataclass(frozen=True)
class SuiteModel:
    """A model as the suite names it (``label``), where it is read from, its calibration."""

    label: str
    spec: str
    calib: str | None = None


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    models: tuple[SuiteModel, ...]
    pipelines: tuple[str, ...]
    backends: tuple[str, ...]
    options: tuple[Mapping[str, object], ...] = ({},)
    pipeline_specs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timing: SuiteTiming = SuiteTiming()
    budget: str | None = None
    description: str = ""


@dataclasses.dataclass
class PlannedCell:
    """A cell to measure, or ``skip`` saying why it cannot be measured here."""

    cell: Cell
    model: SuiteModel
    timing: SuiteTiming
    skip: str | None = None


@dataclasses.dataclass
class SuiteRun:
    """What a run did: counts by status (``resumed``: finished by an earlier run)."""

    total: int
    counts: dict[str, int] = dataclasses.field(default_factory=dict)

    def count(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1


CellCallback = Callable[[PlannedCell, str], None]
"""``on_cell(cell, status)`` after each cell: ``ok``, ``failed``, ``skipped`` or ``resumed``."""
StartCallback = Callable[[PlannedCell], None]


def _error(path: Path, message: str) -> GraphoptError:
    return GraphoptError(f"suite {path}: {message}")


def _list(data: Mapping, key: str, path: Path) -> list:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise _error(path, f"'{key}' must be a non-empty list")
    return value


def _timing(table: Mapping, path: Path, where: str) -> dict:
    fields = {f.name for f in dataclasses.fields(SuiteTiming)}
    unknown = sorted(set(table) - fields)
    if unknown:
        raise _error(path, f"{where}: unknown setting(s) {', '.join(unknown)}"
                           f" (settings: {', '.join(sorted(fields))})")
    return dict(table)


def _model(entry, folder: Path, path: Path) -> SuiteModel:
    if isinstance(entry, str):
        entry = {"model": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
        raise _error(path, f"a model is a string or a table with 'model', got {entry!r}")
    if set(entry) - {"model", "calib"}:
        raise _error(path, f"model {entry['model']}: unknown key(s)"
                           f" {', '.join(sorted(set(entry) - {'model', 'calib'}))}")
    label = entry["model"]

    def located(spec: str | None) -> str | None:
        if spec is None or zoo_name(spec) is not None or os.path.isabs(spec):
            return spec
        return os.path.normpath(folder / spec)

    return SuiteModel(label, located(label), located(entry.get("calib")))


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and check a suite file (every mistake is one readable error)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise _error(path, f"cannot read it ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise _error(path, f"not valid TOML ({exc})") from exc
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _error(path, f"unknown key(s) {', '.join(unknown)}"
                           f" (keys: {', '.join(sorted(_TOP_KEYS))})")
    options = data.get("options", [{}])
    if not isinstance(options, list) or not all(isinstance(o, dict) for o in options):
        raise _error(path, "'options' must be a list of tables")
    timing = SuiteTiming(**_timing(data.get("timing", {}), path, "[timing]"))
    for index, entry in enumerate(options):
        _timing(entry, path, f"options[{index}]")
    specs = data.get("pipeline_specs", {})
    if not isinstance(specs, dict) or not all(isinstance(v, str) for v in specs.values()):
        raise _error(path, "[pipeline_specs] maps names to spec strings")
    return Suite(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        models=tuple(_model(m, path.parent, path) for m in _list(data, "models", path)),
        pipelines=tuple(str(p) for p in _list(data, "pipelines", path)),
        backends=tuple(str(b) for b in _list(data, "backends", path)),
        options=tuple(options),
        pipeline_specs=dict(specs),
        timing=timing,
        budget=data.get("budget"),
    )


def _pipeline_spec(suite: Suite, name: str) -> tuple[str, str | None]:
    """(expanded spec, reason it cannot run here or ``None``)."""
    if name == NO_PIPELINE:
        return "", None
    spec = suite.pipeline_specs.get(name)
    if spec is None:
        if get_preset(name) is None:
            return name, (f"pipeline {name!r} is neither 'none', a preset nor in"
                          " [pipeline_specs]")
        spec = name
    try:
        items = parse_spec(spec)
    except GraphoptError as exc:
        return spec, f"pipeline {name!r}: {exc}"
    expanded = ",".join(n + (f"({','.join(f'{k}={v}' for k, v in o.items())})" if o else "")
                        for n, o in items)
    missing = [n for n, _ in items if n not in pass_names()]
    if missing:
        return expanded, (f"pipeline {name!r} needs pass(es) {', '.join(missing)}, not"
                          " registered in this graphopt")
    try:
        build_passes(expanded)
    except GraphoptError as exc:
        return expanded, f"pipeline {name!r}: {exc}"
    return expanded, None


def _backend(text: str) -> tuple[str, str | None]:
    try:
        spec = parse_backend(text)
    except GraphoptError as exc:
        return text, str(exc)
    ok, reason = check_available(spec.name)
    return str(spec), None if ok else f"{spec.name} is not available here: {reason}"


def plan(suite: Suite) -> list[PlannedCell]:
    """Every cell of the suite, models outermost, then pipelines, backends, options."""
    pipelines = [(name, *_pipeline_spec(suite, name)) for name in suite.pipelines]
    backends = [_backend(text) for text in suite.backends]
    cells = []
    for model in suite.models:
        try:
            digest, model_reason = model_digest(model.spec), None
        except GraphoptError as exc:
            digest, model_reason = f"unreadable:{model.spec}", str(exc)
        for name, spec, pipeline_reason in pipelines:
            for backend, backend_reason in backends:
                for options in suite.options:
                    timing = dataclasses.replace(suite.timing, **options)
                    cell = Cell(model=model.label, pipeline=name, pipeline_spec=spec,
                                backend=backend, timing=dataclasses.asdict(timing),
                                model_hash=digest)
                    cells.append(PlannedCell(cell, model, timing,
                                             model_reason or pipeline_reason or backend_reason))
    return cells


def _record(planned: PlannedCell, status: str, suite: Suite, **fields) -> dict:
    return {"key": planned.cell.key, "status": status, "suite": suite.name,
            "cell": planned.cell.to_dict(),
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            **fields}


Done = Callable[..., None]
"""``done(planned, status, **record_fields)``: store a cell's end (see :func:`start_run`)."""


def start_run(
    suite: Suite,
    store: ResultStore,
    cells: Sequence[PlannedCell],
    *,
    on_cell: CellCallback | None = None,
    retry_failed: bool = False,
) -> tuple[SuiteRun, Done, list[PlannedCell]]:
    """The bookkeeping every runner shares: the resume rule (cells the store finished are
    ``resumed``, :meth:`ResultStore.finished`), ``skipped`` cells recorded (a repeat of the
    same reason is not appended again), and ``done`` to record each measured cell as it
    ends. Returns the run, ``done`` and the cells left to measure, in plan order."""
    latest = store.latest()
    finished = store.finished(retry_failed=retry_failed)
    run = SuiteRun(total=len(cells))

    def done(planned: PlannedCell, status: str, **fields) -> None:
        previous = latest.get(planned.cell.key)
        repeat = (status == "skipped" and previous is not None
                  and previous.get("status") == "skipped"
                  and previous.get("reason") == fields.get("reason"))
        if status != "resumed" and not repeat:
            store.append(_record(planned, status, suite, **fields))
        run.count(status)
        if on_cell is not None:
            on_cell(planned, status)

    todo = []
    for planned in cells:
        if planned.cell.key in finished:
            done(planned, "resumed")
        elif planned.skip is not None:
            done(planned, "skipped", reason=planned.skip)
        else:
            todo.append(planned)
    return run, done, todo


def _jobs(suite: Suite, todo: Sequence[PlannedCell]):
    """The build jobs for ``todo`` (one per model, seed and batch size) and each cell's job
    and pipeline spec, in plan order."""
    jobs: dict[tuple, dict] = {}
    placed = []
    for planned in todo:
        timing = planned.timing
        key = (planned.model.spec, timing.seed, timing.batch_size)
        pipelines = jobs.setdefault(key, {"model": planned.model, "pipelines": {}})["pipelines"]
        pipelines.setdefault(planned.cell.pipeline_spec, planned.cell.pipeline)
        placed.append((key, planned))
    built = {key: BuildJob(label=entry["model"].label, spec=entry["model"].spec,
                           calib=entry["model"].calib,
                           pipelines=tuple(entry["pipelines"].items()), seed=key[1],
                           batch_size=key[2], budget=suite.budget)
             for key, entry in jobs.items()}
    return built, placed


def run_suite(
    suite: Suite,
    store: ResultStore,
    *,
    cells: Sequence[PlannedCell] | None = None,
    on_start: StartCallback | None = None,
    on_cell: CellCallback | None = None,
    on_built: BuiltCallback | None = None,
    retry_failed: bool = False,
    workers: int | None = None,
) -> SuiteRun:
    """Measure every cell of ``suite`` (or ``cells``, from :func:`plan`) that ``store`` has
    not finished, appending a record per cell as it ends (module docstring).
    ``retry_failed`` measures failed cells again (a fixed pass keeps its spec and key).
    ``workers``: build processes (:func:`graphopt.harness.suite_build.build_all`);
    ``on_built`` hears of each model built."""
    cells = plan(suite) if cells is None else list(cells)
    run, done, todo = start_run(suite, store, cells, on_cell=on_cell,
                                retry_failed=retry_failed)
    jobs, placed = _jobs(suite, todo)
    with scratch_dir() as folder:
        built = {}
        for job, outcome in build_all(list(jobs.values()), folder, workers=workers,
                                      on_built=on_built):
            built[job] = outcome
        references: dict[tuple, tuple[dict, ReferenceOutputs]] = {}
        for key, planned in placed:
            job = jobs[key]
            outcome = built[job][planned.cell.pipeline_spec]
            if outcome.error is not None or outcome.path is None:
                done(planned, "failed", error=outcome.error)
                continue
            if on_start is not None:
                on_start(planned)
            try:
                if key not in references:
                    references[key] = _reference(job, outcome.feed)
            except Exception as exc:  # the model as given: its cells fail, the sweep goes on
                done(planned, "failed", error=error_text(exc), pipeline=outcome.summary)
                continue
            feed, reference = references[key]
            _measure(planned, Path(outcome.path), reference, feed, outcome.summary, done)
    return run


def _reference(job: BuildJob, feed: dict | None) -> tuple[dict, ReferenceOutputs]:
    """The feed a job's cells are timed on (its data's, else the benchmark's random one)
    and the original model's outputs on it, computed once for all of them."""
    model = resolve_model(job.spec)
    if feed is None:
        feed = benchmark_feed(model, seed=job.seed, batch_size=job.batch_size,
                              label=job.label)
    return feed, reference_outputs(model, feed)


def _measure(planned: PlannedCell, path: Path, reference, feed, summary: dict,
             done) -> None:
    timing = planned.timing
    try:
        result = benchmark(
            path, planned.cell.backend, reference=reference, inputs=feed,
            label=f"{planned.model.label} [{planned.cell.pipeline}]", config=timing.config(),
            sessions=timing.sessions, batch_size=timing.batch_size, threads=timing.threads,
            pin=timing.pin, energy=timing.energy, seed=timing.seed,
            concurrent_seconds=timing.concurrent_seconds)
    except Exception as exc:  # a runtime's own exception must not end the sweep
        logger.debug("cell %s failed", planned.cell.name, exc_info=True)
        done(planned, "failed", error=error_text(exc), pipeline=summary)
        return
    done(planned, "ok", result=result.to_dict(), pipeline=summary,
         graphopt_version=__version__)


def measure_cell(suite: Suite, planned: PlannedCell) -> tuple[str, dict]:
    """One cell on its own, pipeline included: ``(status, record fields)`` for the ``done``
    of :func:`start_run`, as :func:`run_suite` would store them (``ok`` or ``failed``). For
    runners that measure cells apart, such as a Ray task per cell
    (:mod:`graphopt.harness.ray_runner`); it writes nothing to the store."""
    outcome: list[tuple[str, dict]] = []

    def done(_: PlannedCell, status: str, **fields) -> None:
        outcome.append((status, fields))

    jobs, placed = _jobs(suite, [planned])
    job = jobs[placed[0][0]]
    with scratch_dir() as folder:
        built = build_job(job, folder)[planned.cell.pipeline_spec]
        if built.error is not None or built.path is None:
            return "failed", {"error": built.error}
        try:
            feed, reference = _reference(job, built.feed)
        except Exception as exc:
            return "failed", {"error": error_text(exc), "pipeline": built.summary}
        _measure(planned, Path(built.path), reference, feed, built.summary, done)
    return outcome[0]
