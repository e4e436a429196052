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


def _twins(reference: PreparedModel, candidate: PreparedModel) -> list[tuple[int, int]]:
    """(reference node, candidate node) pairs with the same name and as many inputs (the
    operator may have changed: cleanup writes a two-input ``Sum`` as ``Add``)."""
    by_name = {node.name: index for index, node in enumerate(reference.nodes) if node.name}
    twins = []
    for index in candidate.order:
        node = candidate.nodes[index]
        twin = by_name.get(node.name) if node.name else None
        if twin is not None and len(reference.nodes[twin].input) == len(node.input):
            twins.append((twin, index))
    return twins


def match_tensors(reference: PreparedModel, candidate: PreparedModel) -> list[TensorMatch]:
    """Every matched activation, in the reference's graph order (module docstring)."""
    after = {pair.before: pair.after for pair in candidate.pairs}
    dequantized = {pair.after: pair.before for pair in candidate.pairs}
    found: dict[str, tuple[str, str | None]] = {}  # reference name -> (candidate, before)
    claimed: set[str] = set()

    def claim(ref_name: str, cand_name: str) -> None:
        if ref_name in found or cand_name in claimed or not reference.is_activation(ref_name):
            return
        if not candidate.is_activation(cand_name):
            return
        found[ref_name] = (cand_name, dequantized.get(cand_name))
        claimed.add(cand_name)
        claimed.update(b for b in [dequantized.get(cand_name)] if b)

    # What a node reads is what its twin reads: fusions give the first node of a pattern the
    # whole pattern's result under the first node's output name, so readers are the evidence.
    for ref_index, cand_index in _twins(reference, candidate):
        pairs = zip(reference.nodes[ref_index].input, candidate.nodes[cand_index].input,
                    strict=False)
        for ref_name, cand_name in pairs:
            if ref_name and cand_name:
                claim(ref_name, cand_name)
    for name in candidate.inputs:
        claim(name, after.get(name, name))
    if len(reference.outputs) == len(candidate.outputs):
        for ref_name, cand_name in zip(reference.outputs, candidate.outputs, strict=True):
            claim(ref_name, cand_name)
    qdq_nodes = {p.quantize for p in candidate.pairs} | {p.dequantize for p in candidate.pairs}
    for index in candidate.order:
        if index in qdq_nodes:
            continue
        for name in candidate.nodes[index].output:
            if name:
                claim(name, after.get(name, name))
                claim(after.get(name, name), after.get(name, name))
    matches = []
    for ref_name, (cand_name, before) in found.items():
        index = reference.producer.get(ref_name, -1)
        node = reference.node_name(index) if index >= 0 else ""
        op_type = reference.nodes[index].op_type if index >= 0 else "input"
        matches.append(TensorMatch(ref_name, cand_name, before, node, op_type, index))
    matches.sort(key=lambda m: m.position)
    return matches
