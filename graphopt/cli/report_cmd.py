"""``graphopt report``: an HTML page and a Markdown summary of a benchmark result store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graphopt.cli.app import DebugOption, app, console, set_debug

__all__ = ["report"]


@app.command()
def report(
    results: Annotated[Path, typer.Argument(
        help="A result store written by `graphopt bench --suite` (JSON lines).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for report.html, report.md and the plots.")],
    debug: DebugOption = False,
) -> None:
    """Write a self-contained HTML report (plots inlined, works offline) and a Markdown
    summary: latency per configuration, latency vs fidelity with the Pareto front, speedup
    over fp32 onnxruntime, model size, energy per inference with its source."""
    from graphopt.harness.report import write_report

    set_debug(debug)
    page, markdown = write_report(results, out)
    console.print(f"report: {page}\nsummary: {markdown}", highlight=False)
