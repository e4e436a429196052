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
does not hold yet: per model and pipeline it runs the pipeline once (verified, a broken
fidelity budget warned, not fatal), saves the result to a scratch folder and benchmarks it on
each backend with :func:`graphopt.harness.benchmark.benchmark`, fidelity against the original
fp32 model on the same inputs. Each cell's record is appended as soon as it is measured, so a
stopped sweep resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from graphopt import __version__
from graphopt.atomic import scratch_dir
from graphopt.backends.registry import check_available, parse_backend
from graphopt.backends.timing import TimingConfig
from graphopt.budget import Budget
from graphopt.calibration import SampleData
from graphopt.errors import GraphoptError, reason_line
from graphopt.harness.benchmark import benchmark, timing_config
from graphopt.harness.store import Cell, ResultStore, model_digest
from graphopt.model_io import (
    model_file,
    resolve_model,
    save_model,
    stored_size_bytes,
    zoo_name,
)
from graphopt.pass_api import get_preset, pass_names
from graphopt.pass_context import PassContext
from graphopt.pipeline import Pipeline
from graphopt.run_data import resolve_run_data
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


def _first_samples(data: SampleData, count: int) -> dict[str, np.ndarray]:
    """The first ``count`` samples of ``data`` as one feed."""
    batches = list(data.subset(np.arange(min(count, data.samples))))
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def _optimized(planned: PlannedCell, suite: Suite,
               folder: Path) -> tuple[Path, dict, dict[str, np.ndarray] | None]:
    """The model file after the cell's pipeline (saved in ``folder``; the input file itself
    for ``none``), a summary of the run, and the benchmark inputs: the first samples of the
    verification data when the model has data (``calib``, ``zoo:digits``), else ``None``
    (seeded random inputs)."""
    model = planned.model
    source = model_file(model.spec)  # zoo models too: materialised in the cache
    loaded = resolve_model(model.spec)
    input_size = stored_size_bytes(source, loaded if zoo_name(model.spec) is None else None)
    summary: dict = {"name": planned.cell.pipeline, "spec": planned.cell.pipeline_spec,
                     "input_size_bytes": input_size}
    seed = planned.timing.seed
    data = resolve_run_data(loaded, model.spec, calib=model.calib, seed=seed)
    feed = None
    if isinstance(data.verification, SampleData) and data.verification.samples:
        feed = _first_samples(data.verification, planned.timing.batch_size)
        summary["benchmark_inputs"] = data.verification.description
    if not planned.cell.pipeline_spec:
        accuracy = None if data.evaluator is None else data.evaluator.accuracy(loaded)
        summary.update(output_size_bytes=input_size, size_ratio=1.0, accuracy_after=accuracy,
                       accuracy_data=None if data.evaluator is None
                       else data.evaluator.description)
        return source, summary, feed
    report = Pipeline.from_spec(planned.cell.pipeline_spec).run(
        loaded, inputs=data.verification, budget=Budget.parse(suite.budget),
        on_budget="warn", context=PassContext(calibration=data.calibration,
                                              evaluator=data.evaluator, seed=seed))
    summary.update(
        passes=[p.name for p in report.passes],
        warnings=list(report.warnings),
        fidelity=None if report.fidelity is None else report.fidelity.to_dict(),
        accuracy_before=report.accuracy_before,
        accuracy_after=report.accuracy_after,
        accuracy_data=report.accuracy_data,
    )
    path = save_model(loaded, folder / "model.onnx")
    summary["output_size_bytes"] = stored_size_bytes(path)
    summary["size_ratio"] = summary["output_size_bytes"] / input_size if input_size else None
    return path, summary, feed


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


def run_suite(
    suite: Suite,
    store: ResultStore,
    *,
    cells: Sequence[PlannedCell] | None = None,
    on_start: StartCallback | None = None,
    on_cell: CellCallback | None = None,
    retry_failed: bool = False,
) -> SuiteRun:
    """Measure every cell of ``suite`` (or ``cells``, from :func:`plan`) that ``store`` has
    not finished, appending a record per cell as it ends (module docstring).
    ``retry_failed`` measures failed cells again (a fixed pass keeps its spec and key)."""
    cells = plan(suite) if cells is None else list(cells)
    run, done, todo = start_run(suite, store, cells, on_cell=on_cell,
                                retry_failed=retry_failed)
    groups: dict[tuple[str, str], list[PlannedCell]] = {}
    for planned in todo:
        groups.setdefault((planned.model.spec, planned.cell.pipeline_spec), []).append(planned)
    for group in groups.values():
        with scratch_dir() as folder:
            try:
                path, summary, feed = _optimized(group[0], suite, folder)
                reference = resolve_model(group[0].model.spec)
            except Exception as exc:  # a pass's own bug must not end the sweep either
                logger.debug("pipeline %s failed", group[0].cell.pipeline, exc_info=True)
                text = str(exc) if isinstance(exc, GraphoptError) else (
                    f"{type(exc).__name__}: {reason_line(exc)}")
                for planned in group:
                    done(planned, "failed", error=f"pipeline: {text}")
                continue
            for planned in group:
                if on_start is not None:
                    on_start(planned)
                _measure(planned, path, reference, feed, summary, done)
    return run


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
    except GraphoptError as exc:
        done(planned, "failed", error=str(exc), pipeline=summary)
        return
    except Exception as exc:  # a runtime's own exception must not end the sweep
        logger.debug("cell %s failed", planned.cell.name, exc_info=True)
        done(planned, "failed", error=f"{type(exc).__name__}: {reason_line(exc)}",
             pipeline=summary)
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

    with scratch_dir() as folder:
        try:
            path, summary, feed = _optimized(planned, suite, folder)
            reference = resolve_model(planned.model.spec)
        except Exception as exc:  # a pass's own bug is the cell's failure
            logger.debug("pipeline %s failed", planned.cell.pipeline, exc_info=True)
            text = str(exc) if isinstance(exc, GraphoptError) else (
                f"{type(exc).__name__}: {reason_line(exc)}")
            return "failed", {"error": f"pipeline: {text}"}
        _measure(planned, path, reference, feed, summary, done)
    return outcome[0]
