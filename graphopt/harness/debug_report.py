"""``graphopt debug --report DIR``: a :class:`~graphopt.harness.debug.DebugReport` as one
self-contained HTML page (``DIR/debug.html``).

The page holds the per-tensor SQNR along the graph depth (the reference's topological node
index) with the threshold, the first divergence and the nodes bisection located marked, the
SQNR each activation Q/DQ pair injects beside it, then the tables: outputs, the first
divergence with its context and the worst tensors, the bisection steps, the Q/DQ pairs
disabled in turn. The plot is a PNG inlined as base64 and the CSS is in the page (the helpers
of :mod:`graphopt.harness.report`), so it opens offline. Infinite SQNR (identical tensors) is
plotted at :data:`~graphopt.harness.report.SQNR_CAP_DB`.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

from graphopt import atomic
from graphopt.harness.debug import DebugReport, TensorRow
from graphopt.harness.report import (
    SQNR_CAP_DB,
    figure_png,
    html_figure,
    html_page,
    html_table,
    new_figure,
)

__all__ = ["REPORT_FILE", "format_db", "located_positions", "depth_plot", "debug_html",
           "write_debug_report"]

REPORT_FILE = "debug.html"
_TABLE_ROWS = 20
_CONTEXT_ROWS = 3


def format_db(value: float | None) -> str:
    """A decibel figure for tables: one decimal, ``inf`` / ``-inf``, ``-`` when unknown."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.1f}"


def _capped(value: float) -> float:
    return max(min(value, SQNR_CAP_DB), -SQNR_CAP_DB)


def located_positions(report: DebugReport) -> list[int]:
    """Depths (reference node indices) of the tensors written by the nodes bisection named:
    a culprit node the reference also has, or a culprit Q/DQ pair's tensor."""
    if report.bisection is None:
        return []
    culprit = set(report.bisection.culprit)
    pair_tensors = {c.tensor for c in report.contributions if c.pair in culprit}
    return sorted({r.match.position for r in report.rows
                   if r.match.node in culprit or r.match.before_qdq in pair_tensors})


def depth_plot(report: DebugReport) -> bytes:
    """PNG: SQNR of every compared tensor against its depth, markers for the first
    divergence and the located nodes."""
    compared = [r for r in report.rows if r.fidelity is not None]
    figure, axis = new_figure(10, 4.5)
    xs = [r.match.position for r in compared]
    axis.plot(xs, [_capped(r.fidelity.sqnr_db) for r in compared], ".-", color="tab:blue",
              markersize=3, linewidth=0.8, label="tensor SQNR vs reference")
    injected = [r for r in compared if r.qdq_sqnr_db is not None]
    if injected:
        axis.plot([r.match.position for r in injected],
                  [_capped(r.qdq_sqnr_db) for r in injected], "x", color="tab:gray",
                  markersize=4, label="SQNR its Q/DQ pair injects")
    axis.axhline(report.threshold_db, color="tab:red", linestyle=":", linewidth=1,
                 label=f"threshold {report.threshold_db:g} dB")
    first = report.first_divergence
    if first is not None and first.fidelity is not None:
        axis.axvline(first.match.position, color="tab:orange", linestyle="--", linewidth=1)
        axis.plot([first.match.position], [_capped(first.fidelity.sqnr_db)], "o",
                  color="tab:orange", markersize=8, fillstyle="none",
                  label=f"first divergence: {first.match.node or first.match.reference}")
    located = located_positions(report)
    for index, position in enumerate(located):
        axis.axvline(position, color="tab:purple", linewidth=1.5, alpha=0.6,
                     label="located by bisection" if index == 0 else None)
    axis.set_xlabel("graph depth (reference node index, topological order)")
    axis.set_ylabel(f"SQNR (dB; identical = {SQNR_CAP_DB:g})")
    axis.set_title(f"{report.candidate} against {report.reference}: SQNR along the graph")
    if xs:
        axis.legend(loc="best", fontsize=8)
    return figure_png(figure)


def _tensor_rows(report: DebugReport) -> list[TensorRow]:
    rows, first = report.rows, report.first_divergence
    shown = []
    if first is not None:
        start = max(0, rows.index(first) - _CONTEXT_ROWS)
        shown = rows[start:start + _TABLE_ROWS // 2]
    worst = sorted((r for r in rows if r.fidelity is not None),
                   key=lambda r: r.fidelity.sqnr_db)[:_TABLE_ROWS // 2]
    return shown + [r for r in worst if r not in shown]


def debug_html(report: DebugReport) -> str:
    """The page (see the module docstring)."""
    first, worst = report.first_divergence, report.worst
    notes = [f"reference: {report.reference} on {report.reference_backend}"
             f" ({report.reference_nodes} nodes)",
             f"candidate: {report.candidate} on {report.candidate_backend}"
             f" ({report.candidate_nodes} nodes)",
             f"data: {report.data}; {report.matched} tensors matched",
             f"outputs: {report.outputs.summary()}; verdict: {report.verdict}"]
    if first is not None:
        notes.append(f"first divergence (below {report.threshold_db:g} dB):"
                     f" {first.match.reference} at {first.match.node} ({first.match.op_type}),"
                     f" {format_db(first.fidelity.sqnr_db)} dB")
    if worst is not None:
        notes.append(f"worst tensor: {worst.match.reference} at {worst.match.node}"
                     f" ({worst.match.op_type}), {format_db(worst.fidelity.sqnr_db)} dB")
    b = report.bisection
    if b is not None:
        notes.append("located by bisection: " + ", ".join(
            f"{n} ({op})" for n, op in zip(b.culprit, b.culprit_ops, strict=True))
            + f"; {b.candidate_runs} candidate runs over {b.cut_positions} cuts")
    if report.contributions:
        top = report.contributions[0]
        notes.append(f"dominant error: Q/DQ pair {top.pair} on {top.tensor}"
                     f" ({top.share:.0%} of the output error power)")
    if report.keep:
        notes.append(f"keep float: {', '.join(report.keep)}")
    notes.append(f"runs: {report.reference_runs} reference, {report.candidate_runs} candidate")
    body = ["<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"]
    if report.rows:
        body.append(html_figure("per-tensor SQNR along the graph depth; dashed orange: first"
                                " divergence, purple: located by bisection, dotted red: the"
                                " threshold", depth_plot(report)))
    body.append("<h2>Outputs</h2>")
    body.append(html_table(("output", "SQNR dB", "cosine", "max abs", "max rel"), (
        (o.name, format_db(o.sqnr_db), f"{o.cosine:.6f}", f"{o.max_abs:.3g}", f"{o.max_rel:.2e}")
        for o in report.outputs.outputs)))
    if report.rows:
        body.append("<h2>Matched tensors (first divergence and its context, then the worst)"
                    "</h2>")
        body.append(html_table(
            ("depth", "node", "op", "tensor", "SQNR dB", "cosine", "max abs", "Q/DQ dB"),
            ((str(r.match.position), r.match.node, r.match.op_type, r.match.reference,
              format_db(r.fidelity.sqnr_db) if r.fidelity else (r.problem or "-"),
              f"{r.fidelity.cosine:.6f}" if r.fidelity else "-",
              f"{r.fidelity.max_abs:.3g}" if r.fidelity else "-", format_db(r.qdq_sqnr_db))
             for r in _tensor_rows(report))))
    if b is not None and b.steps:
        body.append("<h2>Bisection steps</h2>")
        body.append(html_table(("cut position", "first node", "output SQNR dB", "error share",
                                "diverges"),
                               ((str(s["position"]), s["node"],
                                 format_db(_float(s["output_sqnr_db"])),
                                 f"{s['error_share']:.1%}", "yes" if s["diverges"] else "no")
                                for s in b.steps)))
    if report.contributions:
        body.append(f"<h2>Q/DQ pairs disabled in turn ({len(report.contributions)} of"
                    f" {report.pairs_total})</h2>")
        body.append(html_table(("rank", "Q/DQ pair", "tensor", "injects dB",
                                "output dB without it", "share of the error"),
                               ((str(i), c.pair, c.tensor, format_db(c.injected_sqnr_db),
                                 format_db(c.output_sqnr_db), f"{c.share:.1%}")
                                for i, c in enumerate(report.contributions, 1))))
    return html_page("graphopt debug report", body)


def _float(value: float | str) -> float:
    return float(value)  # "inf" / "-inf" from the JSON form parse too


def write_debug_report(report: DebugReport, out: str | os.PathLike) -> Path:
    """Write ``out/debug.html`` (``out`` created); returns its path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return atomic.write_text(folder / REPORT_FILE, debug_html(report), what="debug report")
