"""Which tensor of a candidate model stands for which tensor of its reference.

Rewrites keep most value names: graphopt's lossless passes keep the names of the values they
do not remove, quantizers put a QuantizeLinear -> DequantizeLinear pair after a tensor and
leave the tensor's own name on the float side (onnxruntime names the readers' side
``X_DequantizeLinear_Output``; on a graph output it is the producer that gets a new name,
``Y_QuantizeLinear_Input``, and the DequantizeLinear writes ``Y``). So a candidate value
matches the reference value of the same name, looked through its activation Q/DQ pair:

- the compared candidate tensor is what the readers see (after the pair, quantization
  included), ``before_qdq`` the float tensor the pair quantizes;
- graph outputs whose names changed match by position, as in verification;
- weights and the values computed from weights only are not matched (they are not
  activations), nor are candidate values that the reference has no name for (fused or new
  nodes: their error shows at the next matched tensor).

Matches come in the reference's graph order (topological).
"""

from __future__ import annotations

import dataclasses

from graphopt.harness.debug_graph import PreparedModel

__all__ = ["TensorMatch", "match_tensors"]


@dataclasses.dataclass(frozen=True)
class TensorMatch:
    """One reference tensor and the candidate tensor compared with it."""

    reference: str
    candidate: str
    before_qdq: str | None  # the candidate's float tensor when a Q/DQ pair sits in between
    node: str  # the reference node computing it ("" for a graph input)
    op_type: str
    position: int  # the reference node's index (-1 for graph inputs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def match_tensors(reference: PreparedModel, candidate: PreparedModel) -> list[TensorMatch]:
    """Every matched activation, in the reference's graph order (module docstring)."""
    after = {pair.before: pair.after for pair in candidate.pairs}
    dequantized = {pair.after: pair.before for pair in candidate.pairs}
    found: dict[str, tuple[str, str | None]] = {}
    for name in candidate.inputs:
        found.setdefault(name, (after.get(name, name), name if name in after else None))
    qdq_nodes = {p.quantize for p in candidate.pairs} | {p.dequantize for p in candidate.pairs}
    for index in candidate.order:
        node = candidate.nodes[index]
        if index in qdq_nodes:
            continue
        for name in node.output:
            if not name:
                continue
            post = after.get(name, name)
            before = name if post != name else None
            if reference.is_activation(name):
                found.setdefault(name, (post, before))
            elif post != name and reference.is_activation(post):
                found.setdefault(post, (post, before))
    if len(reference.outputs) == len(candidate.outputs):
        for ref_name, cand_name in zip(reference.outputs, candidate.outputs, strict=True):
            if ref_name not in found:
                found[ref_name] = (cand_name, dequantized.get(cand_name))
    matches = []
    for ref_name, (cand_name, before) in found.items():
        if not reference.is_activation(ref_name):
            continue
        index = reference.producer.get(ref_name, -1)
        node = reference.node_name(index) if index >= 0 else ""
        op_type = reference.nodes[index].op_type if index >= 0 else "input"
        matches.append(TensorMatch(ref_name, cand_name, before, node, op_type, index))
    matches.sort(key=lambda m: m.position)
    return matches
