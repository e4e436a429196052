"""``graphopt inspect``: what is in a model (opset, I/O, operators, size, cost)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated

import onnx_ir as ir
import typer
from rich.markup import escape
from rich.table import Table

from graphopt import __version__
from graphopt.cli.app import DebugOption, app, console, err_console, set_debug
from graphopt.cli.bench_table import display_names
from graphopt.cli.formatting import human_count
from graphopt.cost import model_cost
from graphopt.feeds import model_inputs
from graphopt.input_shapes import fix_input_shapes, parse_shapes, used_shapes
from graphopt.model_io import model_size_bytes, resolve_model, stored_size_bytes

__all__ = ["inspect", "describe_model"]


def _value_info(value: ir.Value) -> dict:
    shape = None if value.shape is None else [
        d if isinstance(d, int) else str(d) for d in value.shape
    ]
    return {"name": value.name, "dtype": str(value.dtype) if value.dtype else None, "shape": shape}


def describe_model(model: ir.Model, size_bytes: int | None = None) -> dict:
    """The facts ``inspect`` shows, as a JSON-ready dict (size estimated unless given)."""
    cost = model_cost(model)
    initializers = model.graph.initializers
    histogram = Counter(
        node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        for node in model.graph
    )
    return {
        "opset": dict(model.opset_imports),
        "ir_version": model.ir_version,
        "producer": model.producer_name,
        "inputs": [_value_info(v) for v in model.graph.inputs if v.name not in initializers],
        "outputs": [_value_info(v) for v in model.graph.outputs],
        "op_histogram": dict(histogram.most_common()),
        "nodes": cost.nodes,
        "params": cost.params,
        "macs": cost.macs,
        "size_bytes": model_size_bytes(model) if size_bytes is None else size_bytes,
    }


@app.command()
def inspect(
    models: Annotated[list[str], typer.Argument(
        metavar="MODEL", help="One or more .onnx files or zoo:NAME; several are shown side"
        " by side.", show_default=False)],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of tables.")
    ] = False,
    shape: Annotated[list[str] | None, typer.Option(
        "--shape", metavar="NAME:DIMS",
        help="Input shape for dynamic dims, e.g. data:1x3x224x224 (repeat for several inputs);"
             " MACs are counted at it.")] = None,
    debug: DebugOption = False,
) -> None:
    """Show MODEL's opset, inputs and outputs, operator histogram, nodes, params, MACs, size;
    several models: per-operator counts, params, MACs and size side by side."""
    set_debug(debug)
    shapes = parse_shapes(shape)
    infos = [_inspect_one(model, shapes, several=len(models) > 1) for model in models]
    if json_output:
        data = ({"graphopt_version": __version__, **infos[0]} if len(infos) == 1 else
                {"graphopt_version": __version__, "models": infos})
        typer.echo(json.dumps(data, indent=2))
        return
    if len(infos) > 1:
        _print_side_by_side(infos)
        return
    info, model = infos[0], models[0]
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in info["opset"].items())
    console.print(f"[bold]{model}[/]  opset {opsets}, IR v{info['ir_version']}", highlight=False)
    io = Table(title="inputs and outputs", title_justify="left")
    for column in ("kind", "name", "dtype", "shape"):
        io.add_column(column)
    for kind in ("inputs", "outputs"):
        for v in info[kind]:
            io.add_row(kind[:-1], v["name"], v["dtype"] or "?", str(v["shape"]))
    console.print(io)
    ops = Table(title="operators", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in info["op_histogram"].items():
        ops.add_row(op, str(count))
    console.print(ops)
    console.print(
        f"nodes {info['nodes']}, params {human_count(info['params'])}, "
        f"MACs {human_count(info['macs'])}, size {human_count(info['size_bytes'], 'B')}",
        highlight=False,
    )


def _inspect_one(model: str, shapes: dict, *, several: bool) -> dict:
    loaded = resolve_model(model)
    size = stored_size_bytes(model, loaded)
    fix_input_shapes(loaded, {k: v for k, v in shapes.items()
                              if not several or k in {i.name for i in model_inputs(loaded)}})
    info = {"model": model, **describe_model(loaded, size)}
    # The batch axis counted as 1 is the usual per-sample figure; other dynamic dims are not.
    dynamic = [s for s in used_shapes(loaded) if s.defaulted]
    info["dynamic_dims_counted_as_1"] = {s.name: [d.split("=")[0] for d in s.defaulted]
                                         for s in dynamic}
    if dynamic:
        names = "; ".join(f"{s.name}: {', '.join(info['dynamic_dims_counted_as_1'][s.name])}"
                          for s in dynamic)
        err_console.print(f"warning: {model}: MACs count dynamic dims as 1 ({names});"
                          " --shape NAME:DIMS counts them at a real size",
                          highlight=False, markup=False)
    return info


def _print_side_by_side(infos: list[dict]) -> None:
    names = display_names([info["model"] for info in infos])
    table = Table(title="models side by side", title_justify="left")
    table.add_column("")
    for info in infos:
        table.add_column(escape(names[info["model"]]), justify="right", overflow="fold")
    rows = [
        ("opset", [str(info["opset"].get("", info["opset"].get("ai.onnx", "-")))
                   for info in infos]),
        ("nodes", [str(info["nodes"]) for info in infos]),
        ("params", [human_count(info["params"]) for info in infos]),
        ("MACs", [human_count(info["macs"]) for info in infos]),
        ("size", [human_count(info["size_bytes"], "B") for info in infos]),
    ]
    for label, cells in rows:
        table.add_row(label, *cells)
    table.add_section()
    ops = sorted({op for info in infos for op in info["op_histogram"]},
                 key=lambda op: (-max(i["op_histogram"].get(op, 0) for i in infos), op))
    for op in ops:
        table.add_row(escape(op), *(str(info["op_histogram"].get(op, 0))
                                    for info in infos))
    console.print(table)
