"""``graphopt backends``: every backend name, whether it runs here, and why not."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from graphopt.backends.registry import BACKENDS, available_backends
from graphopt.cli.app import DebugOption, app, console, set_debug

__all__ = ["backends"]


def _catalogue() -> list[dict]:
    rows = []
    for name, ok, reason in available_backends():
        backend = BACKENDS[name]
        rows.append({
            "name": name,
            "available": ok,
            "reason": reason,
            "description": backend.description,
            "device": backend.device,
            "precisions": list(backend.precisions),
            "options": list(backend.options),
        })
    return rows


@app.command()
def backends(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    debug: DebugOption = False,
) -> None:
    """List the backends usable with `graphopt bench --backend`, available or not and why."""
    set_debug(debug)
    rows = _catalogue()
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="backends", title_justify="left")
    for column in ("backend", "here", "precisions", "options", "what / why not"):
        table.add_column(column)
    for row in rows:
        mark = "[green]yes[/]" if row["available"] else "[red]no[/]"
        what = row["description"] if row["available"] else f"{row['description']}: {row['reason']}"
        table.add_row(row["name"], mark, ", ".join(row["precisions"]),
                      ", ".join(row["options"]), escape(what))
    console.print(table)
    console.print(
        'spec syntax: NAME[:precision][@key=value,...], e.g. "openvino-cpu:f32",'
        ' "ort-cpu@threads=2,opt=basic"; without a precision the runtime default is used'
        " and the precision actually run is reported", markup=False, highlight=False,
    )
