"""``graphopt optimize``: run a pipeline on a model, verify it, save it, report what changed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphopt.calibration import check_feed, load_npz
from graphopt.cli.app import DebugOption, app, console, set_debug
from graphopt.cli.formatting import human_count, write_json_atomically
from graphopt.errors import GraphoptError
from graphopt.model_io import (
    ZOO_PREFIX,
    resolve_model,
    save_model,
    stored_size_bytes,
)
from graphopt.pipeline import DEFAULT_PRESET, Pipeline, PipelineReport

__all__ = ["optimize", "build_report"]


def _default_output(model: str) -> Path:
    if model.startswith(ZOO_PREFIX):
        return Path(f"{model[len(ZOO_PREFIX):]}.opt.onnx")
    path = Path(model)
    return path.with_name(f"{path.stem}.opt.onnx")


def build_report(model: str, output: Path, report: PipelineReport, input_size: int) -> dict:
    """The JSON report: input, output, passes, fidelity."""
    def side(cost, size):
        return {"nodes": cost.nodes, "params": cost.params, "macs": cost.macs,
                "size_bytes": size}

    return {
        "model": model,
        "output_path": str(output),
        "input": side(report.input_cost, input_size),
        "output": side(report.output_cost, stored_size_bytes(output)),
        "passes": [record.to_dict() for record in report.passes],
        "fidelity": report.fidelity.to_dict() if report.fidelity else None,
    }


def _stats_text(stats: dict[str, int]) -> str:
    shown = [f"{k} {v}" for k, v in stats.items() if v]
    return ", ".join(shown) if shown else "no change"


def _fidelity_cells(record) -> list[str]:
    fidelity = record.fidelity
    if fidelity is None:
        return ["-", "-"]
    sqnr = "inf" if math.isinf(fidelity.sqnr_db) else f"{fidelity.sqnr_db:.1f}"
    return [f"{fidelity.max_rel:.1e}", sqnr]


def _print_table(report: PipelineReport, verified: bool) -> None:
    """One row per pass with the model after it (the first row is the input), then what
    each pass changed."""
    table = Table(title="passes", title_justify="left")
    columns = ["pass", "s", "nodes", "params", "MACs"]
    if verified:
        columns += ["max rel err", "SQNR dB"]
    for column in columns:
        table.add_column(column, justify="left" if column == "pass" else "right", no_wrap=True)
    start = report.input_cost
    first = ["input", "", str(start.nodes), human_count(start.params), human_count(start.macs)]
    table.add_row(*first, *(["", ""] if verified else []))
    for record in report.passes:
        after = record.after
        row = [record.name, f"{record.seconds:.3f}", str(after.nodes),
               human_count(after.params), human_count(after.macs)]
        if verified:
            row += _fidelity_cells(record)
        table.add_row(*row)
    console.print(table)
    for record in report.passes:
        console.print(f"[bold]{record.name}[/]: {_stats_text(record.stats)}", highlight=False)


def _print_explanations(report: PipelineReport) -> None:
    for record in report.passes:
        if not record.explanations:
            continue
        console.print(f"[bold]{record.name}[/]: {len(record.explanations)} candidates declined")
        for line in record.explanations:
            console.print(f"  - {line}", highlight=False, soft_wrap=True, markup=False)


@app.command()
def optimize(
    model: Annotated[str, typer.Argument(help="An .onnx file or zoo:NAME (see `graphopt zoo`).")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the result (default: NAME.opt.onnx beside the input;"
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
        Path | None,
        typer.Option("--inputs", help="Verification inputs: an .npz with one array per input."),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="List every rewrite candidate that was declined and why."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the JSON report on stdout instead of tables.")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Rewrite MODEL with a pipeline (the lossless preset by default), verify and save it.

    Every pass is verified against onnxruntime with graph optimizations off unless --no-verify;
    a lossless pass that changes the outputs stops the run and names itself.
    """
    set_debug(debug)
    if preset and passes:
        raise GraphoptError("give either --preset or --passes, not both")
    spec = passes or preset or DEFAULT_PRESET
    pipeline = Pipeline.from_spec(spec) if passes else Pipeline.from_preset(spec)
    out_path = output or _default_output(model)
    if not model.startswith(ZOO_PREFIX) and Path(model).resolve() == out_path.resolve():
        raise GraphoptError(f"{out_path}: refusing to overwrite the input model")
    ir_model = resolve_model(model)
    input_size = stored_size_bytes(model, ir_model)
    feed = None
    if inputs is not None:
        feed = load_npz(inputs)
        check_feed(ir_model, feed, where=str(inputs))
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=json_output or not console.is_terminal,
    ) as progress:
        task = progress.add_task("optimizing", total=len(pipeline.passes))

        def on_progress(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, description=name)

        result = pipeline.run(ir_model, verify=not no_verify, inputs=feed, progress=on_progress)
        progress.update(task, description="saving")
        save_model(ir_model, out_path)
    data = build_report(model, out_path, result, input_size)
    if report is not None:
        write_json_atomically(report, data)
    if json_output:
        typer.echo(json.dumps(data, indent=2))
        return
    _print_table(result, verified=not no_verify)
    if explain:
        _print_explanations(result)
    inp, out = data["input"], data["output"]
    console.print(
        f"{model} -> {out_path}: nodes {inp['nodes']} -> {out['nodes']}, "
        f"size {human_count(inp['size_bytes'], 'B')} -> {human_count(out['size_bytes'], 'B')}"
        + (f", {result.fidelity.summary()}" if result.fidelity else ", not verified"),
        highlight=False,
    )
    if report is not None:
        console.print(f"report: {report}", highlight=False)
