"""Reports of a result store: a self-contained HTML page and a Markdown summary.

:func:`write_report` reads the finished cells of a :class:`~graphopt.harness.store.ResultStore`
and writes into a folder:

- ``report.html``: every plot inlined as a base64 PNG and the CSS in the page, so it opens
  offline and can be mailed as one file;
- ``report.md``: the same tables, the plots beside it as PNG files.

Per model: latency per configuration (pipeline on backend, plus options where the suite
varies them) as box plots of the timed calls; latency against fidelity (SQNR against the fp32
original on the same inputs) with the Pareto front, and against task accuracy where the
pipeline scored it on labelled data. Over all models: speedup over the fp32 onnxruntime
baseline, model size on disk, energy per inference with its source.

Speedup is the baseline cell's median over the cell's median, both absolute measurements
taken one after the other (not paired), as the page says; the baseline is the model with the
``none`` pipeline on ``ort-cpu`` with the same timing settings.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from graphopt import atomic
from graphopt.errors import GraphoptError
from graphopt.harness.store import ResultStore

__all__ = ["Row", "ReportData", "BASELINE_BACKEND", "BASELINE_PIPELINE", "SQNR_CAP_DB",
           "load_report", "pareto_front", "write_report", "new_figure", "figure_png",
           "html_table", "html_figure", "html_page"]

BASELINE_BACKEND = "ort-cpu"
BASELINE_PIPELINE = "none"
_SQNR_CAP_DB = 150.0  # identical outputs have infinite SQNR: plotted at the cap
SQNR_CAP_DB = _SQNR_CAP_DB


@dataclasses.dataclass(frozen=True)
class Row:
    """One finished cell, flattened for tables and plots (times in ms)."""

    model: str
    pipeline: str
    backend: str
    options: str
    precision: str
    p50_ms: float
    p99_ms: float
    ci_low_ms: float
    ci_high_ms: float
    samples_ms: np.ndarray
    sqnr_db: float
    cosine: float
    fidelity_ok: bool
    energy_j: float | None
    energy_source: str | None
    size_bytes: int | None
    input_size_bytes: int | None
    accuracy: float | None
    warnings: int
    speedup: float | None = None

    @property
    def config(self) -> str:
        text = f"{self.pipeline} on {self.backend}"
        return f"{text} ({self.options})" if self.options else text


@dataclasses.dataclass
class ReportData:
    rows: list[Row]
    not_measured: list[dict]  # {"cell": name, "status", "reason"}
    environment: dict
    versions: list[str]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.rows))


def _float(value) -> float:
    if value is None:
        return math.nan
    return float(value)  # "inf" from the JSON as well


def _varying(records: Sequence[Mapping]) -> list[str]:
    timings = [r["cell"]["timing"] for r in records]
    keys = sorted({k for t in timings for k in t})
    return [k for k in keys if len({repr(t.get(k)) for t in timings}) > 1]


def _row(record: Mapping, varying: Sequence[str]) -> Row:
    cell, result, pipeline = record["cell"], record["result"], record.get("pipeline") or {}
    stats, fidelity, energy = result["stats"], result["fidelity"], result.get("energy") or {}
    samples = np.asarray(result["latency"].get("samples_us", []), dtype=np.float64) / 1e3
    return Row(
        model=cell["model"], pipeline=cell["pipeline"], backend=cell["backend"],
        options=", ".join(f"{k}={cell['timing'].get(k)}" for k in varying),
        precision=result["precision"],
        p50_ms=stats["p50"] / 1e3, p99_ms=stats["p99"] / 1e3,
        ci_low_ms=stats["median_ci_low"] / 1e3, ci_high_ms=stats["median_ci_high"] / 1e3,
        samples_ms=samples,
        sqnr_db=_float(fidelity["sqnr_db"]), cosine=_float(fidelity["cosine"]),
        fidelity_ok=bool(result["fidelity_ok"]),
        energy_j=energy.get("joules_per_inference"), energy_source=energy.get("source"),
        size_bytes=pipeline.get("output_size_bytes"),
        input_size_bytes=pipeline.get("input_size_bytes"),
        accuracy=pipeline.get("accuracy_after"),
        warnings=len(result.get("warnings", [])),
    )


def _with_speedups(rows: list[Row], timings: list[str]) -> list[Row]:
    baselines = {(r.model, t): r.p50_ms for r, t in zip(rows, timings, strict=True)
                 if r.pipeline == BASELINE_PIPELINE and r.backend == BASELINE_BACKEND}
    out = []
    for row, timing in zip(rows, timings, strict=True):
        base = baselines.get((row.model, timing))
        speedup = base / row.p50_ms if base and row.p50_ms > 0 else None
        out.append(dataclasses.replace(row, speedup=speedup))
    return out


def load_report(store: ResultStore) -> ReportData:
    """The store's latest record per cell, as rows (``ok``) and reasons (the others)."""
    latest = list(store.latest().values())
    if not latest:
        raise GraphoptError(f"{store.path}: no results (run `graphopt bench --suite` first)")
    finished = [r for r in latest if r.get("status") == "ok"]
    varying = _varying(finished)
    rows = [_row(r, varying) for r in finished]
    timings = [repr(sorted(r["cell"]["timing"].items())) for r in finished]
    not_measured = [
        {"cell": f"{r['cell']['model']} [{r['cell']['pipeline']}] on {r['cell']['backend']}",
         "status": r.get("status", "?"), "reason": r.get("reason") or r.get("error", "")}
        for r in latest if r.get("status") != "ok"]
    environment = finished[0]["result"]["environment"] if finished else {}
    versions = sorted({r["cell"].get("graphopt_version", "?") for r in latest})
    return ReportData(_with_speedups(rows, timings), not_measured, environment, versions)


def pareto_front(points: Iterable[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower or equal ``x`` (latency) and higher
    or equal ``y`` (fidelity), one of them strictly; ordered by ``x``."""
    items = [(x, y, i) for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]
    items.sort(key=lambda item: (item[0], -item[1]))
    front, best = [], -math.inf
    for _, y, index in items:
        if y > best:
            front.append(index)
            best = y
    return front


# -- plots -------------------------------------------------------------------------------


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise GraphoptError("reports need matplotlib: pip install 'graphopt[bench]'") from None
    matplotlib.use("Agg", force=True)
    return matplotlib


def _figure(width: float, height: float):
    _matplotlib()
    from matplotlib import pyplot

    return pyplot.subplots(figsize=(width, height), layout="constrained")


def _horizontal() -> dict:
    """``boxplot`` lying down: ``orientation`` from matplotlib 3.10, ``vert`` before."""
    version = tuple(int(p) for p in re.findall(r"\d+", _matplotlib().__version__)[:2])
    return {"orientation": "horizontal"} if version >= (3, 10) else {"vert": False}


def _png(figure) -> bytes:
    from matplotlib import pyplot

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()


def _latency_plot(rows: list[Row], model: str) -> bytes:
    figure, axis = _figure(8, 0.45 * len(rows) + 1.5)
    data = [r.samples_ms if r.samples_ms.size else np.array([r.p50_ms]) for r in rows]
    axis.boxplot(data, showfliers=False, **_horizontal())
    axis.set_yticks(range(1, len(rows) + 1), [r.config for r in rows])
    axis.set_xlabel("latency per synchronous call (ms; whiskers 1.5 IQR, outliers hidden)")
    axis.set_title(f"{model}: latency per configuration", wrap=True)
    return _png(figure)


def _capped(value: float) -> float:
    return min(value, _SQNR_CAP_DB)


def _tradeoff_plot(rows: list[Row], model: str, metric: str) -> bytes:
    figure, axis = _figure(7, 4.5)
    if metric == "sqnr":
        values = [_capped(r.sqnr_db) for r in rows]
        axis.set_ylabel(f"SQNR vs fp32 original (dB, identical = {_SQNR_CAP_DB:g})")
    else:
        values = [_float(r.accuracy) for r in rows]
        axis.set_ylabel("task accuracy (labelled data)")
    latencies = [r.p50_ms for r in rows]
    front = pareto_front(zip(latencies, values, strict=True))
    for index, row in enumerate(rows):
        colour = "tab:green" if row.fidelity_ok else "tab:orange"
        axis.errorbar(row.p50_ms, values[index], fmt="o", color=colour,
                      xerr=[[row.p50_ms - row.ci_low_ms], [row.ci_high_ms - row.p50_ms]])
        axis.annotate(row.config, (row.p50_ms, values[index]), fontsize=7,
                      xytext=(4, 4), textcoords="offset points")
    if front:  # a ring on every point of the front, joined when there are several
        axis.plot([latencies[i] for i in front], [values[i] for i in front], "o",
                  markersize=12, markerfacecolor="none", color="tab:blue", label="Pareto front")
        if len(front) > 1:
            axis.step([latencies[i] for i in front], [values[i] for i in front],
                      where="post", color="tab:blue")
        axis.legend(loc="lower right")
    axis.set_xscale("log")
    _log_ticks(axis, [v for r in rows for v in (r.ci_low_ms, r.ci_high_ms, r.p50_ms)])
    axis.set_xlabel("median latency (ms, 95% CI; log scale)")
    axis.set_title(f"{model}: latency vs {'fidelity' if metric == 'sqnr' else 'accuracy'}"
                   " (orange: outside the precision's budget)")
    return _png(figure)


def _log_ticks(axis, values: Iterable[float], count: int = 6) -> None:
    """At most ``count`` plain-number ticks on a log x axis (matplotlib's own labels on a
    narrow log range pile up as overlapping ``2x10^0``-style minor labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not finite:
        return
    low, high = min(finite), max(finite)
    if high <= low:
        high = low * 1.1
    ticks = sorted({float(f"{low * (high / low) ** (i / (count - 1)):.2g}")
                    for i in range(count)})
    axis.xaxis.set_major_locator(FixedLocator(ticks))
    axis.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
    axis.xaxis.set_minor_locator(NullLocator())
    axis.xaxis.set_minor_formatter(NullFormatter())


def _bars(rows: list[Row], values: list[float | None], label: str, title: str,
          annotations: list[str] | None = None, log: bool = False) -> bytes:
    shown = [(r, v, annotations[i] if annotations else "")
             for i, (r, v) in enumerate(zip(rows, values, strict=True)) if v is not None]
    figure, axis = _figure(9, 0.3 * len(shown) + 1.5)
    names = [f"{r.model}: {r.config}" for r, _, _ in shown]
    axis.barh(range(len(shown)), [v for _, v, _ in shown], color="tab:blue")
    axis.set_yticks(range(len(shown)), names, fontsize=7)
    axis.invert_yaxis()
    for index, (_, value, note) in enumerate(shown):
        axis.annotate(f"{value:.3g} {note}".strip(), (value, index), fontsize=7,
                      xytext=(3, -3), textcoords="offset points")
    if log:
        axis.set_xscale("log")
        _log_ticks(axis, [v for _, v, _ in shown])
    axis.set_xlabel(label)
    axis.set_title(title)
    return _png(figure)


def _plots(data: ReportData) -> list[tuple[str, str, bytes]]:
    """(file name, caption, PNG) of every plot."""
    plots = []
    for model in data.models:
        rows = [r for r in data.rows if r.model == model]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", model).strip("-") or "model"
        plots.append((f"{slug}-latency.png", f"{model}: latency per configuration",
                      _latency_plot(rows, model)))
        plots.append((f"{slug}-fidelity.png", f"{model}: latency vs fidelity, Pareto front",
                      _tradeoff_plot(rows, model, "sqnr")))
        if any(r.accuracy is not None for r in rows):
            plots.append((f"{slug}-accuracy.png", f"{model}: latency vs task accuracy",
                          _tradeoff_plot(rows, model, "accuracy")))
    if any(r.speedup is not None for r in data.rows):
        plots.append(("speedup.png", "speedup over fp32 onnxruntime",
                      _bars(data.rows, [r.speedup for r in data.rows],
                            "speedup (x, ratio of medians, unpaired)",
                            f"speedup over the '{BASELINE_PIPELINE}' pipeline on"
                            f" {BASELINE_BACKEND}")))
    if any(r.size_bytes is not None for r in data.rows):
        plots.append(("size.png", "model size on disk",
                      _bars(data.rows, [None if r.size_bytes is None else r.size_bytes / 1e6
                                        for r in data.rows],
                            "MB on disk (model and external data)", "model size")))
    if any(r.energy_j is not None for r in data.rows):
        plots.append(("energy.png", "energy per inference, with its source",
                      _bars(data.rows, [r.energy_j for r in data.rows],
                            "joules per inference (log scale)", "energy per inference",
                            annotations=[f"({r.energy_source})" for r in data.rows],
                            log=True)))
    return plots


# -- tables ------------------------------------------------------------------------------

_COLUMNS = ("configuration", "precision", "p50 ms", "95% CI ms", "p99 ms",
            "speedup vs fp32 ORT", "SQNR dB", "cosine", "fidelity", "accuracy", "size MB",
            "energy / inference")


def _cells(row: Row) -> list[str]:
    def number(value: float | None, digits: int = 3) -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.{digits}g}"

    size = "-" if row.size_bytes is None else f"{row.size_bytes / 1e6:.3g}"
    if row.size_bytes is not None and row.input_size_bytes:
        size += f" ({row.size_bytes / row.input_size_bytes:.2f}x)"
    energy = ("-" if row.energy_j is None
              else f"{row.energy_j:.3g} J ({row.energy_source})")
    return [row.config, row.precision, number(row.p50_ms, 4),
            f"{number(row.ci_low_ms, 4)}-{number(row.ci_high_ms, 4)}", number(row.p99_ms, 4),
            "-" if row.speedup is None else f"{row.speedup:.2f}x",
            "inf" if math.isinf(row.sqnr_db) else number(row.sqnr_db, 4),
            number(row.cosine, 6), "ok" if row.fidelity_ok else "outside budget",
            number(row.accuracy, 4), size, energy]


def _method_notes(data: ReportData) -> list[str]:
    cpu = (data.environment.get("cpu") or {}).get("model") or "unknown CPU"
    return [
        f"Machine: {cpu}; graphopt {', '.join(data.versions)}.",
        "Latency: synchronous calls after steady-state warm-up, median and its 95% bootstrap"
        " CI (see each record in the store for sessions, samples and settings).",
        "Fidelity: against onnxruntime CPU fp32 (graph optimizations off) on the original"
        " model, same inputs; 'outside budget' means beyond the tolerance of the precision"
        " the backend ran.",
        f"Speedup: median of the '{BASELINE_PIPELINE}' pipeline on {BASELINE_BACKEND} (same"
        " model, same settings) over the cell's median; both measured apart, not paired.",
        "Energy: the source says how it was obtained (rapl/nvml: measured; estimate: CPU"
        " time x modelled power; model: the cost model's lower bound).",
    ]


def _markdown(data: ReportData, plots: list[tuple[str, str, bytes]]) -> str:
    lines = ["# graphopt benchmark report", ""]
    lines += [f"- {note}" for note in _method_notes(data)] + [""]
    for model in data.models:
        lines += [f"## {model}", "", "| " + " | ".join(_COLUMNS) + " |",
                  "|" + "---|" * len(_COLUMNS)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |"
                  for r in data.rows if r.model == model]
        lines.append("")
        lines += [f"![{caption}]({name})" for name, caption, _ in plots
                  if caption.startswith(f"{model}:")] + [""]
    overall = [(n, c) for n, c, _ in plots if not any(c.startswith(f"{m}:") for m in data.models)]
    if overall:
        lines += ["## All models", ""] + [f"![{c}]({n})" for n, c in overall] + [""]
    if data.not_measured:
        lines += ["## Not measured", "", "| cell | status | reason |", "|---|---|---|"]
        lines += [f"| {m['cell']} | {m['status']} | {m['reason'].replace('|', '/')} |"
                  for m in data.not_measured]
        lines.append("")
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
img{max-width:100%;display:block;margin:1em 0}
.warn{color:#b45f06}"""


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(caption: str, png: bytes) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _html(data: ReportData, plots: list[tuple[str, str, bytes]]) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>graphopt benchmark report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>graphopt benchmark report</h1><ul>"]
    parts += [f"<li>{html.escape(note)}</li>" for note in _method_notes(data)]
    parts.append("</ul>")
    for model in data.models:
        parts.append(f"<h2>{html.escape(model)}</h2>")
        parts.append(_html_table(_COLUMNS, (_cells(r) for r in data.rows if r.model == model)))
        parts += [_img(c, png) for _, c, png in plots if c.startswith(f"{model}:")]
    overall = [(c, png) for _, c, png in plots
               if not any(c.startswith(f"{m}:") for m in data.models)]
    if overall:
        parts.append("<h2>All models</h2>")
        parts += [_img(c, png) for c, png in overall]
    if data.not_measured:
        parts.append("<h2>Not measured</h2>")
        parts.append(_html_table(("cell", "status", "reason"),
                                 ((m["cell"], m["status"], m["reason"])
                                  for m in data.not_measured)))
    parts.append("</body></html>")
    return "\n".join(parts)


# -- public helpers for other self-contained pages (graphopt debug --report) ----------------


def new_figure(width: float, height: float):
    """``(figure, axis)`` of matplotlib's Agg backend, laid out as the report's plots (a
    :class:`GraphoptError` without matplotlib)."""
    return _figure(width, height)


def figure_png(figure) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    return _png(figure)


def html_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An HTML table, every cell escaped."""
    return _html_table(header, rows)


def html_figure(caption: str, png: bytes) -> str:
    """A ``<figure>`` with the PNG inlined as base64 (no external load)."""
    return _img(caption, png)


def html_page(title: str, body: Iterable[str]) -> str:
    """A self-contained page: ``title`` escaped, the report's CSS inline, ``body`` (HTML
    fragments) as given."""
    return "\n".join([f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                      f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
                      f"<h1>{html.escape(title)}</h1>", *body, "</body></html>"])


def write_report(results: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.html``, ``report.md`` and the plots' PNG files into ``out`` (created);
    returns the HTML and Markdown paths."""
    store = ResultStore(results)
    if not store.path.is_file():
        raise GraphoptError(f"{store.path}: no such result store")
    data = load_report(store)
    _matplotlib()
    plots = _plots(data)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, _, png in plots:
        atomic.write_bytes(folder / name, png, what="report plot")
    markdown = atomic.write_text(folder / "report.md", _markdown(data, plots),
                                 what="Markdown report")
    page = atomic.write_text(folder / "report.html", _html(data, plots), what="HTML report")
    return page, markdown
