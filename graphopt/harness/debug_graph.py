"""The graph side of ``graphopt debug``: a model saved once, and the small variants it runs as.

A debugging session runs one model many times in slightly different forms: with some
intermediate tensors exposed as outputs, with one Q/DQ pair bypassed, or cut at a point where
the reference's tensors are fed in instead of the model's own (bisection). Copying a model's
weights for every variant would cost one model's memory per run, so :class:`PreparedModel`
writes the model once into a scratch folder with every weight in one external data file and
keeps only the weightless graph (an ``onnx.ModelProto`` whose initializers point into that
file). A variant is a copy of that small proto, written beside the data file; onnxruntime
maps the weights in place, OpenVINO reads them from the file.

Vocabulary:

- a *constant* node computes from initializers only (``Constant``, the ``DequantizeLinear``
  of a quantized weight); it belongs to no cut: every variant keeps the ones it needs;
- an *activation Q/DQ pair* is a ``QuantizeLinear`` whose input is not constant followed by a
  ``DequantizeLinear`` of its output: ``before`` is the float tensor, ``after`` what the
  readers see;
- the *cut* at position ``i`` of the non-constant nodes (in graph order) is the set of values
  computed before position ``i`` (or graph inputs) that are read at or after it, or are graph
  outputs: feeding those values is enough to run the rest of the graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

__all__ = ["QdqPair", "PreparedModel", "QDQ_OPS", "HYBRID_PREFIX", "can_join", "hybrid"]

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_DATA_SUFFIX = ".data"
_UNKNOWN_TENSOR_BYTES = 1 << 20
HYBRID_PREFIX = "candidate/"
_INLINE_BYTES = 1024  # shapes and other small constants stay inline (shape inference reads them)


@dataclasses.dataclass(frozen=True)
class QdqPair:
    """An activation's QuantizeLinear -> DequantizeLinear (node indices and value names)."""

    quantize: int
    dequantize: int
    before: str
    after: str
    name: str  # the QuantizeLinear node's name
    one_sided: bool = False  # zero point at the type's minimum: the pair clamps at 0 (ReLU)


class PreparedModel:
    """``model`` written once into ``folder`` as ``LABEL.onnx`` + ``LABEL.onnx.data``, with
    its graph held weightless for building variants (see the module docstring)."""

    def __init__(self, model: ir.Model, folder: Path, label: str) -> None:
        self.folder = Path(folder)
        self.label = label
        path = self.folder / f"{label}.onnx"
        ir.save(model, path, external_data=f"{label}.onnx{_DATA_SUFFIX}",
                size_threshold_bytes=_INLINE_BYTES)
        proto = onnx.load(path, load_external_data=False)
        self.proto = proto
        self.nodes = list(proto.graph.node)
        self.initializers = {t.name for t in proto.graph.initializer}
        self.inputs = [i.name for i in proto.graph.input if i.name not in self.initializers]
        self.outputs = [o.name for o in proto.graph.output]
        self.producer: dict[str, int] = {}
        self.readers: dict[str, list[int]] = {}
        for index, node in enumerate(self.nodes):
            for name in node.output:
                if name:
                    self.producer[name] = index
            for name in node.input:
                if name:
                    self.readers.setdefault(name, []).append(index)
        self.constant = self._constant_nodes()
        self.order = [i for i in range(len(self.nodes)) if i not in self.constant]
        self.position = {node: pos for pos, node in enumerate(self.order)}
        self.pairs = self._qdq_pairs()
        self.value_info = self._value_info()
        self._cuts: list[list[str]] | None = None

    # -- structure -------------------------------------------------------------------------

    def _constant_nodes(self) -> set[int]:
        constant_values = set(self.initializers)
        constant: set[int] = set()
        for index, node in enumerate(self.nodes):
            if all(not name or name in constant_values for name in node.input):
                constant.add(index)
                constant_values.update(name for name in node.output if name)
        return constant

    def _qdq_pairs(self) -> list[QdqPair]:
        pairs = []
        for index in self.order:
            node = self.nodes[index]
            if node.op_type != "QuantizeLinear":
                continue
            for reader in self.readers.get(node.output[0], []):
                if self.nodes[reader].op_type == "DequantizeLinear":
                    pairs.append(QdqPair(index, reader, node.input[0],
                                         self.nodes[reader].output[0],
                                         node.name or node.output[0], self._one_sided(node)))
        return pairs

    def _one_sided(self, quantize: onnx.NodeProto) -> bool:
        """Whether the QuantizeLinear's zero point is its type's minimum (a quantizer that
        removed a ReLU writes such a pair: the clamp at the minimum computes the ReLU)."""
        if len(quantize.input) < 3 or not quantize.input[2]:
            return True  # no zero point: uint8, zero point 0
        tensor = next((t for t in self.proto.graph.initializer if t.name == quantize.input[2]),
                      None)
        if tensor is None or tensor.data_location == onnx.TensorProto.EXTERNAL:
            return False
        zero = onnx.numpy_helper.to_array(tensor)
        if not np.issubdtype(zero.dtype, np.integer):
            return False
        return bool(np.all(zero == np.iinfo(zero.dtype).min))

    def _value_info(self) -> dict[str, onnx.ValueInfoProto]:
        try:
            inferred = onnx.shape_inference.infer_shapes(self.proto)
        except Exception:  # an operator shape inference does not know: types stay unknown
            inferred = self.proto
        graph = inferred.graph
        return {v.name: v for v in (*graph.input, *graph.value_info, *graph.output)}

    def node_name(self, index: int) -> str:
        node = self.nodes[index]
        return node.name or f"{node.op_type}#{index}"

    def is_activation(self, name: str) -> bool:
        """A value computed from the inputs (not a weight or a constant's output)."""
        if name in self.inputs:
            return True
        index = self.producer.get(name)
        return index is not None and index not in self.constant

    def estimated_bytes(self, name: str, batch: int) -> int:
        """Bytes of one run's ``name`` from its inferred shape (dynamic dims: ``batch`` for
        the first, 64 for the others); 1 MiB when the shape is unknown."""
        info = self.value_info.get(name)
        if info is None or not info.type.HasField("tensor_type"):
            return _UNKNOWN_TENSOR_BYTES
        tensor = info.type.tensor_type
        if not tensor.HasField("shape"):
            return _UNKNOWN_TENSOR_BYTES
        count = 1
        for axis, dim in enumerate(tensor.shape.dim):
            count *= dim.dim_value if dim.HasField("dim_value") else (batch if axis == 0 else 64)
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).itemsize \
            if tensor.elem_type else 4
        return count * itemsize

    def cut_values(self, position: int) -> list[str]:
        """The values a run starting at non-constant position ``position`` must be fed."""
        if self._cuts is None:
            self._cuts = self._all_cuts()
        return self._cuts[position]

    def _all_cuts(self) -> list[list[str]]:
        """``cut_values`` of every position, in one sweep: a value is live from the
        position after the one computing it (graph inputs: from 0) up to its last reader
        (graph outputs: to the end)."""
        end = len(self.order)
        born: dict[str, int] = {name: -1 for name in self.inputs}
        for pos, index in enumerate(self.order):
            for name in self.nodes[index].output:
                if name:
                    born[name] = pos
        last: dict[str, int] = {}
        for name in born:
            reads = [self.position[r] for r in self.readers.get(name, []) if r in self.position]
            last[name] = end if name in self.outputs else max(reads, default=-2)
        by_birth: dict[int, list[str]] = {}
        for name, pos in born.items():
            by_birth.setdefault(pos, []).append(name)
        live: dict[str, None] = {}
        cuts = []
        for position in range(end + 1):
            for name in by_birth.get(position - 1, []):
                if last[name] >= position:
                    live[name] = None
            for name in [n for n in live if last[n] < position]:
                del live[name]
            cuts.append(list(live))
        return cuts

    # -- variants --------------------------------------------------------------------------

    def _copy(self) -> onnx.ModelProto:
        copy = onnx.ModelProto()
        copy.CopyFrom(self.proto)
        return copy

    def _output_info(self, name: str) -> onnx.ValueInfoProto:
        info = self.value_info.get(name)
        if info is not None and info.type.HasField("tensor_type") and \
                info.type.tensor_type.elem_type:
            copy = onnx.ValueInfoProto()
            copy.CopyFrom(info)
            return copy
        return onnx.helper.make_empty_tensor_value_info(name)

    def exposing(self, names: Sequence[str]) -> onnx.ModelProto:
        """The model whose outputs are exactly ``names`` (graph inputs excluded)."""
        proto = self._copy()
        del proto.graph.output[:]
        proto.graph.output.extend(self._output_info(n) for n in dict.fromkeys(names)
                                  if n not in self.inputs)
        return proto

    def bypassing(self, pairs: Iterable[QdqPair]) -> onnx.ModelProto:
        """The model with each pair replaced by the float operation it stands for: a ReLU
        for a one-sided pair (the clamp at 0 is the model's ReLU when a quantizer removed
        it, and changes nothing on non-negative data), else nothing (the readers read the
        float tensor; an Identity keeps a graph output's name). Only the rounding and the
        range's upper clipping are gone."""
        proto = self._copy()
        graph = proto.graph
        replace: dict[int, onnx.NodeProto | None] = {}
        rewire: dict[str, str] = {}
        for pair in pairs:  # in the DequantizeLinear's place: the Q may feed other pairs
            if not pair.one_sided and pair.after not in self.outputs:
                rewire[pair.after] = pair.before  # no Identity: runtimes merge its names
                replace[pair.dequantize] = None
                continue
            op = "Relu" if pair.one_sided else "Identity"
            replace[pair.dequantize] = onnx.helper.make_node(
                op, [pair.before], [pair.after], name=f"{pair.name}_disabled")
        kept = []
        for index, node in enumerate(graph.node):
            node = replace.get(index, node)
            if node is None:
                continue
            for slot, name in enumerate(node.input):
                if name in rewire:
                    node.input[slot] = rewire[name]
            kept.append(node)
        del graph.node[:]
        graph.node.extend(kept)
        return proto

    def starting_at(self, position: int, arrays: Mapping[str, np.ndarray]) -> onnx.ModelProto:
        """The graph from non-constant position ``position`` on, its cut values turned into
        graph inputs typed after ``arrays`` (one run's values, keyed by cut value name)."""
        proto = self._copy()
        graph = proto.graph
        before = {self.order[p] for p in range(position)}
        kept = [node for index, node in enumerate(graph.node) if index not in before]
        del graph.node[:]
        graph.node.extend(kept)
        cut = self.cut_values(position)
        legacy = [i for i in graph.input if i.name in self.initializers]
        del graph.input[:]
        for name in cut:
            array = arrays[name]
            graph.input.append(onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape)))
        graph.input.extend(legacy)
        return proto

    def write(self, proto: onnx.ModelProto, name: str) -> Path:
        """``proto`` written beside the data file (its weights resolve), as ``name``."""
        path = self.folder / name
        path.write_bytes(proto.SerializeToString())
        return path


def can_join(reference: PreparedModel, candidate: PreparedModel) -> bool:
    """Whether one graph can hold both models' nodes (the same operator set versions)."""
    def opsets(model: PreparedModel) -> dict[str, int]:
        return {o.domain or "ai.onnx": o.version for o in model.proto.opset_import}

    return opsets(reference) == opsets(candidate)


def _slice(model: PreparedModel, targets: Iterable[str]) -> set[int]:
    """The nodes ``targets`` are computed from."""
    needed: set[int] = set()
    stack = [model.producer[t] for t in targets if t in model.producer]
    while stack:
        index = stack.pop()
        if index in needed:
            continue
        needed.add(index)
        stack.extend(model.producer[name] for name in model.nodes[index].input
                     if name in model.producer)
    return needed


def hybrid(reference: PreparedModel, candidate: PreparedModel, position: int,
           to_reference: Mapping[str, str],
           reference_outputs: Sequence[str] = ()) -> onnx.ModelProto:
    """One graph: the reference's nodes computing the cut values of the candidate at
    ``position`` (and ``reference_outputs``, which become outputs too), then the candidate's
    nodes from there on reading them (names of the candidate's part prefixed with
    :data:`HYBRID_PREFIX`; its outputs are the candidate's outputs so prefixed, or the
    reference's value where an output is a cut value). A bisection step in one run instead
    of two; at position 0 with the reference's outputs, both models in one run."""
    cut = candidate.cut_values(position)
    fed = {name: to_reference[name] for name in cut}

    def rename(name: str) -> str:
        if not name:
            return name
        return fed.get(name, HYBRID_PREFIX + name)

    proto = onnx.ModelProto()
    proto.CopyFrom(reference.proto)
    graph = proto.graph
    needed = _slice(reference, [*fed.values(), *reference_outputs])
    ref_nodes = [node for index, node in enumerate(reference.nodes) if index in needed]
    before = {candidate.order[p] for p in range(position)}
    cand_nodes = []
    for index, node in enumerate(candidate.nodes):
        if index in before:
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = HYBRID_PREFIX + (node.name or f"{node.op_type}#{index}")
        copy.input[:] = [rename(n) for n in node.input]
        copy.output[:] = [HYBRID_PREFIX + n if n else n for n in node.output]
        cand_nodes.append(copy)
    del graph.node[:]
    graph.node.extend([*ref_nodes, *cand_nodes])
    for tensor in candidate.proto.graph.initializer:
        copy = graph.initializer.add()
        copy.CopyFrom(tensor)
        copy.name = HYBRID_PREFIX + tensor.name
    del graph.value_info[:]
    del graph.output[:]
    names = [rename(n) for n in candidate.outputs]
    names += [n for n in reference_outputs if n not in names]
    graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    proto.ir_version = max(proto.ir_version, candidate.proto.ir_version, 4)
    return proto
