"""The latency probe: how passes ask "is this faster?" without importing a backend.

A pass that decides by speed ("keep float where int8 is slower", "split only where it pays")
declares ``needs = {"latency"}`` and receives a :class:`LatencyProbe` in its
:class:`~graphopt.pass_context.PassContext`. The probe is implemented in
``graphopt.backends.probe`` on a runner and injected by the CLI or the harness, so passes/
never imports backends/.

``compare(baseline, candidate)`` measures both models paired (alternating blocks, so machine
drift hits both sides) and returns the speedup ``baseline time / candidate time`` with a
confidence interval and a verdict. Decisions act only on a detectable difference:
``verdict == "faster"`` means the CI of the speedup lies above 1. A target that cannot run the
candidate at all raises :class:`CandidateUnsupported`, so a pass can fall back to a variant it
does run.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol, runtime_checkable

import onnx_ir as ir

from graphopt.errors import GraphoptError

__all__ = [
    "CandidateUnsupported",
    "Verdict",
    "FASTER",
    "SLOWER",
    "NO_DIFFERENCE",
    "verdict_of",
    "LatencyEstimate",
    "LatencyComparison",
    "LatencyProbe",
]

Verdict = Literal["faster", "slower", "no detectable difference"]
FASTER: Verdict = "faster"
SLOWER: Verdict = "slower"
NO_DIFFERENCE: Verdict = "no detectable difference"


class CandidateUnsupported(GraphoptError):
    """The target runs the baseline but cannot load or run the candidate (the message says
    why, in the runtime's words)."""


def verdict_of(ci_low: float, ci_high: float) -> Verdict:
    """The verdict of a speedup CI (baseline / candidate): above 1 is faster."""
    if ci_low > 1.0:
        return FASTER
    if ci_high < 1.0:
        return SLOWER
    return NO_DIFFERENCE


@dataclasses.dataclass(frozen=True)
class LatencyEstimate:
    """The median latency of one model on the probe's target, with its CI."""

    target: str
    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    samples: int
    method: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LatencyComparison:
    """Paired comparison: ``speedup = baseline time / candidate time`` (> 1: candidate faster)."""

    target: str
    speedup: float
    ci_low: float
    ci_high: float
    confidence: float
    baseline: LatencyEstimate
    candidate: LatencyEstimate
    stop_reason: str
    method: str

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.ci_low, self.ci_high)

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "speedup": self.speedup,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "verdict": self.verdict,
            "stop_reason": self.stop_reason,
            "method": self.method,
            "baseline": self.baseline.to_dict(),
            "candidate": self.candidate.to_dict(),
        }


@runtime_checkable
class LatencyProbe(Protocol):
    """Measures models on one target (a backend spec such as ``ort-cpu``)."""

    target: str

    def measure(self, model: ir.Model) -> LatencyEstimate:
        """Median latency of ``model`` with a CI."""
        ...

    def compare(self, baseline: ir.Model, candidate: ir.Model) -> LatencyComparison:
        """Paired measurement of two models with the same inputs."""
        ...
