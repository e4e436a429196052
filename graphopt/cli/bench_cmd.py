"""``graphopt bench``: latency, throughput, energy and fidelity of models on backends.

With several models, each backend has its own baseline, the first model (or ``--baseline``) on
that backend, and every other model on it is also measured paired against it; one model on
several backends is compared with itself on the first backend (:mod:`graphopt.backends.paired`,
groups in :func:`graphopt.harness.pairs.baseline_groups`): all runners alive,
short blocks in a balanced random order, a bootstrap CI of the speedup and a verdict, shown
in the table's speedup column and written to the JSON (``paired`` and each result's
``speedup_vs_baseline``). The measuring is :func:`graphopt.harness.pairs.run_pairs`; this
module parses and prints.

``--suite FILE`` runs a benchmark suite instead (:mod:`graphopt.harness.suite`) into a
resumable result store (``--results``, :mod:`graphopt.harness.store`) with a progress bar of
cells done, left and the time remaining.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphopt import __version__, atomic
from graphopt.backends.benchmark import DEFAULT_SESSIONS, ENERGY_PREFERENCES
from graphopt.backends.energy import MEASURED_SOURCES
from graphopt.backends.paired import (
    CONTENTION_POLICIES,
    DEFAULT_CI_TARGET,
    DEFAULT_MAX_SECONDS,
    STOP_CI_TARGET,
)
from graphopt.backends.registry import DEFAULT_BACKEND, check_available, parse_backend_list
from graphopt.budget import Budget
from graphopt.cli.app import (
    DebugOption,
    Interrupted,
    app,
    console,
    err_console,
    set_debug,
    verbose_requested,
)
from graphopt.cli.bench_shapes import shaped_models
from graphopt.cli.bench_table import by_backend, compact_table, speedup_cell, speedup_lines
from graphopt.errors import BackendUnavailableError, GraphoptError
from graphopt.input_shapes import defaulted_warning, parse_shapes, shapes_text
from graphopt.output_paths import check_output_paths, data_files, model_files

__all__ = ["bench"]

logger = logging.getLogger(__name__)

ENERGY_CHOICES = ENERGY_PREFERENCES
DEFAULT_DURATION = 2.0
DEFAULT_MIN_ITERATIONS = 50
SUITE_RESULTS_DIR = "bench/results"
_ENERGY_UNITS = ((1.0, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ"))


def _ms(us: float) -> str:
    if math.isnan(us):
        return "-"
    ms = us / 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _joules(joules: float) -> str:
    scale, unit = next(((s, u) for s, u in _ENERGY_UNITS if joules >= s), _ENERGY_UNITS[-1])
    return f"{joules / scale:.3g} {unit}"


def _energy(result) -> str:
    reading = result.energy
    if reading is None:
        return "-"
    joules = reading.joules_per_inference
    if joules is None:
        return f"n/a ({reading.source})"
    return f"{_joules(joules)} ({reading.source})"


def _fidelity(result) -> str:
    fidelity = result.fidelity
    mark = "[green]ok[/]" if result.fidelity_ok else "[yellow]WARN[/]"
    return f"{mark} cos {fidelity.cosine:.6f} rel {fidelity.max_rel:.1e}"


def _table(results: list, speedups: dict[int, object] | None = None,
           baselines: set[int] = frozenset()) -> Table:
    table = Table(title="graphopt bench", title_justify="left")
    columns = ["model", "backend", "precision", "p50 ms", "p99 ms", "median 95% CI ms"]
    if speedups is not None:
        columns.append("speedup vs baseline")
    columns += ["sync inf/s", "concurrent inf/s", "energy / inference", "fidelity vs fp32"]
    for column in columns:
        table.add_column(column, justify="right" if column.endswith(("ms", "/s")) else "left")
    for index in by_backend(results):
        r = results[index]
        s = r.stats
        row = [escape(r.model), escape(r.backend), r.precision, _ms(s.p50), _ms(s.p99),
               f"{_ms(s.median_ci_low)}-{_ms(s.median_ci_high)}"]
        if speedups is not None:
            row.append(speedup_cell(speedups.get(index), index in baselines, verbose=True))
        row += [_rate(r.throughput_sync), _rate(r.throughput_concurrent), _energy(r),
                _fidelity(r)]
        table.add_row(*row)
    return table


def _startup_table(results: list) -> Table:
    table = Table(title="startup and settings", title_justify="left")
    for column in ("model", "backend", "compile s", "first inference ms", "other load",
                   "settings"):
        table.add_column(column, justify="right" if column.endswith(("ms", " s")) else "left")
    for r in results:
        load = r.background_cores_busy
        table.add_row(escape(r.model), escape(r.backend), f"{r.compile_seconds:.3f}",
                      f"{r.first_inference_ms:.2f}", "-" if load is None else f"{load:.2f} cores",
                      escape(_settings_summary(r.settings)))
    return table


def _settings_summary(settings: dict) -> str:
    keys = ("version", "providers", "graph_optimization", "intra_op_threads", "thread_pinning",
            "device_name", "performance_hint", "inference_precision_hint", "num_streams",
            "inference_num_threads", "enable_cpu_pinning", "engine_cache")
    return ", ".join(f"{k}={settings[k]}" for k in keys if settings.get(k) not in (None, ""))


def _check_backends(specs) -> None:
    for spec in specs:
        ok, reason = check_available(spec.name)
        if not ok:
            raise BackendUnavailableError(f"{spec.name} is not available here: {reason}")


@app.command()
def bench(
    ctx: typer.Context,
    models: Annotated[list[str] | None, typer.Argument(
        metavar="MODEL...", help="Model files or zoo:NAME (see `graphopt zoo`).",
        show_default=False)] = None,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", metavar="NAME,...",
        help=r"Comma-separated backends, NAME\[:precision]\[@key=value,...] (see `graphopt"
             f" backends`). Default {DEFAULT_BACKEND}.")] = None,
    duration: Annotated[float, typer.Option(
        help="Minimum seconds of timed inference per model and backend (also the concurrent"
             " phase).", min=0.0)] = DEFAULT_DURATION,
    min_iterations: Annotated[int, typer.Option(
        help="Minimum timed inferences per model and backend.", min=1)] = DEFAULT_MIN_ITERATIONS,
    sessions: Annotated[int, typer.Option(
        help="Fresh runner sessions the timed budget is split over; the median's CI then"
             " resamples sessions too, since each session shifts every latency it produces."
             " 1 measures one session.", min=1)] = DEFAULT_SESSIONS,
    batch_size: Annotated[int, typer.Option(help="Inferences per call.", min=1)] = 1,
    threads: Annotated[int | None, typer.Option(
        help="CPU threads for backends with a thread setting (default: the runtime's);"
             " 1 runs single-threaded.", min=1)] = None,
    pin: Annotated[bool | None, typer.Option(
        "--pin/--no-pin",
        help="Bind intra-op threads to cores (ORT: the calling thread and the pool threads;"
             " OpenVINO: ENABLE_CPU_PINNING). Default: the runtime's placement.")] = None,
    paired: Annotated[bool, typer.Option(
        "--paired/--no-paired",
        help="With several model/backend pairs, also measure every pair against the first"
             " (the baseline) paired: all runners alive, alternating blocks, a CI of the"
             " speedup and a verdict.")] = True,
    ci_target: Annotated[float, typer.Option(
        help="Paired phase: stop once every speedup CI is within +- this share of the"
             " speedup.", min=0.0)] = DEFAULT_CI_TARGET,
    max_seconds: Annotated[float, typer.Option(
        help="Paired phase: time budget in seconds (warm-up included) when the CI target"
             " is not reached.", min=0.0)] = DEFAULT_MAX_SECONDS,
    budget: Annotated[str | None, typer.Option(
        help="Fidelity budget every result is judged on, e.g. 'sqnr>=30,cosine>=0.999' (the"
             " type optimize uses; default: the tolerance of the precision each backend ran).")
    ] = None,
    confidence: Annotated[float, typer.Option(
        help="Paired phase: confidence level of the speedup CI and its verdict (0.5-0.999).",
        min=0.5, max=0.999)] = 0.95,
    contention: Annotated[str, typer.Option(
        help="Paired phase, when other processes use our cores: extend (drop those rounds,"
             " measure on), pause (drop them, wait for quiet) or flag (keep, report).")
    ] = "extend",
    energy: Annotated[str, typer.Option(
        help="auto (RAPL/NVML/Jetson rails when readable, else measured CPU time x modelled"
             " power), rapl, nvml, jetson, estimate (no meter; 'model' is its older name) or"
             " none. The cost model's compute-bound lower bound is reported beside.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the random benchmark inputs.")] = 0,
    shape: Annotated[list[str] | None, typer.Option(
        "--shape", metavar="NAME:DIMS",
        help="Input shape for dynamic dims, e.g. data:1x3x224x224 (repeat for several"
             " inputs). Timing, cost and energy use it; without it dynamic dims get defaults"
             " (a warning names them).")] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", metavar="MODEL",
        help="The model every other one is compared with, on each backend (default: the"
             " first MODEL).", show_default=False)] = None,
    json_file: Annotated[Path | None, typer.Option(
        "--json", metavar="FILE|-",
        help="Write every result (raw samples included) to this JSON file; - prints it on"
             " stdout (tables go to stderr).")] = None,
    suite: Annotated[Path | None, typer.Option(
        help="Run a benchmark suite (TOML, see bench/suites/) instead of MODEL...: models x"
             " pipelines x backends x options, each cell stored in --results as it ends; a"
             " second run skips finished cells. Timing comes from the suite file.")] = None,
    results: Annotated[Path | None, typer.Option(
        help="With --suite: the JSON-lines result store (default"
             f" {SUITE_RESULTS_DIR}/SUITE.jsonl).")] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="With --suite: measure the cells that failed before again.")
    ] = False,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="local|auto|ADDRESS",
        help="With --suite: run each cell as a Ray task (the ray extra), one timing cell per"
             " node at a time (custom resource timing_slot=1), a GPU for GPU backends;"
             " results stream into --results. local starts Ray here, auto joins the running"
             " cluster. Default: the models built in a process pool (--workers), then the"
             " cells timed one after another in this process.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="With --suite: processes that build the models' pipelines (before any timing;"
             " 0 or 1: in this process). Default: one per core.", min=0)] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Every column (p99, throughput, energy, speedup CI, cosine),"
        " the startup table, energy notes and graphopt's progress log.")] = False,
    debug: DebugOption = False,
) -> None:
    """Measure models on backends: latency percentiles with a CI of the median, sync and
    concurrent throughput, energy per inference (with its source) and fidelity against the
    fp32 onnxruntime reference. Several models: on each backend the first MODEL (or
    --baseline) is the baseline, the others are also measured paired against it there
    (speedup with a CI and a verdict); one model on several backends: against the first.
    With --suite: a whole suite into a resumable result store."""
    from graphopt.backends.paired import PairedConfig
    from graphopt.harness.benchmark import timing_config
    from graphopt.harness.pairs import run_pairs

    set_debug(debug)
    if (suite is not None or results is not None or retry_failed or ray is not None
            or workers is not None):
        if suite is None:
            raise GraphoptError("--results, --retry-failed, --ray and --workers go with"
                                " --suite")
        if ray is not None and workers is not None:
            raise GraphoptError("--workers is the process pool's; with --ray each cell is a"
                                " Ray task")
        if models or json_file is not None:
            raise GraphoptError("--suite runs the models of the suite file: give no MODEL"
                                " and no --json (results go to --results)")
        _run_suite(suite, results, retry_failed=retry_failed, ray_address=ray,
                   workers=workers)
        return
    if not models:
        raise GraphoptError("give MODEL... to measure, or --suite FILE")
    if baseline is not None and baseline not in models:
        raise GraphoptError(f"--baseline {baseline}: not one of the MODELs"
                            f" ({', '.join(models)})")
    if energy not in ENERGY_CHOICES:
        raise GraphoptError(f"--energy {energy!r}: expected one of {', '.join(ENERGY_CHOICES)}")
    if contention not in CONTENTION_POLICIES:
        raise GraphoptError(f"--contention {contention!r}: expected one of"
                            f" {', '.join(CONTENTION_POLICIES)}")
    fidelity_budget = Budget.parse(budget) if budget else None
    if not math.isfinite(duration):
        raise GraphoptError(f"--duration {duration}: expected a finite number of seconds")
    for option, value in (("--ci-target", ci_target), ("--max-seconds", max_seconds)):
        if value <= 0:
            raise GraphoptError(f"{option} must be > 0, got {value:g}")
    paired_config = PairedConfig(ci_target=ci_target, max_seconds=max_seconds,
                                 confidence=confidence,
                                 contention=contention, seed=seed)
    specs = parse_backend_list(backend or [DEFAULT_BACKEND])
    _check_backends(specs)
    json_stdout = json_file is not None and os.fspath(json_file) == "-"
    if json_stdout:  # the JSON alone on stdout, what a person reads on stderr
        ctx.with_resource(_human_output_on_stderr())
    check_output_paths({"--json": None if json_stdout else json_file},
                       reads=[path for model in models for path in model_files(model)])
    config = timing_config(duration, min_iterations)
    shaped = shaped_models(models, parse_shapes(shape), batch_size=batch_size,
                           scratch=ctx.with_resource(atomic.scratch_dir()))
    _print_shapes(shaped)

    def on_failure(failure: dict) -> None:
        err_console.print(f"[red]failed:[/] {escape(failure['model'])} on"
                          f" {escape(failure['backend'])}: {escape(failure['error'])}",
                          highlight=False, soft_wrap=True)

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[phase]}"),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        run = run_pairs(
            shaped.paths, specs, paired=paired_config if paired else None,
            task=functools.partial(_task, progress), on_failure=on_failure,
            config=config, sessions=sessions, batch_size=batch_size, threads=threads, pin=pin,
            energy=energy, seed=seed, concurrent_seconds=duration, budget=fidelity_budget,
            baseline=None if baseline is None else shaped.paths[models.index(baseline)],
        )
    results, failures, paired_error = run.results, run.failures, run.paired_error
    results = [dataclasses.replace(r, model=shaped.labels.get(r.model, r.model))
               for r in results]
    failures = shaped.relabel(failures)
    if paired_error is not None:
        err_console.print(f"[red]paired phase failed:[/] {escape(paired_error)}",
                          highlight=False, soft_wrap=True)
    speedups = run.speedups()
    verbose = verbose or verbose_requested()
    if results:
        baselines = run.baselines()
        if verbose:
            console.print(_table(results, speedups, baselines=baselines))
            console.print(_startup_table(results))
        else:
            console.print(compact_table(results, speedups, baselines=baselines))
        _print_notes(results, sessions, verbose=verbose)
        if run.pairings:
            _print_paired_notes([p.benchmark for p in run.pairings], shaped)
        for line in speedup_lines(results, run):
            console.print(escape(line), highlight=False)
        if not verbose:
            console.print("more columns, startup and energy notes: --verbose; every figure:"
                          " --json FILE", highlight=False)
    if json_file is not None:
        from graphopt.cli.formatting import json_ready, write_json_atomically

        result_dicts = [r.to_dict() for r in results]
        for index, data in enumerate(result_dicts):
            comparison = run.comparison_of(index)
            data["speedup_vs_baseline"] = None if comparison is None else comparison.to_dict()
        report = json_ready({
            "graphopt_version": __version__,
            "command": "bench",
            "timing_config": dataclasses.asdict(config),
            "sessions": sessions,
            "threads": threads,
            "pin": pin,
            "results": result_dicts,
            "input_shapes": {model: {s.name: s.to_dict() for s in used}
                             for model, used in shaped.shapes.items()},
            # one paired measurement per baseline (per backend with several models)
            "paired": (None if not run.pairings else
                       [shaped.relabel(p.benchmark.to_dict()) for p in run.pairings]),
            "paired_error": paired_error,
            "failures": failures,
        })
        if json_stdout:
            typer.echo(json.dumps(report, indent=2))
        else:
            write_json_atomically(json_file, report)
            console.print(f"results written to {json_file}")
    if failures:
        raise GraphoptError(f"{len(failures)} of {len(models) * len(specs)} benchmarks failed:"
                            f" {failures[0]['model']} on {failures[0]['backend']}:"
                            f" {failures[0]['error']}")
    if paired_error is not None:
        raise GraphoptError(f"paired phase failed: {paired_error}")


@contextlib.contextmanager
def _human_output_on_stderr() -> Iterator[None]:
    """Tables and notes on stderr while stdout carries the JSON (``--json -``)."""
    previous = console._file  # None: follow sys.stdout as it is at each print
    console.file = sys.stderr
    try:
        yield
    finally:
        console.file = previous


@contextlib.contextmanager
def _task(progress: Progress, description: str) -> Iterator:
    """One progress bar for the duration of a unit of work; yields its ``report``."""
    task = progress.add_task(description, total=1.0, phase="loading")
    try:
        yield lambda phase, fraction: progress.update(task, completed=fraction, phase=phase)
    finally:
        progress.remove_task(task)


def _print_shapes(shaped) -> None:
    for model, used in shaped.shapes.items():
        if used and model in shaped.shown:
            console.print(f"shapes: {escape(model)}: {escape(shapes_text(used))}",
                          highlight=False)
        warning = defaulted_warning(model, used)
        if warning is not None:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def _print_paired_notes(pairings: list, shaped) -> None:
    """How the speedups were measured (once), then each baseline's stopping point."""
    for pairing in pairings:
        for warning in pairing.result.warnings:
            err_console.print(f"[yellow]warning:[/] paired: {escape(warning)}",
                              highlight=False)
    result = pairings[0].result
    bases = ", ".join(shaped.relabel(p.names[0]) for p in pairings)
    console.print(
        f"speedup: baseline time / time (baseline: {bases}), measured paired:"
        f" {result.sessions} runner session(s) per pair alive, blocks in a balanced random"
        f" order, {result.config.confidence:.0%} bootstrap CI over"
        f" {'sessions, then rounds' if result.sessions > 1 else 'rounds'}.",
        highlight=False,
    )
    for pairing in pairings:
        result = pairing.result
        how = "reached" if result.stop_reason == STOP_CI_TARGET else "not reached"
        where = f"against {shaped.relabel(pairing.names[0])}: " if len(pairings) > 1 else ""
        console.print(f"{where}CI target +-{result.config.ci_target:.1%} {how}:"
                      f" {result.stop_detail}.", highlight=False)


def _print_energy_notes(results: list) -> None:
    """Per result: how the headline energy was obtained and the compute-bound figure beside."""
    for r in results:
        reading, bound = r.energy, r.energy_bound
        if reading is None and bound is None:
            continue
        parts = []
        if reading is not None and reading.joules_per_inference is not None:
            how = (f"{reading.power_watts:.2f} W per busy CPU, {reading.power_origin}"
                   if reading.power_watts is not None else reading.note)
            parts.append(f"{_joules(reading.joules_per_inference)} {reading.source} ({how})")
        if bound is not None and bound.joules_per_inference is not None:
            parts.append(f"compute-bound lower bound {_joules(bound.joules_per_inference)}"
                         f" ({bound.source}, not a headline)")
        if r.energy_fallback and (reading is None or reading.source not in MEASURED_SOURCES):
            parts.append(f"not measured: {'; '.join(r.energy_fallback)}")
        console.print(f"energy: {r.model} on {r.backend}: {'; '.join(parts)}",
                      highlight=False, soft_wrap=True)


def _print_notes(results: list, sessions: int, *, verbose: bool = True) -> None:
    for r in results:
        for warning in r.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(r.model)} on {escape(r.backend)}:"
                              f" {escape(warning)}", highlight=False)
    if verbose:
        _print_energy_notes(results)
    console.print(
        "latency: median/p99 of synchronous calls after steady-state warm-up, pooled over"
        f" {sessions} runner session{'s' if sessions > 1 else ''}; CI: 95% bootstrap of the"
        f" median{' resampling sessions, then calls within them' if sessions > 1 else ''};"
        " fidelity: against onnxruntime fp32 (optimizations off) on"
        " the same inputs, judged at the precision run.", highlight=False,
    )


def _run_suite(path: Path, results: Path | None, *, retry_failed: bool,
               ray_address: str | None = None, workers: int | None = None) -> None:
    """``graphopt bench --suite``: plan, resume, measure with a progress bar, summarise."""
    from rich.progress import MofNCompleteColumn, TimeRemainingColumn

    from graphopt.harness.store import ResultStore
    from graphopt.harness.suite import load_suite, plan, run_suite

    suite = load_suite(path)
    store = ResultStore(results or Path(SUITE_RESULTS_DIR) / f"{path.stem}.jsonl")
    reads = [path]
    for model in suite.models:
        with contextlib.suppress(GraphoptError):  # an unreadable model becomes a skipped cell
            reads += model_files(model.spec)
        reads += data_files(model.calib)
    check_output_paths({"--results": store.path}, reads=reads)
    cells = plan(suite)
    finished = store.finished(retry_failed=retry_failed)
    resumed = sum(c.cell.key in finished for c in cells)
    console.print(f"suite {suite.name}: {len(cells)} cells, {resumed} finished before,"
                  f" results in {store.path}", highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("cells, {task.fields[left]} left"), TimeRemainingColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task(f"suite {suite.name}", total=len(cells), completed=resumed,
                                 left=len(cells) - resumed)
        counted = [resumed]

        def on_start(planned) -> None:
            progress.update(task, description=escape(planned.cell.name))

        def on_built(jobs_done: int, jobs: int, label: str) -> None:
            progress.update(task, description=escape(
                f"building pipelines: {jobs_done}/{jobs} models ({label} done)"))

        def on_cell(planned, status: str) -> None:
            if status == "resumed":
                return
            counted[0] += 1
            progress.update(task, completed=counted[0], left=len(cells) - counted[0])
            if status == "failed":
                err_console.print(f"[red]failed:[/] {escape(planned.cell.name)}",
                                  highlight=False, soft_wrap=True)

        try:
            if ray_address is not None:
                from graphopt.harness.ray_runner import run_suite_on_ray

                run = run_suite_on_ray(suite, store, address=ray_address, cells=cells,
                                       on_start=on_start, on_cell=on_cell,
                                       retry_failed=retry_failed)
            else:
                progress.update(task, description="building pipelines")
                run = run_suite(suite, store, cells=cells, on_start=on_start,
                                on_cell=on_cell, on_built=on_built,
                                retry_failed=retry_failed, workers=workers)
        except Interrupted:
            err_console.print(f"{counted[0]} of {len(cells)} cells are in {store.path}; the"
                              " same command resumes the suite", highlight=False)
            raise
    _print_suite_summary(store, cells)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(run.counts.items()))
    console.print(f"suite {suite.name}: {counts}; results in {store.path}", highlight=False)
    if run.counts.get("failed"):
        raise GraphoptError(f"{run.counts['failed']} of {run.total} suite cells failed"
                            f" (errors in {store.path})")


def _print_suite_summary(store, cells) -> None:
    latest = store.latest()
    table = Table(title="suite results", title_justify="left")
    for column in ("model", "pipeline", "backend", "status", "p50 ms", "fidelity vs fp32"):
        table.add_column(column, justify="right" if column.endswith("ms") else "left")
    reasons: dict[str, int] = {}
    for planned in cells:
        record = latest.get(planned.cell.key, {})
        status = record.get("status", "not run")
        p50 = fidelity = "-"
        if status == "ok":
            result = record["result"]
            p50 = _ms(result["stats"]["p50"])
            fidelity = (f"{'ok' if result['fidelity_ok'] else 'WARN'} cos"
                        f" {result['fidelity']['cosine']:.6f}")
        elif status in ("skipped", "failed"):
            reason = record.get("reason") or record.get("error", "")
            reasons[reason] = reasons.get(reason, 0) + 1
            if status == "skipped":
                continue
        table.add_row(escape(planned.cell.model), escape(planned.cell.pipeline),
                      escape(planned.cell.backend), status, p50, fidelity)
    console.print(table)
    for reason, count in reasons.items():
        console.print(f"{count} cell{'s' if count > 1 else ''}: {escape(reason)}",
                      highlight=False, soft_wrap=True)
