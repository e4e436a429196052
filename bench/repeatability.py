"""How repeatable is ``graphopt bench``? Run the same benchmark N times and compare the runs.

Each round benchmarks the model once on every backend (interleaved, so slow drift of the
machine affects all backends alike); every run builds fresh runners, ``--sessions`` of them
(default: ``graphopt bench``'s), with the run's budget split over them, so the figures describe
the method ``graphopt bench`` uses. For each backend the script reports:

- the run medians: min, max, spread ``max/min - 1`` and their coefficient of variation;
- ``pairs_in_ci``: over all ordered pairs of runs (i, j), i != j, the share where the median
  of run i lies inside the 95% bootstrap CI of run j's median (two-level over the sessions
  when there are several). If the runs measured the same
  quantity and the CIs were calibrated this would be high (the CI of a median covers the true
  median 95% of the time; two independent medians fall in each other's CI less often, roughly
  83% of pairs for CIs of equal width);
- ``pairs_ci_overlap``: the share of unordered pairs whose CIs overlap;
- ``mean_ci_halfwidth_rel``: the CIs' mean half width relative to the median.

A low ``pairs_in_ci`` with small CIs means run-to-run variation (compilation, memory layout,
other load on the machine) is larger than the within-run sampling error that the CI
describes: compare single runs with that in mind. Each run also records how many cores other
processes kept busy meanwhile (``other_cores_busy``, from /proc/stat minus this process's CPU
time): on a shared machine they are the usual cause of run-to-run spread, so the figures are
repeated for the quiet runs only (other load at most ``BACKGROUND_LOAD_WARNING`` cores).

Usage::

    .venv/bin/python bench/repeatability.py      # zoo:squeezenet on ort-cpu and openvino-cpu
    .venv/bin/python bench/repeatability.py --repeats 10 --duration 0.5 --sessions 1 \\
        --model zoo:resnet50 --backend ort-cpu,openvino-cpu:f32 --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from graphopt.backends.benchmark import (
    BACKGROUND_LOAD_WARNING,
    DEFAULT_SESSIONS,
    cpu_clocks,
    other_cores_busy,
)
from graphopt.backends.registry import parse_backend_list
from graphopt.backends.timing import TimingConfig
from graphopt.harness.benchmark import benchmark

__all__ = ["repeat", "summarize_runs", "main"]

logger = logging.getLogger("graphopt.bench.repeatability")

DEFAULT_MODEL = "zoo:squeezenet"
DEFAULT_BACKENDS = "ort-cpu,openvino-cpu"
DEFAULT_REPEATS = 10
DEFAULT_DURATION = 0.5
DEFAULT_MIN_ITERATIONS = 30


def repeat(model: str, backends: str, *, repeats: int, config: TimingConfig,
           sessions: int = DEFAULT_SESSIONS, threads: int | None = None) -> dict[str, list[dict]]:
    """``repeats`` rounds of one benchmark per backend; per backend, each run's key figures."""
    specs = parse_backend_list(backends)
    runs: dict[str, list[dict]] = {str(spec): [] for spec in specs}
    for round_index in range(repeats):
        for spec in specs:
            before = cpu_clocks()
            result = benchmark(model, spec, config=config, sessions=sessions, threads=threads,
                               energy="none", concurrent_seconds=0)
            after = cpu_clocks()
            stats = result.stats
            runs[str(spec)].append({
                "round": round_index,
                "precision": result.precision,
                "n": stats.n,
                "sessions": stats.n_groups,
                "session_medians_us": [run.stats.p50 for run in result.timing.sessions],
                "median_us": stats.p50,
                "ci_low_us": stats.median_ci_low,
                "ci_high_us": stats.median_ci_high,
                "cv": stats.cv,
                "compile_seconds": result.compile_seconds,
                "other_cores_busy": other_cores_busy(before, after),
            })
            logger.info("round %d %s: median %.1f us [%.1f, %.1f]", round_index, spec,
                        stats.p50, stats.median_ci_low, stats.median_ci_high)
    return runs


def summarize_runs(runs: list[dict]) -> dict:
    """Repeatability figures of one backend's runs (definitions in the module docstring)."""
    medians = [r["median_us"] for r in runs]
    ordered = [(a, b) for a, b in itertools.permutations(runs, 2)]
    inside = sum(b["ci_low_us"] <= a["median_us"] <= b["ci_high_us"] for a, b in ordered)
    unordered = list(itertools.combinations(runs, 2))
    overlap = sum(
        a["ci_low_us"] <= b["ci_high_us"] and b["ci_low_us"] <= a["ci_high_us"]
        for a, b in unordered
    )
    halfwidths = [(r["ci_high_us"] - r["ci_low_us"]) / 2 / r["median_us"] for r in runs]
    return {
        "runs": len(runs),
        "median_min_us": min(medians),
        "median_max_us": max(medians),
        "median_spread": max(medians) / min(medians) - 1,
        "median_cv": statistics.stdev(medians) / statistics.mean(medians) if len(runs) > 1 else 0,
        "pairs_in_ci": inside / len(ordered) if ordered else None,
        "pairs_in_ci_count": f"{inside}/{len(ordered)}",
        "pairs_ci_overlap": overlap / len(unordered) if unordered else None,
        "mean_ci_halfwidth_rel": statistics.mean(halfwidths),
        "mean_within_run_cv": statistics.mean(r["cv"] for r in runs),
        "other_cores_busy_max": max((r["other_cores_busy"] or 0.0) for r in runs),
    }


def _table(summaries: dict[str, dict], runs: dict[str, list[dict]], which: str) -> Table:
    table = Table(title=f"repeatability of the median latency: {which}", title_justify="left")
    for column in ("backend", "precision", "runs", "median ms min-max", "spread", "CV of medians",
                   "CI half-width", "medians in other runs' CI", "CIs overlap", "max other load"):
        table.add_column(column)
    for name, s in summaries.items():
        table.add_row(
            name, runs[name][0]["precision"], str(s["runs"]),
            f"{s['median_min_us'] / 1e3:.3f}-{s['median_max_us'] / 1e3:.3f}",
            f"{s['median_spread']:.1%}", f"{s['median_cv']:.1%}",
            f"{s['mean_ci_halfwidth_rel']:.1%}",
            f"{s['pairs_in_ci']:.0%} ({s['pairs_in_ci_count']})", f"{s['pairs_ci_overlap']:.0%}",
            f"{s['other_cores_busy_max']:.2f} cores",
        )
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--backend", default=DEFAULT_BACKENDS)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION,
                        help="minimum seconds of timed inference per run")
    parser.add_argument("--min-iterations", type=int, default=DEFAULT_MIN_ITERATIONS)
    parser.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS,
                        help="runner sessions per run, as `graphopt bench --sessions`")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write runs and summaries here")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.repeats < 2:
        raise SystemExit("--repeats must be >= 2 to compare runs")
    if args.sessions < 1:
        raise SystemExit("--sessions must be >= 1")
    config = TimingConfig(min_iterations=args.min_iterations, min_seconds=args.duration,
                          warmup_max_seconds=max(1.0, 2 * args.duration))
    start = time.perf_counter()
    runs = repeat(args.model, args.backend, repeats=args.repeats, config=config,
                  sessions=args.sessions, threads=args.threads)
    summaries = {name: summarize_runs(r) for name, r in runs.items()}
    quiet_runs = {name: [r for r in rs if (r["other_cores_busy"] or 0.0) <= BACKGROUND_LOAD_WARNING]
                  for name, rs in runs.items()}
    quiet = {name: summarize_runs(rs) for name, rs in quiet_runs.items() if len(rs) >= 2}
    report = {
        "model": args.model,
        "repeats": args.repeats,
        "sessions": args.sessions,
        "timing_config": {"min_iterations": args.min_iterations, "min_seconds": args.duration},
        "wall_seconds": time.perf_counter() - start,
        "summaries": summaries,
        "quiet_summaries": quiet,
        "quiet_threshold_cores": BACKGROUND_LOAD_WARNING,
        "runs": runs,
    }
    console = Console()
    console.print(_table(summaries, runs, "all runs"))
    if quiet:
        console.print(_table(quiet, runs, f"runs with other load <= {BACKGROUND_LOAD_WARNING}"
                                          " cores"))
    console.print(f"{args.model}, {args.repeats} rounds of {args.sessions} session(s),"
                  f" {report['wall_seconds']:.0f} s")
    if args.json is not None:
        from graphopt.cli.formatting import write_json_atomically

        write_json_atomically(args.json, report)
        console.print(f"written to {args.json}")
    return report


if __name__ == "__main__":
    main()
