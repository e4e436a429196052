"""``graphopt inspect``: what is in a model (opset, I/O, operators, size, cost)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated

import onnx_ir as ir
import typer
from rich.table import Table

from graphopt.cli.app import DebugOption, app, console, err_console, set_debug
from graphopt.cli.formatting import human_count
from graphopt.cost import model_cost
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
    model: Annotated[str, typer.Argument(help="An .onnx file or zoo:NAME.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of tables.")
    ] = False,
    shape: Annotated[list[str] | None, typer.Option(
        "--shape", metavar="NAME:DIMS",
        help="Input shape for dynamic dims, e.g. data:1x3x224x224 (repeat for several inputs);"
             " MACs are counted at it.")] = None,
    debug: DebugOption = False,
) -> None:
    """Show MODEL's opset, inputs and outputs, operator histogram, nodes, params, MACs, size."""
    set_debug(debug)
    loaded = resolve_model(model)
    shapes = parse_shapes(shape)
    size = stored_size_bytes(model, loaded)
    fix_input_shapes(loaded, shapes)
    info = describe_model(loaded, size)
    dynamic = [s for s in used_shapes(loaded) if s.defaulted]
    info["dynamic_dims_counted_as_1"] = {s.name: list(s.defaulted) for s in dynamic}
    if dynamic:
        err_console.print(f"warning: {model}: MACs count dynamic dims as 1 ("
                          + "; ".join(f"{s.name}: {', '.join(d.split('=')[0] for d in s.defaulted)}"
                                      for s in dynamic)
                          + "); --shape NAME:DIMS counts them at a real size",
                          highlight=False, markup=False)
    if json_output:
        typer.echo(json.dumps(info, indent=2))
        return
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
