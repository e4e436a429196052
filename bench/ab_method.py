"""Can the paired A/B method be trusted? The three experiments of issue 14, with verdicts.

Every *invocation* below is a fresh Python process (this script runs itself with
``--invoke``) that loads the models, builds the runners and runs one paired measurement
with :func:`graphopt.backends.comparison.compare`, the code ``graphopt bench`` uses for its
speedup column, at ``graphopt bench``'s defaults unless told otherwise (CI target +-2%,
30 s budget, 95% confidence, 3 runner sessions per arm, contention policy ``extend``).
A fresh process is a real repeat: new sessions, new memory layout, new thread placement.

1. **A/A**: a model against itself (two contenders of the same file) on each backend,
   ``--aa-invocations`` times (default 20). An honest 95% CI contains 1.0 in 95% of them.
   Done when: at least 19 of 20 on ``ort-cpu`` and on ``openvino-cpu``. (Even a perfectly
   calibrated 95% interval passes that only with probability 0.74, P(X >= 19 | n=20,
   p=0.95); 17 or fewer, P = 0.016 under calibration, says the CI is too narrow.)
2. **Repeatability**: ``zoo:squeezenet`` against its ``lossless`` output (optimized once and
   saved), ``--repeat-invocations`` times (default 10). Done when: the CV of the speedups is
   at most 3% and the most common verdict occurs in at least 9 of 10.
3. **Real differences**: ``zoo:resnet50`` on ``ort-cpu@threads=1`` against
   ``ort-cpu@threads=2``, and on ``openvino-cpu:f32`` against ``openvino-cpu:bf16`` when the
   CPU has bf16 (``avx512_bf16`` or ``amx_bf16``), ``--real-invocations`` times each
   (default 5). Done when: ``faster``/``slower`` with a CI that excludes 1.0 every time.

Measure on a quiet machine: each invocation records how many cores other processes kept
busy and how many of its segments were contended; the table shows the worst.

Usage::

    .venv/bin/python bench/ab_method.py --json bench/results/ab_method.json
    .venv/bin/python bench/ab_method.py --quick          # smoke test, about 2 minutes
    .venv/bin/python bench/ab_method.py --experiments aa --aa-backends ort-cpu -v
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["invoke", "run_invocation", "main"]

logger = logging.getLogger("graphopt.bench.ab_method")

EXPERIMENTS = ("aa", "repeat", "real")
AA_MODEL = "zoo:squeezenet"
AA_BACKENDS = "ort-cpu,openvino-cpu"
REPEAT_MODEL = "zoo:squeezenet"
REPEAT_BACKEND = "ort-cpu"
REAL_MODEL = "zoo:resnet50"
REAL_CASES = (("ort-cpu@threads=1", "ort-cpu@threads=2"),
              ("openvino-cpu:f32", "openvino-cpu:bf16"))
AA_MIN_CONTAINING = 19 / 20
REPEAT_MAX_CV = 0.03
REPEAT_MIN_AGREEING = 9 / 10
QUICK = {"aa_invocations": 2, "repeat_invocations": 2, "real_invocations": 1, "max_seconds": 3.0}


# -- one invocation (runs in the child process) --------------------------------------------


def invoke(request: dict) -> dict:
    """One paired measurement of ``request["models"]`` x ``request["backends"]``."""
    from graphopt.backends.comparison import compare
    from graphopt.backends.paired import PairedConfig
    from graphopt.harness.pairs import contenders

    config = PairedConfig(**request["config"])
    entries = contenders(request["models"], request["backends"], seed=request["seed"])
    start = time.perf_counter()
    run = compare(entries, config, sessions=request["sessions"], threads=request["threads"],
                  pin=request["pin"])
    result = run.result
    (comparison,) = result.comparisons
    return {
        **comparison.to_dict(),
        "stop_reason": result.stop_reason,
        "stop_detail": result.stop_detail,
        "rounds_used": result.rounds_used,
        "rounds_run": result.rounds_run,
        "sessions": result.sessions,
        "contended_segments": result.contended_segments,
        "segments": len(result.segments),
        "contention_fallback": result.contention_fallback,
        "background_cores_busy": result.background_cores_busy,
        "medians_us": [arm.stats.p50 for arm in result.arms],
        "precisions": run.precisions,
        "thread_settings": [{k: v for k, v in s.items()
                             if "thread" in k or "pinning" in k or "streams" in k}
                            for s in run.settings],
        "seconds": time.perf_counter() - start,
        "warnings": result.warnings,
    }


def run_invocation(request: dict) -> dict:
    """Run :func:`invoke` in a fresh process; its result, or ``{"error": ...}``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--invoke", json.dumps(request)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


# -- the experiments (parent process) ------------------------------------------------------


def _request(models, backends, args) -> dict:
    config = {"confidence": args.confidence, "max_seconds": args.max_seconds, "seed": 0}
    if args.ci_target is not None:
        config["ci_target"] = args.ci_target
    return {"models": list(models), "backends": list(backends), "config": config,
            "sessions": args.sessions, "threads": args.threads, "pin": args.pin, "seed": 0}


def _repeat(label: str, request: dict, times: int) -> list[dict]:
    """``times`` invocations of ``request``: same inputs, a new seed for the block order and
    the bootstrap each time (so no two invocations share a schedule)."""
    runs = []
    for index in range(times):
        run = run_invocation({**request, "config": {**request["config"], "seed": index}})
        runs.append(run)
        if "error" in run:
            logger.warning("%s %d/%d failed: %s", label, index + 1, times, run["error"])
        else:
            logger.info("%s %d/%d: %.4f [%.4f, %.4f] %s (%s, %d rounds, %.1f s, other load"
                        " %.2f)", label, index + 1, times, run["speedup"], run["ci_low"],
                        run["ci_high"], run["verdict"], run["stop_reason"], run["rounds_used"],
                        run["seconds"], run["background_cores_busy"] or 0.0)
    return runs


def _ok(runs: list[dict]) -> list[dict]:
    return [r for r in runs if "error" not in r]


def aa_experiment(args) -> dict:
    out = {}
    for backend in filter(None, args.aa_backends.split(",")):
        runs = _repeat(f"A/A {backend}", _request([args.aa_model, args.aa_model], [backend], args),
                       args.aa_invocations)
        good = _ok(runs)
        containing = sum(r["ci_low"] <= 1.0 <= r["ci_high"] for r in good)
        out[backend] = {
            "runs": runs,
            "invocations": len(runs),
            "failed": len(runs) - len(good),
            "containing_one": containing,
            "passed": bool(good) and len(good) == len(runs)
            and containing >= math.ceil(AA_MIN_CONTAINING * len(runs)),
        }
    return out


def repeat_experiment(args, lossless_path: Path) -> dict:
    request = _request([args.repeat_model, str(lossless_path)], [args.repeat_backend], args)
    runs = _repeat("repeatability", request, args.repeat_invocations)
    good = _ok(runs)
    speedups = [r["speedup"] for r in good]
    cv = statistics.stdev(speedups) / statistics.mean(speedups) if len(speedups) > 1 else None
    verdicts = collections.Counter(r["verdict"] for r in good)
    verdict, agreeing = verdicts.most_common(1)[0] if verdicts else (None, 0)
    passed = (len(good) == len(runs) and cv is not None and cv <= REPEAT_MAX_CV
              and agreeing >= math.ceil(REPEAT_MIN_AGREEING * len(runs)))
    return {"runs": runs, "invocations": len(runs), "failed": len(runs) - len(good),
            "speedup_cv": cv, "verdicts": dict(verdicts), "most_common_verdict": verdict,
            "agreeing": agreeing, "passed": passed}


def has_bf16() -> bool:
    from graphopt.backends.environment import capture_environment

    flags = capture_environment()["cpu"].get("flags") or {}
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def real_experiment(args) -> dict:
    out = {}
    for baseline, candidate in REAL_CASES:
        name = f"{baseline} vs {candidate}"
        if "bf16" in candidate and not has_bf16():
            out[name] = {"skipped": "this CPU has no bf16 (avx512_bf16 / amx_bf16)"}
            continue
        runs = _repeat(name, _request([args.real_model], [baseline, candidate], args),
                       args.real_invocations)
        good = _ok(runs)
        found = sum(r["verdict"] != "no detectable difference" for r in good)
        out[name] = {"runs": runs, "invocations": len(runs), "failed": len(runs) - len(good),
                     "found": found, "passed": bool(runs) and found == len(runs)}
    return out


def lossless_model(folder: Path, model: str) -> Path:
    """``model`` through the lossless pipeline, saved to ``folder``."""
    import graphopt

    optimized, _ = graphopt.optimize(model, "lossless")
    return graphopt.save_model(optimized, folder / "lossless.onnx")


# -- report --------------------------------------------------------------------------------


def _max_load(runs: list[dict]) -> str:
    loads = [r["background_cores_busy"] for r in _ok(runs) if r["background_cores_busy"]
             is not None]
    contended = sum(r["contended_segments"] for r in _ok(runs))
    segments = sum(r["segments"] for r in _ok(runs))
    return f"{max(loads, default=0.0):.2f} cores, {contended}/{segments} segments contended"


def _stops(runs: list[dict]) -> str:
    counts = collections.Counter(r["stop_reason"] for r in _ok(runs))
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def _half_widths(runs: list[dict]) -> str:
    widths = [r["half_width"] for r in _ok(runs)]
    return f"+-{statistics.median(widths):.1%}" if widths else "-"


def _mark(passed: bool) -> str:
    return "[green]PASS[/]" if passed else "[red]FAIL[/]"


def report(console: Console, results: dict, quick: bool) -> list[tuple[str, str, bool]]:
    """Print the tables; return the done-when criteria as (criterion, measured, passed)."""
    criteria = []
    if "aa" in results:
        table = Table(title="1. A/A: the same model against itself", title_justify="left")
        for column in ("backend", "invocations", "CI contains 1.0", "median CI half-width",
                       "verdicts", "stopped by", "other load (worst)"):
            table.add_column(column)
        for backend, r in results["aa"].items():
            good = _ok(r["runs"])
            verdicts = collections.Counter(x["verdict"] for x in good)
            table.add_row(backend, f"{len(good)} (+{r['failed']} failed)" if r["failed"]
                          else str(len(good)), f"{r['containing_one']}/{r['invocations']}",
                          _half_widths(r["runs"]), ", ".join(f"{k} {v}" for k, v in
                                                             verdicts.items()),
                          _stops(r["runs"]), _max_load(r["runs"]))
            criteria.append((f"A/A on {backend}: CI contains 1.0 in >= 19/20",
                             f"{r['containing_one']}/{r['invocations']}", r["passed"]))
        console.print(table)
    if "repeat" in results:
        r = results["repeat"]
        good = _ok(r["runs"])
        table = Table(title="2. Repeatability: squeezenet against its lossless output",
                      title_justify="left")
        for column in ("invocation", "speedup", "CI", "verdict", "rounds", "stopped by",
                       "other load"):
            table.add_column(column)
        for index, x in enumerate(r["runs"], start=1):
            if "error" in x:
                table.add_row(str(index), "failed", x["error"], "", "", "", "")
                continue
            table.add_row(str(index), f"{x['speedup']:.4f}",
                          f"{x['ci_low']:.4f}-{x['ci_high']:.4f}", x["verdict"],
                          str(x["rounds_used"]), x["stop_reason"],
                          f"{x['background_cores_busy'] or 0.0:.2f}")
        console.print(table)
        cv = r["speedup_cv"]
        console.print(f"speedup CV {cv:.2%} over {len(good)} invocations; verdicts {r['verdicts']}"
                      if cv is not None else "speedup CV: too few invocations")
        criteria.append(("repeatability: speedup CV <= 3%",
                         "-" if cv is None else f"{cv:.2%}",
                         cv is not None and cv <= REPEAT_MAX_CV and not r["failed"]))
        criteria.append(("repeatability: same verdict in >= 9/10",
                         f"{r['agreeing']}/{r['invocations']} {r['most_common_verdict']}",
                         r["agreeing"] >= math.ceil(REPEAT_MIN_AGREEING * r["invocations"])))
    if "real" in results:
        table = Table(title="3. Real differences on zoo:resnet50", title_justify="left")
        for column in ("comparison", "invocation", "speedup", "CI", "verdict", "precisions",
                       "stopped by", "other load"):
            table.add_column(column)
        for name, r in results["real"].items():
            if "skipped" in r:
                table.add_row(name, "-", "skipped", r["skipped"], "", "", "", "")
                criteria.append((f"real difference {name}", "skipped: " + r["skipped"], True))
                continue
            for index, x in enumerate(r["runs"], start=1):
                if "error" in x:
                    table.add_row(name, str(index), "failed", x["error"], "", "", "", "")
                    continue
                table.add_row(name, str(index), f"{x['speedup']:.4f}",
                              f"{x['ci_low']:.4f}-{x['ci_high']:.4f}", x["verdict"],
                              " vs ".join(x["precisions"]), x["stop_reason"],
                              f"{x['background_cores_busy'] or 0.0:.2f}")
            criteria.append((f"real difference {name}: CI excludes 1.0 every time",
                             f"{r['found']}/{r['invocations']}", r["passed"]))
        console.print(table)
    table = Table(title="done when" + (" (--quick: too few invocations to judge)" if quick
                                       else ""), title_justify="left")
    for column in ("criterion", "measured", ""):
        table.add_column(column)
    for criterion, measured, passed in criteria:
        table.add_row(criterion, measured, _mark(passed))
    console.print(table)
    return criteria


# -- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS),
                        help=f"comma-separated subset of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2/2/1 invocations, 3 s budgets (figures not meaningful)")
    parser.add_argument("--aa-invocations", type=int, default=20)
    parser.add_argument("--repeat-invocations", type=int, default=10)
    parser.add_argument("--real-invocations", type=int, default=5)
    parser.add_argument("--aa-model", default=AA_MODEL)
    parser.add_argument("--aa-backends", default=AA_BACKENDS)
    parser.add_argument("--repeat-model", default=REPEAT_MODEL)
    parser.add_argument("--repeat-backend", default=REPEAT_BACKEND)
    parser.add_argument("--real-model", default=REAL_MODEL)
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="paired time budget per invocation (default: graphopt bench's)")
    parser.add_argument("--ci-target", type=float, default=None)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--sessions", type=int, default=None,
                        help="runner sessions per arm (default: graphopt bench's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write every invocation here")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per invocation")
    parser.add_argument("--invoke", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if key == "max_seconds" and args.max_seconds is not None:
                continue
            setattr(args, key, value)
    return args


def _defaults(args) -> None:
    from graphopt.backends.comparison import DEFAULT_SESSIONS
    from graphopt.backends.paired import DEFAULT_MAX_SECONDS

    if args.max_seconds is None:
        args.max_seconds = DEFAULT_MAX_SECONDS
    if args.sessions is None:
        args.sessions = DEFAULT_SESSIONS


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.invoke is not None:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(invoke(json.loads(args.invoke))))
        return {}
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _defaults(args)
    chosen = [e.strip() for e in args.experiments.split(",") if e.strip()]
    unknown = set(chosen) - set(EXPERIMENTS)
    if unknown:
        raise SystemExit(f"unknown experiments {sorted(unknown)} (known: {', '.join(EXPERIMENTS)})")
    from graphopt.backends.environment import capture_environment

    start = time.perf_counter()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="graphopt-ab-") as folder:
        if "aa" in chosen:
            results["aa"] = aa_experiment(args)
        if "repeat" in chosen:
            results["repeat"] = repeat_experiment(args, lossless_model(Path(folder),
                                                                       args.repeat_model))
        if "real" in chosen:
            results["real"] = real_experiment(args)
    console = Console()
    criteria = report(console, results, args.quick)
    wall = time.perf_counter() - start
    pin = {None: "runtime default", True: "on", False: "off"}[args.pin]
    console.print(f"budget {args.max_seconds:g} s per invocation, {args.sessions} sessions per arm,"
                  f" threads {args.threads or 'runtime default'}, pinning {pin}; {wall:.0f} s")
    data = {
        "settings": {k: v for k, v in vars(args).items() if k != "invoke"},
        "wall_seconds": wall,
        "results": results,
        "criteria": [{"criterion": c, "measured": m, "passed": p} for c, m, p in criteria],
        "environment": capture_environment(),
    }
    if args.json is not None:
        from graphopt.cli.formatting import write_json_atomically

        data["settings"]["json"] = str(args.json)
        write_json_atomically(args.json, data)
        console.print(f"written to {args.json}")
    return data


if __name__ == "__main__":
    main()
