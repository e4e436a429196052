"""A seeded model fuzzer for the CLI: mutants of small models, their outcomes, a table.

Three classes of mutants, made from three small base models (a CNN, an MLP and an opset-9
model with legacy habits):

- ``bitflip``: a few random bits of the serialized file flipped;
- ``truncate``: the file cut at a random byte;
- ``semantic``: a well-formed protobuf with one deliberate change (a negative, zero or huge
  dimension, a wrong dtype, a bad attribute, a duplicate initializer, NaN/inf weights, another
  opset, a dangling or missing input, a sparse initializer, a Constant in external data, ...).

Each mutant goes through ``graphopt optimize`` and ``graphopt inspect`` in-process; the outcome
is one of :data:`OUTCOMES`. Good outcomes are exit 0 with an output that onnxruntime computes
the same as the mutant itself, or exit 2 with exactly one line on stderr.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graphopt.zoo.generated import GENERATED_MODELS

__all__ = ["OUTCOMES", "BAD_OUTCOMES", "Mutant", "mutants", "classify", "table"]

OUTCOMES = ("exit 0, equal", "exit 2, one line", "exit 0, different", "exit 2, extra lines",
            "exit 1 or other", "traceback")
BAD_OUTCOMES = frozenset(OUTCOMES[2:])
CLASSES = ("bitflip", "truncate", "semantic")
_RTOL = 1e-4


@dataclasses.dataclass
class Mutant:
    cls: str
    kind: str
    base: str
    data: bytes
    extra_files: dict[str, bytes] = dataclasses.field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, payload in self.extra_files.items():
            (folder / name).write_bytes(payload)
        path = folder / "model.onnx"
        path.write_bytes(self.data)
        return path


def _legacy() -> onnx.ModelProto:
    """Opset 9: initializers listed as inputs, Conv + BN, Dropout, Identity, Sum."""
    rng = np.random.default_rng(7)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "scale"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "bias"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "mean"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "var"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Dropout", ["r"], ["d"]),
        helper.make_node("Identity", ["d"], ["i"]),
        helper.make_node("Sum", ["i", "r"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in inits]
    graph = helper.make_graph(nodes, "legacy", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    return model


BASE_MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "tiny_cnn": GENERATED_MODELS["tiny_cnn"],
    "mlp": GENERATED_MODELS["mlp"],
    "legacy": _legacy,
}


# --------------------------------------------------------------------------- semantic damage


def _dims_of(model: onnx.ModelProto, rng) -> onnx.TensorShapeProto.Dimension | None:
    values = [*model.graph.input, *model.graph.output]
    values = [v for v in values if v.type.tensor_type.HasField("shape")
              and v.type.tensor_type.shape.dim]
    if not values:
        return None
    dims = values[rng.integers(len(values))].type.tensor_type.shape.dim
    return dims[rng.integers(len(dims))]


def _set_dim(value: int):
    def mutate(model, rng):
        dim = _dims_of(model, rng)
        if dim is not None:
            dim.dim_value = value
    return mutate


def _elem_type(model, rng):
    value = model.graph.input[0]
    value.type.tensor_type.elem_type = int(rng.choice([2, 3, 5, 6, 7, 9, 10, 11, 16]))


def _node(model, rng) -> onnx.NodeProto:
    return model.graph.node[rng.integers(len(model.graph.node))]


def _attr_int(model, rng):
    candidates = [(n, a) for n in model.graph.node for a in n.attribute
                  if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
    if not candidates:
        return
    node, attr = candidates[rng.integers(len(candidates))]
    value = int(rng.choice([-1, 0, 7, 2**31, 2**40]))
    if attr.type == onnx.AttributeProto.INT:
        attr.i = value
    elif attr.ints:
        attr.ints[rng.integers(len(attr.ints))] = value


def _conv_group(model, rng):
    for node in model.graph.node:
        if node.op_type == "Conv":
            node.attribute.append(helper.make_attribute("group", 7))
            return


def _drop_input(model, rng):
    node = _node(model, rng)
    if node.input:
        del node.input[-1]


def _extra_input(model, rng):
    _node(model, rng).input.append(model.graph.node[0].input[0])


def _dangling_input(model, rng):
    node = _node(model, rng)
    if node.input:
        node.input[rng.integers(len(node.input))] = "nowhere"


def _initializer(model, rng) -> onnx.TensorProto | None:
    inits = [t for t in model.graph.initializer if numpy_helper.to_array(t).size > 1]
    return inits[rng.integers(len(inits))] if inits else None


def _dup_initializer(model, rng):
    tensor = _initializer(model, rng)
    if tensor is None:
        return
    array = numpy_helper.to_array(tensor)
    model.graph.initializer.append(numpy_helper.from_array(array * 1000 + 1, tensor.name))


def _non_finite(value: float):
    def mutate(model, rng):
        tensor = _initializer(model, rng)
        if tensor is None:
            return
        array = numpy_helper.to_array(tensor).copy()
        array.flat[rng.integers(array.size)] = value
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    return mutate


def _opset(model, rng):
    model.opset_import[0].version = int(rng.integers(7, 23))


def _op_type(model, rng):
    _node(model, rng).op_type = str(rng.choice(["Relu", "Add", "Conv", "MatMul", "Reshape",
                                                "Softmax", "Transpose", "NoSuchOp"]))


def _dup_output(model, rng):
    model.graph.output.append(copy.deepcopy(model.graph.output[0]))


def _sparse_input(model, rng):
    values = numpy_helper.from_array(np.array([5.0], np.float32), "sp")
    indices = numpy_helper.from_array(np.array([1], np.int64), "sp_idx")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    model.graph.sparse_initializer.append(sparse)
    model.graph.input.append(helper.make_tensor_value_info("sp", TensorProto.FLOAT, [4]))
    out = model.graph.output[0].name
    model.graph.node[-1].output[0] = "pre_sparse"
    model.graph.node.append(helper.make_node("ReduceSum", ["sp"], ["sp_sum"], keepdims=0))
    model.graph.node.append(helper.make_node("Add", ["pre_sparse", "sp_sum"], [out]))


def _init_dims(model, rng):
    tensor = _initializer(model, rng)
    if tensor is not None:
        tensor.dims[0] += 1


def _reverse_nodes(model, rng):
    nodes = list(model.graph.node)[::-1]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _ir_version(model, rng):
    model.ir_version = int(rng.integers(1, 12))


def _remove_initializer(model, rng):
    if model.graph.initializer:
        del model.graph.initializer[rng.integers(len(model.graph.initializer))]


def _constant_in_external_data(model, rng):
    """A valid model: a Constant node whose tensor lives in ``const.bin`` beside the model."""
    out = model.graph.output[0].name
    tensor = onnx.TensorProto(name="k", data_type=TensorProto.FLOAT, dims=[1])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "const.bin"), ("offset", "0"), ("length", "4")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    model.graph.node[-1].output[0] = "pre_const"
    model.graph.node.append(helper.make_node("Constant", [], ["k_out"], value=tensor))
    model.graph.node.append(helper.make_node("Add", ["pre_const", "k_out"], [out]))
    return {"const.bin": np.array([0.5], np.float32).tobytes()}


SEMANTIC: dict[str, Callable] = {
    "dim_negative": _set_dim(-3),
    "dim_zero": _set_dim(0),
    "dim_huge": _set_dim(2**40),
    "elem_type": _elem_type,
    "attr_int": _attr_int,
    "conv_group": _conv_group,
    "drop_input": _drop_input,
    "extra_input": _extra_input,
    "dangling_input": _dangling_input,
    "dup_initializer": _dup_initializer,
    "nan_weight": _non_finite(np.nan),
    "inf_weight": _non_finite(np.inf),
    "opset": _opset,
    "op_type": _op_type,
    "dup_output": _dup_output,
    "sparse_input": _sparse_input,
    "init_dims": _init_dims,
    "reverse_nodes": _reverse_nodes,
    "ir_version": _ir_version,
    "remove_initializer": _remove_initializer,
    "external_constant": _constant_in_external_data,
}


def mutants(seed: int = 0, per_class: int = 100) -> list[Mutant]:
    """``per_class`` mutants of each class, spread over the base models, reproducibly."""
    rng = np.random.default_rng(seed)
    bases = {name: make() for name, make in BASE_MODELS.items()}
    blobs = {name: proto.SerializeToString() for name, proto in bases.items()}
    names = list(bases)
    result: list[Mutant] = []
    kinds = list(SEMANTIC)
    for index in range(per_class):
        base = names[index % len(names)]
        data = bytearray(blobs[base])
        for _ in range(int(rng.integers(1, 9))):
            position = int(rng.integers(len(data)))
            data[position] ^= 1 << int(rng.integers(8))
        result.append(Mutant("bitflip", "bits", base, bytes(data)))
        cut = int(rng.integers(1, len(blobs[base])))
        result.append(Mutant("truncate", "cut", base, blobs[base][:cut]))
        kind = kinds[index % len(kinds)]
        semantic_base = names[(index // len(kinds)) % len(names)]
        proto = copy.deepcopy(bases[semantic_base])
        extra = SEMANTIC[kind](proto, rng) or {}
        result.append(Mutant("semantic", kind, semantic_base, proto.SerializeToString(), extra))
    return result


# --------------------------------------------------------------------------- outcomes


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
              "tensor(bool)": np.bool_}


def _feeds(session) -> dict[str, np.ndarray]:
    """Seeded inputs for what onnxruntime requires of the file (dynamic dims: 1)."""
    rng = np.random.default_rng(3)
    feeds = {}
    for arg in session.get_inputs():
        shape = [d if isinstance(d, int) and d >= 0 else 1 for d in arg.shape]
        feeds[arg.name] = rng.standard_normal(shape).astype(_ORT_TYPES[arg.type])
    return feeds


def same_outputs(original: Path, output: Path) -> bool:
    """onnxruntime computes the same outputs from both files on the inputs the original
    requires (NaN equals NaN, infinities must match)."""
    try:
        reference = _session(original)
        feeds = _feeds(reference)
        expected = reference.run(None, feeds)
    except Exception:
        return False  # graphopt said "verified" on a model onnxruntime cannot run
    candidate = _session(output)
    if {a.name for a in candidate.get_inputs()} != set(feeds):
        return False
    actual = candidate.run(None, feeds)
    if len(expected) != len(actual):
        return False
    for ref, out in zip(expected, actual, strict=True):
        if ref.shape != out.shape:
            return False
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        finite = np.isfinite(ref64)
        if not np.array_equal(ref64[~finite], out64[~finite], equal_nan=True):
            return False
        scale = float(np.max(np.abs(ref64[finite]), initial=0.0)) or 1.0
        if np.max(np.abs(ref64[finite] - out64[finite]), initial=0.0) > _RTOL * scale:
            return False
    return True


def classify(code: int, out: str, err: str, *, equal: Callable[[], bool] | None = None) -> str:
    """The outcome of one run (``equal`` is asked only for a successful optimize)."""
    if "Traceback" in out or "Traceback" in err:
        return "traceback"
    if code == 0:
        return "exit 0, equal" if equal is None or equal() else "exit 0, different"
    if code == 2:
        return "exit 2, one line" if len(err.strip().splitlines()) == 1 else "exit 2, extra lines"
    return "exit 1 or other"


def table(rows: list[tuple[str, str]]) -> str:
    """A markdown table of (class, outcome) counts: classes as rows, outcomes as columns."""
    counts = collections.Counter(rows)
    classes = sorted({c for c, _ in rows}, key=lambda c: (c.split(" ")[0] not in CLASSES, c))
    lines = ["| class | " + " | ".join(OUTCOMES) + " |",
             "|---|" + "---|" * len(OUTCOMES)]
    for cls in classes:
        lines.append(f"| {cls} | " + " | ".join(str(counts[(cls, o)]) for o in OUTCOMES) + " |")
    return "\n".join(lines)
