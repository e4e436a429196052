"""``graphopt tune``: search pipelines and backend precisions for the fastest configuration
within a fidelity budget (:mod:`graphopt.harness.tune`); this module parses and prints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from graphopt.backends.registry import DEFAULT_BACKEND
from graphopt.cli.app import DebugOption, Interrupted, app, console, err_console, set_debug
from graphopt.cli.formatting import json_ready, write_json_atomically
from graphopt.errors import GraphoptError
from graphopt.model_io import zoo_name
from graphopt.output_paths import check_output_paths, data_files, model_files

__all__ = ["tune"]

_STATUS_STYLE = {"measured": "green", "baseline": "cyan", "over budget": "yellow",
                 "failed": "red", "same as": "dim", "not tried": "dim"}


def _default_output(model: str) -> Path:
    name = zoo_name(model)
    if name is not None:
        return Path(f"{name}.tuned.onnx")
    path = Path(model)
    return path.with_name(f"{path.stem}.tuned.onnx")


def _sqnr(value) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.1f}"


def _table(result) -> Table:
    """Timed candidates, best first, then the Pareto front, then the rest by objective;
    candidates not timed are summed up in the explanation lines instead."""
    table = Table(title=f"graphopt tune: {result.objective} within {result.budget}",
                  title_justify="left")
    energy = result.objective == "energy"
    columns = ["", "candidate", "ran", "status", "SQNR dB", "speedup [CI]", "ms"]
    if energy:
        columns.append("energy / inference")
    for column in columns:
        table.add_column(column, justify="right" if column in ("SQNR dB", "ms") else "left")
    shown = [i for i, t in enumerate(result.trials)
             if t.status in ("baseline", "measured", "over budget")]
    order = sorted(shown, key=lambda i: (
        i != result.best, not result.trials[i].pareto, result.trials[i].status != "measured",
        result.trials[i].objective_value(result.objective) or math.inf,
        -(result.trials[i].sqnr_db or -math.inf)))
    for index in order:
        t = result.trials[index]
        mark = "best" if index == result.best else ("front" if t.pareto else "")
        speed = "-" if t.speedup is None else (
            f"{t.speedup:.2f}x [{t.speedup_ci[0]:.2f}-{t.speedup_ci[1]:.2f}]")
        row = [mark, escape(t.candidate.name), t.precision or "-",
               f"[{_STATUS_STYLE.get(t.status, '')}]{t.status}[/]", _sqnr(t.sqnr_db), speed,
               "-" if t.median_ms is None else f"{t.median_ms:.3g}"]
        if energy:
            row.append("-" if t.energy_j is None
                       else f"{t.energy_j * 1e3:.3g} mJ ({t.energy_source})")
        table.add_row(*row)
    return table


def _report(result, json_file: Path | None) -> None:
    console.print(_table(result))
    for line in result.explain():
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    if result.written:
        best = result.best_trial
        console.print(f"written: {result.output} (run it on {best.candidate.backend})",
                      highlight=False, markup=False, soft_wrap=True)
    if json_file is not None:
        write_json_atomically(json_file, json_ready(result.to_dict()))
        console.print(f"report: {json_file}", highlight=False, soft_wrap=True)


@app.command()
def tune(
    model: Annotated[str, typer.Argument(help="An .onnx file or zoo:NAME (see `graphopt zoo`).")],
    budget: Annotated[str, typer.Option(
        help="Fidelity budget the result must meet on the target, e.g. 'sqnr>=25' or"
             " 'accuracy_drop<=0.5' (metrics: sqnr>=, cosine>=, top1>=, accuracy_drop<=,"
             " max_rel<=).")],
    target: Annotated[str, typer.Option(
        help=r"Backend to deploy on, NAME\[:precision]\[@key=value,...]; without a precision"
             " each precision it accepts is tried too (OpenVINO: default, f32, bf16, f16).")
    ] = DEFAULT_BACKEND,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where the best model found so far is written (always, also"
              " on Ctrl-C and at the time limit; default NAME.tuned.onnx).")] = None,
    time_limit: Annotated[str | None, typer.Option(
        "--time", help="Search time limit, e.g. 90s, 10m, 1h (default: try every"
                       " candidate).")] = None,
    calib: Annotated[str | None, typer.Option(
        help="Calibration data: an .npz, a folder of images (see --preprocess) or"
             " zoo:digits; a held-out part verifies unless --inputs.")] = None,
    inputs: Annotated[str | None, typer.Option(
        help="Verification data (default: held out from --calib, else random).")] = None,
    preprocess: Annotated[str | None, typer.Option(
        help="How images become input tensors, e.g. 'size=224,mean=0.485;0.456;0.406,"
             "std=0.229;0.224;0.225'.")] = None,
    objective: Annotated[str, typer.Option(
        help="latency: the highest paired speedup over ort-cpu fp32; energy: the least"
             " energy per inference (the best available source: RAPL/NVML/Jetson rails, else"
             " estimate:time-x-power, labelled).")] = "latency",
    judge: Annotated[str, typer.Option(
        help="outputs: judge the graph outputs; logits: judge the logits a final Softmax"
             " reads (a saturated softmax makes output SQNR depend only on top-1 flips); the"
             " Softmax is put back in the written model.")] = "outputs",
    pipeline: Annotated[list[str] | None, typer.Option(
        "--pipeline", metavar="SPEC",
        help="Search these pipeline specs or presets instead of the default space (repeat the"
             " option; 'none' is the model as given).")
    ] = None,
    probe_seconds: Annotated[float, typer.Option(
        help="Seconds of each paired latency measurement against the baseline.", min=0.5)
    ] = 10.0,
    sessions: Annotated[int, typer.Option(
        help="Runner sessions per side of each paired measurement.", min=1)] = 2,
    threads: Annotated[int | None, typer.Option(
        help="CPU threads for backends with a thread setting (default: the runtime's).",
        min=1)] = None,
    pin: Annotated[bool | None, typer.Option(
        "--pin/--no-pin", help="Bind intra-op threads to cores.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of random data and data splits.")] = 0,
    json_file: Annotated[Path | None, typer.Option(
        "--json", help="Write every trial, the Pareto front and the choice to this JSON"
                       " file.")] = None,
    debug: DebugOption = False,
) -> None:
    """Search pipelines (lossless, int8 with calibrators and mixed precision, fp16, prune,
    lowrank, ...) and backend precisions for the lowest latency (or energy) on --target whose
    fidelity, judged on the target's own outputs, meets --budget. The best model found so
    far is always written; the table and --json explain the choice."""
    from graphopt.harness.tune import Tuner, parse_duration

    set_debug(debug)
    seconds = None if time_limit is None else parse_duration(time_limit)
    out = output if output is not None else _default_output(model)
    check_output_paths({"--json": json_file}, model_output=out,
                       reads=[*model_files(model), *data_files(calib), *data_files(inputs)])

    def on_trial(trial) -> None:
        detail = trial.reason or ("" if trial.speedup is None else f"{trial.speedup:.2f}x")
        err_console.print(f"{escape(trial.candidate.name)}: {trial.status}"
                          f"{', ' + escape(detail) if detail else ''}"
                          f" (SQNR {_sqnr(trial.sqnr_db)} dB)", highlight=False,
                          soft_wrap=True)

    tuner = Tuner(model, out, target=target, budget=budget, objective=objective,
                  time_limit=seconds, calib=calib, inputs=inputs, preprocess=preprocess,
                  pipelines=pipeline, probe_seconds=probe_seconds, sessions=sessions,
                  threads=threads, pin=pin, seed=seed, judge=judge, on_trial=on_trial)
    try:
        result = tuner.run()
    except Interrupted:
        if tuner.result.written:
            _report(tuner.result, json_file)
        raise
    if not result.written:
        raise GraphoptError("tune wrote nothing")
    _report(result, json_file)
