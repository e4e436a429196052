"""``graphopt optimize``: run a pipeline on a model, verify it, save it, report what changed."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphopt import __version__
from graphopt.atomic import os_error_text
from graphopt.budget import Budget
from graphopt.cli.app import DebugOption, app, console, err_console, one_line, set_debug
from graphopt.cli.formatting import human_count, json_ready, write_json_atomically
from graphopt.errors import GraphoptError, OutputError, UnsupportedModelError
from graphopt.input_shapes import (
    defaulted_warning,
    fix_input_shapes,
    parse_shapes,
    shapes_text,
    used_shapes,
)
from graphopt.model_io import (
    resolve_model,
    save_model,
    source_file,
    stored_size_bytes,
    zoo_name,
)
from graphopt.output_paths import check_output_paths, data_files, model_files
from graphopt.pass_context import PassContext
from graphopt.pipeline import DEFAULT_PRESET, Pipeline, PipelineReport
from graphopt.run_data import resolve_run_data

__all__ = ["optimize", "build_report"]


def _default_output(model: str) -> Path:
    name = zoo_name(model)
    if name is not None:
        return Path(f"{name}.opt.onnx")
    path = Path(model)
    return path.with_name(f"{path.stem}.opt.onnx")


def build_report(model: str, output: Path, report: PipelineReport, input_size: int,
                 latency=None) -> dict:
    """The JSON report: input, output, passes, fidelity, accuracy, budget, latency."""
    def side(cost, size):
        return {"nodes": cost.nodes, "params": cost.params, "macs": cost.macs,
                "weight_bytes": cost.weight_bytes, "size_bytes": size}

    return {
        "graphopt_version": __version__,
        "command": "optimize",
        "model": model,
        "output_path": str(output),
        "input": side(report.input_cost, input_size),
        "output": side(report.output_cost, stored_size_bytes(output)),
        "passes": [record.to_dict() for record in report.passes],
        "fidelity": report.fidelity.to_dict() if report.fidelity else None,
        **report.to_dict(),
        "latency": latency.to_dict() if latency is not None else None,
    }


def _stats_text(stats: dict[str, int]) -> str:
    shown = [f"{k} {v}" for k, v in stats.items() if v]
    return ", ".join(shown) if shown else "no change"


def _sqnr(fidelity) -> str:
    return "inf" if math.isinf(fidelity.sqnr_db) else f"{fidelity.sqnr_db:.1f}"


def _fidelity_cells(record) -> list[str]:
    if record.fidelity is None or record.step_fidelity is None:
        return ["-", "-"]
    return [f"{record.step_fidelity.max_rel:.1e}", _sqnr(record.fidelity)]


def _print_table(report: PipelineReport, verified: bool) -> None:
    """One row per pass with the model after it (the first row is the input), then what
    each pass changed. "step rel" is against the model before the pass, "SQNR dB" against
    the input; lossy passes are marked with *."""
    table = Table(title="passes", title_justify="left")
    accuracy = report.accuracy_before is not None
    columns = ["pass", "s", "nodes", "MACs", "weights"]
    if verified:
        columns += ["step rel", "SQNR dB"]
    if accuracy:
        columns.append("acc %")
    for column in columns:
        table.add_column(column, justify="left" if column == "pass" else "right", no_wrap=True)
    start = report.input_cost
    first = ["input", "", str(start.nodes), human_count(start.macs),
             human_count(start.weight_bytes, "B")]
    first += ["", ""] if verified else []
    first += [f"{report.accuracy_before:.2f}"] if accuracy else []
    table.add_row(*first)
    for record in report.passes:
        after = record.after
        row = [record.name + ("" if record.lossless else "*"), f"{record.seconds:.3f}",
               str(after.nodes), human_count(after.macs), human_count(after.weight_bytes, "B")]
        if verified:
            row += _fidelity_cells(record)
        if accuracy:
            row.append("" if record.accuracy is None else f"{record.accuracy:.2f}")
        table.add_row(*row)
    console.print(table)
    for record in report.passes:
        console.print(f"[bold]{record.name}[/]: {_stats_text(record.stats)}", highlight=False)


def _print_explanations(report: PipelineReport) -> None:
    quiet = [record.name for record in report.passes if not record.explanations]
    if quiet:
        console.print(f"explain: 0 candidates declined by {', '.join(quiet)}"
                      " (the JSON report lists each pass's explanations)", highlight=False)
    for record in report.passes:
        if not record.explanations:
            continue
        console.print(f"[bold]{record.name}[/]: {len(record.explanations)} candidates declined")
        for line in record.explanations:
            console.print(f"  - {line}", highlight=False, soft_wrap=True, markup=False)


@app.command()
def optimize(
    models: Annotated[list[str], typer.Argument(
        metavar="MODEL", show_default=False,
        help="One or more .onnx files or zoo:NAME (see `graphopt zoo`).")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the result; with several models (or a path ending in /) a"
            " folder that gets NAME.opt.onnx each (default: NAME.opt.onnx beside the input;"
            " for zoo models in the current folder).",
        ),
    ] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", "-p", help="A preset name (see `graphopt passes`).")
    ] = None,
    passes: Annotated[
        str | None,
        typer.Option("--passes", help='A pipeline spec, e.g. "cleanup,fuse(skip=sum_to_add)".'),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the JSON report to this file.")
    ] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip running the model after every pass.")
    ] = False,
    inputs: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            help="Verification data: an .npz (one array per input, optional 'labels'), a folder"
            " of images or zoo:digits:test. Default: a held-out part of --calib, else random.",
        ),
    ] = None,
    calib: Annotated[
        str | None,
        typer.Option(
            "--calib",
            help="Calibration data for data-aware passes: an .npz (one array per input,"
            " leading sample axis, optional 'labels'), a folder of images (see --preprocess)"
            " or zoo:digits.",
        ),
    ] = None,
    preprocess: Annotated[
        str | None,
        typer.Option(
            "--preprocess",
            help="How images become input tensors, e.g. 'size=224,layout=nchw,scale=1/255,"
            "mean=0.485;0.456;0.406,std=0.229;0.224;0.225,order=rgb' (default: the input's"
            " size, 0..1).",
        ),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            "--budget",
            help="Fidelity budget for lossy passes, e.g. 'sqnr>=30,accuracy_drop<=0.5'"
            " (metrics: sqnr>=, cosine>=, top1>=, accuracy_drop<=, max_rel<=).",
        ),
    ] = None,
    on_budget: Annotated[
        str,
        typer.Option("--on-budget", help="stop: a lossy pass that breaks the budget stops the"
                     " run and nothing is written; warn: keep going and say so."),
    ] = "stop",
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Backend that passes measure latency on (ort-cpu, openvino-cpu, ...); when"
            " given, the input and the result are also timed there, paired.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of random data and data splits.")] = 0,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="List every rewrite candidate that was declined and why."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the JSON report on stdout instead of tables.")
    ] = False,
    shape: Annotated[list[str] | None, typer.Option(
        "--shape", metavar="NAME:DIMS",
        help="Fix an input's shape, e.g. data:1x3x224x224 (repeat for several inputs; as"
             " onnxsim --overwrite-input-shape): the result has it, verification and MACs"
             " use it.")] = None,
    debug: DebugOption = False,
) -> None:
    """Rewrite MODEL with a pipeline (the lossless preset by default), verify and save it.

    Every pass is verified against onnxruntime with graph optimizations off unless --no-verify:
    a lossless pass must keep its step (against the model before it) within tolerance, a lossy
    pass (quantize, convert_float ...) the --budget (against the input model). Fidelity is
    measured on data the calibration never saw; with labelled data the table shows top-1
    accuracy after each lossy pass.
    """
    set_debug(debug)
    if len(models) > 1 or (output is not None and os.fspath(output).endswith(("/", os.sep))):
        _optimize_into_folder(models, {**locals()})
        return
    (model,) = models
    if preset and passes:
        raise GraphoptError("give either --preset or --passes, not both")
    if on_budget not in ("stop", "warn"):
        raise GraphoptError(f"--on-budget {on_budget!r}: expected stop or warn")
    if passes is not None and not passes.strip(" ,"):
        raise GraphoptError(f"--passes {passes!r}: no pass given (see `graphopt passes`;"
                            f" without --passes the {DEFAULT_PRESET} preset runs)")
    spec = passes or preset or DEFAULT_PRESET
    pipeline = Pipeline.from_spec(spec) if passes else Pipeline.from_preset(spec)
    fidelity_budget = Budget.parse(budget)
    out_path = output if output is not None else _default_output(model)
    probe = _latency_probe(target) if target else None
    shapes = parse_shapes(shape)
    ir_model = resolve_model(model)
    check_output_paths({"--report": report}, model_output=out_path,
                       reads=[*model_files(model, ir_model), *data_files(inputs),
                              *data_files(calib)])
    input_size = stored_size_bytes(model, ir_model)
    fix_input_shapes(ir_model, shapes)
    used = used_shapes(ir_model)
    if inputs is None and calib is None:
        warning = defaulted_warning(model, used)
        if warning is not None:
            err_console.print(f"warning: {warning} (verification data)", highlight=False,
                              markup=False)
    data = resolve_run_data(ir_model, model, calib=calib, inputs=inputs,
                            preprocess=preprocess, seed=seed)
    context = PassContext(calibration=data.calibration, evaluator=data.evaluator,
                          latency=probe, seed=seed)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=json_output or not console.is_terminal,
    ) as progress:
        task = progress.add_task("optimizing", total=len(pipeline.passes))

        def on_progress(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, description=name)

        try:
            result = pipeline.run(
                ir_model, verify=not no_verify, inputs=data.verification,
                budget=fidelity_budget, on_budget=on_budget, context=context,
                progress=on_progress, source=source_file(model),
            )
        except UnsupportedModelError as exc:
            if no_verify or "onnxruntime cannot run" not in str(exc):
                raise
            custom = sorted(d for d in ir_model.opset_imports if d not in ("", "ai.onnx"))
            why = f" (custom domains: {', '.join(custom)})" if custom else ""
            raise UnsupportedModelError(
                f"{one_line(exc)}; verification runs the model on onnxruntime{why}:"
                " --no-verify optimizes without running it") from exc
        progress.update(task, description="saving")
        save_model(ir_model, out_path)
        latency = None
        if probe is not None:
            progress.update(task, description=f"timing on {target}")
            latency = probe.compare(resolve_model(model), ir_model)
    summary = build_report(model, out_path, result, input_size, latency)
    summary["input_shapes"] = {s.name: s.to_dict() for s in used}
    if report is not None:
        write_json_atomically(report, json_ready(summary))
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", highlight=False, soft_wrap=True, markup=False)
    if json_output:
        typer.echo(json.dumps(json_ready(summary), indent=2))
        return
    _print_table(result, verified=not no_verify)
    if explain:
        _print_explanations(result)
    _print_summary(model, out_path, summary, result, latency)
    if used and inputs is None and calib is None:  # random verification inputs
        console.print(f"input shapes: {shapes_text(used)}", highlight=False, markup=False)
    if report is not None:
        console.print(f"report: {report}", highlight=False)


def _optimize_into_folder(models: list[str], options: dict) -> None:
    """``optimize a.onnx b.onnx -o OUTDIR``: every model into the folder as NAME.opt.onnx
    (reports as NAME.report.json in the --report folder); every path checked first."""
    if options["json_output"]:
        raise GraphoptError("--json prints one report: give one MODEL (or --report DIR)")
    folder = options["output"] if options["output"] is not None else Path(".")
    reports = options["report"]
    names = [zoo_name(m) or Path(m).name.removesuffix(".onnx") for m in models]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise GraphoptError(f"two models would both be written as {twice}.opt.onnx in"
                            f" {folder}: optimize them one at a time")
    plan = [(model, folder / f"{name}.opt.onnx",
             None if reports is None else reports / f"{name}.report.json")
            for model, name in zip(models, names, strict=True)]
    for option, path in (("-o", folder), ("--report", reports)):
        if path is not None and path.exists() and not path.is_dir():
            raise GraphoptError(f"{option} {path}: with several models, a folder")
    # the folder -o names is made (its parent must exist, as for a file); nothing else is
    made = _make_folders([(option, path) for option, path in (("-o", folder),
                                                             ("--report", reports))
                          if path is not None and not path.exists()])
    try:
        for model, out, report in plan:
            check_output_paths({"--report": report}, model_output=out,
                               reads=[*model_files(model), *data_files(options["inputs"]),
                                      *data_files(options["calib"])])
    except GraphoptError:
        for path in reversed(made):
            path.rmdir()
        raise
    for model, out, report in plan:
        optimize(**{**options, "models": [model], "output": out, "report": report})


def _make_folders(folders: list[tuple[str, Path]]) -> list[Path]:
    """Create the output folders of ``optimize A B -o OUTDIR`` after checking, like a file's,
    that their parent exists and is writable; returns the folders made."""
    for option, path in folders:
        check_output_paths({option: path})  # its parent exists and is writable
    made = []
    for option, path in dict.fromkeys(folders):
        if not path.exists():
            try:
                path.mkdir()
            except OSError as exc:
                raise OutputError(f"{option} {path}: {os_error_text(exc)}") from exc
            made.append(path)
    return made


def _latency_probe(target: str):
    """The latency probe of backend ``target`` (checked to be available here)."""
    from graphopt.backends.probe import RunnerLatencyProbe

    return RunnerLatencyProbe(target)


def _print_summary(model: str, out_path: Path, summary: dict, result: PipelineReport,
                   latency) -> None:
    inp, out = summary["input"], summary["output"]
    console.print(
        f"{model} -> {out_path}: nodes {inp['nodes']} -> {out['nodes']}, "
        f"size {human_count(inp['size_bytes'], 'B')} -> {human_count(out['size_bytes'], 'B')}"
        + (f", {result.fidelity.summary()}" if result.fidelity else ", not verified"),
        highlight=False,
    )
    if result.verification_data:
        console.print(f"verified on: {result.verification_data}", highlight=False,
                      markup=False)
    if result.calibration_data:
        console.print(f"calibrated on: {result.calibration_data}", highlight=False,
                      markup=False)
    if result.accuracy_before is not None:
        console.print(
            f"top-1 accuracy on {result.accuracy_data}: {result.accuracy_before:.2f}% ->"
            f" {result.accuracy_after:.2f}%", highlight=False, markup=False)
    if result.budget:
        console.print(f"budget {result.budget}: kept by every lossy pass"
                      if not any("breaks the budget" in w for w in result.warnings)
                      else f"budget {result.budget}: broken (see warnings)", highlight=False)
    if latency is not None:
        console.print(_latency_line(latency), highlight=False, markup=False)


def _latency_line(latency) -> str:
    base, cand = latency.baseline, latency.candidate
    return (
        f"latency on {latency.target}: {base.median_ms:.3g} ms -> {cand.median_ms:.3g} ms,"
        f" speedup {latency.speedup:.3f}x ({latency.confidence:.0%} CI"
        f" {latency.ci_low:.3f}-{latency.ci_high:.3f}): {latency.verdict}"
        + (" - the optimized model is slower here" if latency.verdict == "slower" else "")
    )
