"""``graphopt debug``: find where a candidate model (or backend) parts ways with a reference.

See :mod:`graphopt.harness.debug` for the method: output fidelity, a chunked sweep over the
matched tensors, bisection by feeding the reference's tensors at a cut, and for quantized
candidates each activation Q/DQ pair disabled in turn.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from graphopt.backends.registry import parse_backend
from graphopt.cli.app import DebugOption, app, console, err_console, set_debug
from graphopt.errors import GraphoptError
from graphopt.harness.debug import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_PAIRS,
    DEFAULT_THRESHOLD_DB,
    DebugConfig,
    DebugReport,
    TensorRow,
)
from graphopt.harness.debug_report import format_db

__all__ = ["debug"]

_CONTEXT_ROWS = 3


def _figures(row: TensorRow) -> str:
    f = row.fidelity
    if f is None:
        return row.problem or "not compared"
    return (f"SQNR {format_db(f.sqnr_db)} dB, cosine {f.cosine:.6f}, max abs {f.max_abs:.3g},"
            f" max rel {f.max_rel:.2e}")


def _tensor_table(report: DebugReport, limit: int) -> Table:
    """The first divergence with a few tensors before it, then the worst ones."""
    rows = report.rows
    first = report.first_divergence
    start = max(0, rows.index(first) - _CONTEXT_ROWS) if first is not None else 0
    shown = rows[start:start + limit] if first is not None else []
    worst = sorted((r for r in rows if r.fidelity is not None),
                   key=lambda r: r.fidelity.sqnr_db)[:limit]
    shown += [r for r in worst if r not in shown]
    table = Table(title=f"matched tensors (threshold {report.threshold_db:g} dB; first"
                        " divergence and its context, then the worst)", title_justify="left")
    for column in ("#", "node", "op", "tensor", "SQNR dB", "cosine", "max abs", "Q/DQ dB"):
        table.add_column(column, justify="right" if column in ("#", "SQNR dB", "cosine",
                                                                 "max abs", "Q/DQ dB") else "left")
    for row in shown:
        f = row.fidelity
        mark = "[red]" if row.below(report.threshold_db) else ""
        table.add_row(str(row.match.position), escape(row.match.node), row.match.op_type,
                      escape(row.match.reference),
                      f"{mark}{format_db(f.sqnr_db) if f else '-'}",
                      f"{f.cosine:.6f}" if f else "-", f"{f.max_abs:.3g}" if f else "-",
                      format_db(row.qdq_sqnr_db))
    return table


def _contribution_table(report: DebugReport, limit: int) -> Table:
    table = Table(title=f"Q/DQ pairs disabled in turn ({len(report.contributions)} of"
                        f" {report.pairs_total} tried, noisiest first)", title_justify="left")
    for column in ("rank", "Q/DQ pair", "tensor", "injects dB", "output dB without it",
                   "share of the error"):
        table.add_column(column, justify="left" if column in ("Q/DQ pair", "tensor") else "right")
    for rank, c in enumerate(report.contributions[:limit], 1):
        table.add_row(str(rank), escape(c.pair), escape(c.tensor), format_db(c.injected_sqnr_db),
                      format_db(c.output_sqnr_db), f"{c.share:.1%}")
    return table


def _print(report: DebugReport, limit: int) -> None:
    console.print(f"reference: {escape(report.reference)} on {escape(report.reference_backend)}"
                  f" ({report.reference_nodes} nodes)\ncandidate: {escape(report.candidate)} on"
                  f" {escape(report.candidate_backend)} ({report.candidate_nodes} nodes)\n"
                  f"data: {escape(report.data)}; {report.matched} tensors matched",
                  highlight=False, soft_wrap=True)
    console.print(f"outputs: {report.outputs.summary()}", highlight=False)
    first, worst = report.first_divergence, report.worst
    if report.verdict == "no divergence":
        where = "" if worst is None else (f"; worst tensor {escape(worst.match.reference)}"
                                          f" ({escape(worst.match.node)},"
                                          f" {worst.match.op_type}): {_figures(worst)}")
        console.print(f"[green]no divergence[/] (every matched tensor and output above"
                      f" {report.threshold_db:g} dB){where}", highlight=False, soft_wrap=True)
    elif first is not None:
        console.print(f"[red]first divergence[/]: {escape(first.match.reference)} at node"
                      f" {escape(first.match.node)} ({first.match.op_type}): {_figures(first)}",
                      highlight=False, soft_wrap=True)
    if report.rows and (first is not None or report.verdict != "no divergence"):
        console.print(_tensor_table(report, limit))
    bisection = report.bisection
    if bisection is not None:
        extra = (f" (+{bisection.reference_runs} reference runs for the cut tensors)"
                 if bisection.reference_runs else
                 " (each one graph: the reference up to the cut, the candidate after it)")
        culprit = ", ".join(f"{escape(n)} ({op})" for n, op in
                            zip(bisection.culprit, bisection.culprit_ops, strict=True))
        console.print(
            f"[bold]located[/]: {culprit} breaks the output on its own (the candidate run from"
            f" there on the reference's tensors still diverges, from the next cut it does not);"
            f" {bisection.candidate_runs} runs{extra} over {bisection.cut_positions} cuts",
            highlight=False, soft_wrap=True)
    if report.contributions:
        console.print(_contribution_table(report, limit))
        top = report.contributions[0]
        console.print(f"dominant error: Q/DQ pair {escape(top.pair)} on {escape(top.tensor)}"
                      f" ({top.share:.0%} of the output error power; output"
                      f" {format_db(top.output_sqnr_db)} dB without it)", highlight=False,
                      soft_wrap=True)
    if report.keep:
        names = ", ".join(report.keep)
        listed = ",".join(report.keep)
        console.print(f"keep float: {escape(names)}  (quantize(keep=[{escape(listed)}]))",
                      highlight=False, soft_wrap=True)
    console.print(f"runs: {report.reference_runs} reference, {report.candidate_runs} candidate;"
                  f" at most {report.max_exposed_bytes / 2**20:.1f} MiB of exposed tensors at"
                  " once", highlight=False)


@app.command()
def debug(
    reference: Annotated[str, typer.Argument(help="Reference model file or zoo:NAME.")],
    candidate: Annotated[str | None, typer.Argument(
        help="Candidate model (its rewrite: optimized, quantized, pruned). Default: the"
             " reference itself, to compare two backends.")] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", "-b", help="Backend running the candidate (see `graphopt backends`)."
                                " Default: the reference onnxruntime (optimizations off).")] = None,
    ref_backend: Annotated[str | None, typer.Option(
        "--ref-backend", help="Backend running the reference. Default: the reference"
                              " onnxruntime (optimizations off).")] = None,
    inputs: Annotated[str | None, typer.Option(
        "--inputs", help="Input data: an .npz, a folder of images (see --preprocess) or"
                         " zoo:digits. Default: seeded random inputs.")] = None,
    preprocess: Annotated[str | None, typer.Option(
        "--preprocess", help="How images become input tensors (see `graphopt optimize"
                             " --help`).")] = None,
    batches: Annotated[int, typer.Option(
        help="Batches of --inputs to compare on.", min=1)] = 1,
    threshold: Annotated[float, typer.Option(
        help="SQNR in dB below which a tensor or output diverges.")] = DEFAULT_THRESHOLD_DB,
    chunk_mb: Annotated[float, typer.Option(
        help="Most MiB of intermediate tensors exposed per side and run.", min=0.001)
    ] = DEFAULT_CHUNK_BYTES / 2**20,
    sweep: Annotated[bool, typer.Option(
        "--sweep/--no-sweep", help="Compare every matched tensor (in chunks).")] = True,
    bisect: Annotated[bool, typer.Option(
        "--bisect/--no-bisect", help="Locate the diverging node by bisection.")] = True,
    pairs: Annotated[bool, typer.Option(
        "--pairs/--no-pairs", help="Quantized candidates: disable each Q/DQ pair in turn and"
                                   " rank them by the output error they carry.")] = True,
    max_pairs: Annotated[int, typer.Option(
        help="Quantized candidates: most Q/DQ pairs disabled in turn (noisiest first; 0:"
             " all).", min=0)] = DEFAULT_MAX_PAIRS,
    rows: Annotated[int, typer.Option(help="Rows shown per table.", min=1)] = 12,
    seed: Annotated[int, typer.Option(help="Seed of the random inputs.")] = 0,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the JSON report on stdout instead of tables.")] = False,
    report_dir: Annotated[str | None, typer.Option(
        "--report", help="Also write DIR/debug.html: a self-contained page with the SQNR"
                         " along the graph depth (first divergence and bisection marked)"
                         " and the tables. Needs matplotlib.")] = None,
    debug: DebugOption = False,
) -> None:
    """Find where CANDIDATE parts ways with REFERENCE (or a backend with another): per
    matched tensor SQNR, cosine and max error in graph order, the first node below the
    threshold, the node that breaks the output (bisection, ~log2(N) runs) and, for quantized
    candidates, the Q/DQ pairs carrying the error with a `keep float` suggestion."""
    from graphopt.calibration import open_data
    from graphopt.feeds import random_inputs
    from graphopt.harness.debug import debug_models
    from graphopt.model_io import resolve_model

    set_debug(debug)
    if report_dir is not None and importlib.util.find_spec("matplotlib") is None:
        raise GraphoptError("--report needs matplotlib: pip install 'graphopt[bench]'")
    if candidate is None and backend is None and ref_backend is None:
        raise GraphoptError("give a CANDIDATE model, or --backend to compare the reference on"
                            " two backends")
    ref_spec = parse_backend(ref_backend) if ref_backend else None
    cand_spec = parse_backend(backend) if backend else None
    ref_model = resolve_model(reference)
    cand_model = resolve_model(candidate or reference)
    if inputs:
        source = open_data(inputs, ref_model, preprocess=preprocess)
        feeds = [feed for _, feed in zip(range(batches), source, strict=False)]
        description = f"{source.description}, first {len(feeds)} batch(es)"
    else:
        if preprocess:
            raise GraphoptError("--preprocess applies to --inputs image folders")
        feeds = [random_inputs(ref_model, seed=seed + index) for index in range(batches)]
        description = f"random inputs (seed {seed}, {batches} batch(es))"
    config = DebugConfig(threshold_db=threshold, chunk_bytes=int(chunk_mb * 2**20),
                         sweep=sweep, bisect=bisect, pairs=pairs, max_pairs=max_pairs)

    def progress(text: str) -> None:
        if not json_output and err_console.is_terminal:
            err_console.print(text, highlight=False)

    report = debug_models(ref_model, cand_model, feeds, reference_label=reference,
                          candidate_label=candidate or reference, reference_backend=ref_spec,
                          candidate_backend=cand_spec, data_description=description,
                          config=config, progress=progress)
    page = None
    if report_dir is not None:
        from graphopt.harness.debug_report import write_debug_report

        page = write_debug_report(report, report_dir)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    _print(report, rows)
    if page is not None:
        console.print(f"report: {escape(str(page))}", highlight=False, soft_wrap=True)
