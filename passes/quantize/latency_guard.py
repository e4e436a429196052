"""Latency-aware quantization: a model quantized for a target is never slower there than its
float input.

With a latency probe in the pass context (``--target BACKEND``), candidates are measured
against the float model, paired (:meth:`graphopt.latency.LatencyProbe.compare`), in rounds:

1. the model as quantized, in each placement variant (the quantize pass's: as placed, and
   without the Q/DQ pairs on Conv outputs that nothing quantized reads, which onnxruntime
   needs and OpenVINO can be slower with);
2. if none is faster: the same with grouped and depthwise convolutions kept float as well
   (their int8 kernels are the ones runtimes most often lack, as onnxruntime's on shufflenet);
3. if none is faster either: every layer float, i.e. the input model unchanged.

Only a detectable difference counts as faster (the CI of the speedup above 1). When several
variants of a round are faster, the later one (fewer pairs, so at least as faithful) is kept
unless an earlier one is detectably faster than it, measured paired against it. A candidate
the target cannot run at all (OpenVINO 2026.4 fails to compile some int8 grouped
convolutions) counts as not faster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import onnx_ir as ir

from graphopt.latency import FASTER, CandidateUnsupported, LatencyComparison, LatencyProbe

__all__ = ["LatencyChoice", "Variant", "choose_by_latency", "grouped_layers"]


@dataclasses.dataclass
class Variant:
    """A placement: ``build(float layers)`` gives the quantized copy with those layers float."""

    label: str
    build: Callable[[set[int]], ir.Model]


@dataclasses.dataclass
class LatencyChoice:
    float_layers: set[int]
    explanations: list[str]
    speedup: float | None
    variant: int = 0  # index into the variants


@dataclasses.dataclass
class _Faster:
    variant: int
    model: ir.Model
    speedup: float


def grouped_layers(nodes: Sequence[ir.Node]) -> set[int]:
    """Indices of convolutions with ``group > 1`` (depthwise included)."""
    return {index for index, node in enumerate(nodes)
            if node.op_type == "Conv" and node.attributes.get_int("group", 1) > 1}


def _line(target: str, label: str, comparison: LatencyComparison, against: str) -> str:
    return (f"latency on {target}: int8 {label}: {comparison.speedup:.3f}x"
            f" [{comparison.ci_low:.3f}-{comparison.ci_high:.3f}] {comparison.verdict}"
            f" against {against}")


def choose_by_latency(probe: LatencyProbe, original: ir.Model, variants: Sequence[Variant],
                      nodes: Sequence[ir.Node], float_layers: set[int]) -> LatencyChoice:
    """The first round of the module docstring with a variant faster than ``original``."""
    explanations: list[str] = []
    rounds = [("", set(float_layers))]
    grouped = grouped_layers(nodes) - float_layers
    if grouped:
        rounds.append((f", with {len(grouped)} grouped convolutions float",
                       set(float_layers) | grouped))
    for suffix, kept in rounds:
        faster = []
        for index, variant in enumerate(variants):
            label = f"{variant.label}{suffix}"
            model = variant.build(kept)
            try:
                comparison = probe.compare(original, model)
            except CandidateUnsupported as exc:
                explanations.append(f"latency on {probe.target}: int8 {label}: does not run"
                                    f" there ({exc})")
                continue
            explanations.append(_line(probe.target, label, comparison, "the float model"))
            if comparison.verdict == FASTER:
                faster.append(_Faster(index, model, comparison.speedup))
        if faster:
            best = faster[-1]
            for other in reversed(faster[:-1]):
                head = probe.compare(best.model, other.model)
                explanations.append(_line(probe.target, f"{variants[other.variant].label}"
                                          f"{suffix}", head, variants[best.variant].label))
                if head.verdict == FASTER:
                    best = other
            explanations.append(f"latency on {probe.target}: kept int8"
                                f" {variants[best.variant].label}{suffix}")
            return LatencyChoice(kept, explanations, best.speedup, best.variant)
    explanations.append(f"latency on {probe.target}: no int8 variant was faster than the"
                        " float model, so every layer stays float")
    return LatencyChoice(set(range(len(nodes))), explanations, None)
