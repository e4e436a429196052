"""The compact ``graphopt bench`` table (fits 80 columns) and the plain-words speedup lines.

Compact columns: model, backend, precision, p50 with its 95% CI, the paired speedup against
the baseline on the same backend and the fidelity verdict. p99, throughput, energy, the
speedup's CI, the cosine and startup figures are in ``--verbose`` and in the JSON.

A speedup is measured paired (interleaved blocks in one run), the p50 column is not: the
p50s of two rows are taken at different moments, so background load moves them apart; the
speedup column is the comparison to read. When a rewritten model is no faster on a backend,
:func:`speedup_lines` says so plainly, with the reason when it is a known one (onnxruntime and
OpenVINO apply the usual fusions themselves when they load a model).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from rich import box
from rich.markup import escape
from rich.table import Table

from graphopt.model_io import zoo_name

__all__ = ["by_backend", "compact_table", "display_names", "speedup_cell", "speedup_lines"]

# "same": no detectable difference (the sentence under the table says it in full)
_VERDICT_WORD = {"faster": "faster", "slower": "slower", "no detectable difference": "same"}
_VERDICT_STYLE = {"faster": "green", "slower": "red", "no detectable difference": "dim"}
_SELF_FUSING = {
    "ort": "onnxruntime applies the same fusions when it loads a model",
    "openvino": "OpenVINO applies its own fusions when it compiles a model",
    "tensorrt": "TensorRT fuses layers itself when it builds an engine",
}


def display_names(models: Sequence[str]) -> dict[str, str]:
    """Model spec -> what the table shows: ``zoo:NAME`` as is, a file by its name (the whole
    path when two files share a name)."""
    names = {m: m if zoo_name(m) is not None else os.path.basename(m) or m for m in models}
    taken: dict[str, int] = {}
    for shown in names.values():
        taken[shown] = taken.get(shown, 0) + 1
    return {m: shown if taken[shown] == 1 else m for m, shown in names.items()}


def by_backend(results: list) -> list[int]:
    """Result indices with each backend's rows together (backends in their first-seen order,
    models in measured order, so each backend's baseline heads its rows)."""
    order = {b: i for i, b in enumerate(dict.fromkeys(r.backend for r in results))}
    return sorted(range(len(results)), key=lambda i: (order[results[i].backend], i))


def _ms(us: float) -> str:
    if math.isnan(us):
        return "-"
    ms = us / 1e3  # three or four significant digits: the CI says how many mean anything
    return (f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100
            else f"{ms:.0f}")


def speedup_cell(comparison, is_baseline: bool, *, verbose: bool = False) -> str:
    """A speedup table cell: ``1.23x faster`` (compact) or ``1.234x [1.2-1.3] faster``
    (``verbose``), ``baseline`` or ``-``."""
    if is_baseline:
        return "baseline"
    if comparison is None:
        return "-"
    c = comparison.to_dict()
    style = _VERDICT_STYLE[c["verdict"]]
    if verbose:
        return (f"{c['speedup']:.3f}x [{c['ci_low']:.3f}-{c['ci_high']:.3f}]"
                f" [{style}]{c['verdict']}[/]")
    return f"{c['speedup']:.2f}x [{style}]{_VERDICT_WORD[c['verdict']]}[/]"


def compact_table(results: list, speedups: dict[int, object] | None = None,
                  baselines: set[int] = frozenset()) -> Table:
    """Model, backend, precision, p50 [95% CI], speedup, fidelity verdict: 80 columns."""
    table = Table(title="graphopt bench", title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column("model", overflow="fold")
    table.add_column("backend", overflow="fold")
    table.add_column("prec")
    table.add_column("p50 ms [95% CI]", justify="right", no_wrap=True)
    if speedups is not None:
        table.add_column("speedup", no_wrap=True)
    table.add_column("fidelity")
    names = display_names([r.model for r in results])
    for index in by_backend(results):
        r = results[index]
        s = r.stats
        row = [escape(names[r.model]), escape(r.backend), r.precision,
               f"{_ms(s.p50)} [{_ms(s.median_ci_low)}-{_ms(s.median_ci_high)}]"]
        if speedups is not None:
            row.append(speedup_cell(speedups.get(index), index in baselines))
        row.append("[green]ok[/]" if r.fidelity_ok else "[yellow]WARN[/]")
        table.add_row(*row)
    return table


def speedup_lines(results: list, pairing) -> list[str]:
    """One plain sentence per measured comparison: the speedup with its CI and, for the same
    backend, what it means for the rewrite ("nothing on this backend").

    ``pairing`` has ``comparison_of(index)`` and, optionally, ``baseline_of(index)`` (a
    :class:`graphopt.harness.pairs.PairsRun`); without it every result is compared with the
    first."""
    if pairing is None:
        return []
    names = display_names([r.model for r in results])
    baseline_of = getattr(pairing, "baseline_of", lambda index: 0)
    lines = []
    for index, r in enumerate(results):
        comparison = pairing.comparison_of(index)
        base_index = baseline_of(index)
        if comparison is None or base_index is None or base_index == index:
            continue
        base = results[base_index]
        c = comparison.to_dict()
        head = (f"{names[r.model]} on {r.backend} vs {names[base.model]} on {base.backend}:"
                f" {c['speedup']:.3f}x ({c['confidence']:.0%} CI"
                f" {c['ci_low']:.3f}-{c['ci_high']:.3f}), {c['verdict']}")
        if r.backend == base.backend and r.model != base.model:
            if c["verdict"] == "no detectable difference":
                family = r.backend.split("-")[0].split(":")[0].split("@")[0]
                why = _SELF_FUSING.get(family)
                if str(r.settings.get("graph_optimization", "")).startswith("disable"):
                    why = None
                head += (": the rewrite changed nothing measurable on this backend"
                         + (f" ({why})" if why else ""))
            elif c["verdict"] == "slower":
                head += ": the rewritten model is slower on this backend"
        lines.append(head)
    if lines:
        lines.append("p50s are measured one after the other and move with background load;"
                     " the speedup is measured interleaved, in one run: compare that")
    return lines
