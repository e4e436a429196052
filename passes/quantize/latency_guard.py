"""Latency-aware quantization: a model quantized for a target is never slower there than its
float input.

With a latency probe in the pass context (``--target BACKEND``), the candidate is measured
against the float model, paired (:meth:`graphopt.latency.LatencyProbe.compare`), in steps:

1. the model as quantized;
2. if it is not faster: grouped and depthwise convolutions kept float as well (their int8
   kernels are the ones runtimes most often lack, as onnxruntime's on shufflenet);
3. if that is not faster either: every layer float, i.e. the input model unchanged.

Only a detectable difference counts as faster (the CI of the speedup above 1), so the result
is the first step that is faster, or float when none is. A step the target cannot run at all
(OpenVINO 2026.4 fails to compile some int8 grouped convolutions) counts as not faster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import onnx_ir as ir

from graphopt.latency import FASTER, CandidateUnsupported, LatencyProbe

__all__ = ["LatencyChoice", "choose_by_latency", "grouped_layers"]


@dataclasses.dataclass
class LatencyChoice:
    float_layers: set[int]
    explanations: list[str]
    speedup: float | None


def grouped_layers(nodes: Sequence[ir.Node]) -> set[int]:
    """Indices of convolutions with ``group > 1`` (depthwise included)."""
    return {index for index, node in enumerate(nodes)
            if node.op_type == "Conv" and node.attributes.get_int("group", 1) > 1}


def choose_by_latency(probe: LatencyProbe, original: ir.Model,
                      quantized_except: Callable[[set[int]], ir.Model],
                      nodes: Sequence[ir.Node], float_layers: set[int]) -> LatencyChoice:
    """The first of the steps in the module docstring that is faster than ``original``."""
    explanations = []
    steps = [("as quantized", set(float_layers))]
    grouped = grouped_layers(nodes) - float_layers
    if grouped:
        steps.append((f"with {len(grouped)} grouped convolutions float",
                      set(float_layers) | grouped))
    for label, kept in steps:
        try:
            comparison = probe.compare(original, quantized_except(kept))
        except CandidateUnsupported as exc:
            explanations.append(f"latency on {probe.target}: int8 {label}: does not run there"
                                f" ({exc})")
            continue
        explanations.append(
            f"latency on {probe.target}: int8 {label}: {comparison.speedup:.3f}x"
            f" [{comparison.ci_low:.3f}-{comparison.ci_high:.3f}] {comparison.verdict}"
            " against the float model")
        if comparison.verdict == FASTER:
            return LatencyChoice(kept, explanations, comparison.speedup)
    explanations.append(f"latency on {probe.target}: no int8 variant was faster than the"
                        " float model, so every layer stays float")
    return LatencyChoice(set(range(len(nodes))), explanations, None)
