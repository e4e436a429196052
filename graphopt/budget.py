"""Fidelity budgets: how far a model may move from its reference, defined once.

A budget is a conjunction of terms written ``metric OP limit``, comma-separated::

    sqnr>=30,accuracy_drop<=0.5

=================  ====  ==========================================================
metric             op    meaning (see :mod:`graphopt.verify` for the definitions)
=================  ====  ==========================================================
``sqnr``           >=    worst output SQNR in dB
``cosine``         >=    worst output cosine similarity
``top1``           >=    top-1 agreement with the reference, a share in [0, 1]
``accuracy_drop``  <=    task accuracy lost, in percentage points (needs labels)
``max_rel``        <=    worst max |y - r| / max |r|
=================  ====  ==========================================================

The pipeline judges lossy passes on the user's budget and lossless passes on
:func:`lossless_budget` of the precision the model computes in; ``graphopt bench`` judges a
backend's outputs on :func:`precision_budget` of the precision it actually ran. A term whose
figure is not available (no classifier output for ``top1``, no labels for ``accuracy_drop``)
is reported as not checked, never as passed silently.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

from graphopt.errors import GraphoptError
from graphopt.precision import QUANTIZED_PRECISIONS

__all__ = [
    "LOSSLESS_MAX_REL",
    "METRICS",
    "BudgetTerm",
    "Budget",
    "Judgement",
    "PRECISION_BUDGETS",
    "precision_budget",
    "lossless_budget",
]

# metric -> (operator, description)
METRICS: dict[str, tuple[str, str]] = {
    "sqnr": (">=", "output SQNR in dB"),
    "cosine": (">=", "output cosine similarity"),
    "top1": (">=", "top-1 agreement with the reference (0..1)"),
    "accuracy_drop": ("<=", "task accuracy lost in percentage points"),
    "max_rel": ("<=", "max |y - r| / max |r|"),
}
LOSSLESS_MAX_REL = 1e-4
"""What a lossless rewrite may move fp32 outputs by: float reordering (e.g. BN folded into
weights), nothing more."""
_TERM = re.compile(r"^\s*([a-z_0-9]+)\s*(>=|<=)\s*([^\s]+)\s*$")


@dataclasses.dataclass(frozen=True)
class BudgetTerm:
    """One limit, e.g. ``sqnr >= 30``."""

    metric: str
    limit: float

    @property
    def operator(self) -> str:
        return METRICS[self.metric][0]

    def holds(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value >= self.limit if self.operator == ">=" else value <= self.limit

    def __str__(self) -> str:
        return f"{self.metric}{self.operator}{self.limit:g}"


@dataclasses.dataclass(frozen=True)
class Judgement:
    """The outcome of judging figures on a budget."""

    budget: Budget
    failures: tuple[str, ...]
    unchecked: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"budget": str(self.budget), "ok": self.ok, "failures": list(self.failures),
                "unchecked": list(self.unchecked)}


@dataclasses.dataclass(frozen=True)
class Budget:
    """A conjunction of :class:`BudgetTerm`; the empty budget accepts everything."""

    terms: tuple[BudgetTerm, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Budget:
        """``"sqnr>=30,accuracy_drop<=0.5"`` -> Budget; a bad term is one readable error."""
        if text is None or not text.strip():
            return cls()
        terms = []
        for item in text.split(","):
            match = _TERM.match(item)
            if match is None:
                raise GraphoptError(
                    f"budget term {item.strip()!r} is not METRIC>=VALUE or METRIC<=VALUE"
                    f" (metrics: {_metric_list()})"
                )
            metric, operator, raw = match.groups()
            if metric not in METRICS:
                raise GraphoptError(
                    f"budget: unknown metric {metric!r} (metrics: {_metric_list()})"
                )
            expected = METRICS[metric][0]
            if operator != expected:
                raise GraphoptError(
                    f"budget: {metric} takes {expected} ({metric}{expected}{raw}), not {operator}"
                )
            try:
                limit = float(raw)
            except ValueError:
                raise GraphoptError(f"budget: {item.strip()!r}: {raw!r} is not a number") from None
            terms.append(BudgetTerm(metric, limit))
        return cls(tuple(terms))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms) or "none"

    def term(self, metric: str) -> BudgetTerm | None:
        return next((t for t in self.terms if t.metric == metric), None)

    def judge(self, fidelity, *, accuracy_drop: float | None = None) -> Judgement:
        """Judge a :class:`~graphopt.verify.Fidelity` (and an accuracy drop in points)."""
        figures = figures_of(fidelity, accuracy_drop=accuracy_drop)
        failures, unchecked = [], []
        for term in self.terms:
            value = figures.get(term.metric)
            if value is None:
                unchecked.append(f"{term} (no {METRICS[term.metric][1]} for this model)")
            elif not term.holds(value):
                failures.append(f"{term.metric} {_format(term.metric, value)} breaks {term}")
        return Judgement(self, tuple(failures), tuple(unchecked))


def figures_of(fidelity, *, accuracy_drop: float | None = None) -> Mapping[str, float | None]:
    """The budget metrics of a fidelity (``None`` where one does not apply)."""
    return {
        "sqnr": fidelity.sqnr_db,
        "cosine": fidelity.cosine,
        "top1": fidelity.top1_agreement,
        "accuracy_drop": accuracy_drop,
        "max_rel": fidelity.max_rel,
    }


def _format(metric: str, value: float) -> str:
    if metric == "sqnr":
        return "inf dB" if math.isinf(value) else f"{value:.1f} dB"
    if metric == "max_rel":
        return f"{value:.2e}"
    if metric == "accuracy_drop":
        return f"{value:.2f} points"
    return f"{value:.4f}" if metric == "cosine" else f"{value:.3f}"


def _metric_list() -> str:
    return ", ".join(f"{m}{op}" for m, (op, _) in METRICS.items())


# The one place the tolerance of each arithmetic precision is defined:
# - fp32: the lossless limit (float reordering only, e.g. a runtime's own fusions).
# - fp16: unit roundoff 2^-11 ~ 4.9e-4 per operation; 1e-2 of the output range leaves room
#   for accumulation over a deep network, and the direction must stay (cosine >= 0.99).
# - bf16: 8 mantissa bits, unit roundoff 2^-8 ~ 3.9e-3 (8x fp16), hence 5e-2.
# - int8: element-wise errors of a calibrated quantization are not bounded usefully by a
#   relative max; the output direction is (cosine >= 0.98).
# - mixed, int8-weights, int4-weights (the other quantized graphs of graphopt.precision): the
#   same reasoning as int8, whose tolerance they share.
PRECISION_BUDGETS: dict[str, Budget] = {
    "fp32": Budget((BudgetTerm("max_rel", LOSSLESS_MAX_REL),)),
    "fp16": Budget((BudgetTerm("max_rel", 1e-2), BudgetTerm("cosine", 0.99))),
    "bf16": Budget((BudgetTerm("max_rel", 5e-2), BudgetTerm("cosine", 0.99))),
    **{name: Budget((BudgetTerm("cosine", 0.98),)) for name in QUANTIZED_PRECISIONS},
}


def precision_budget(precision: str) -> Budget:
    """The tolerance of outputs computed at ``precision`` (unknown names: fp32's)."""
    return PRECISION_BUDGETS.get(precision, PRECISION_BUDGETS["fp32"])


def lossless_budget(precision: str = "fp32") -> Budget:
    """What a lossless rewrite may change in a model that computes at ``precision``: only
    the max relative error term (rounding once instead of twice moves outputs by the
    precision's roundoff, never their direction)."""
    term = precision_budget(precision).term("max_rel")
    return Budget((term,)) if term is not None else PRECISION_BUDGETS["fp32"]
