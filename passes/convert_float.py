"""``convert_float``: fp32 to fp16 or bf16, fp32 kept where it pays, Casts only at boundaries.

``mode="full"`` converts weights and activations; ``mode="weights"`` stores the weights in half
precision behind one Cast back to fp32 each (half the file, fp32 compute).

How ``full`` decides, then edits (through onnx-ir's use-def API only):

1. Which inputs and outputs of a node change type with it comes from its ONNX schema at the
   model's opset: the type parameters bound to float32 that allow the target type. Coordinate
   inputs stay fp32 (Resize's roi, and scales, which the schema fixes to float32 anyway).
2. Each node gets a policy: :data:`COMPUTE_OPS` go to half precision (they are the point: the
   weights and the work); :data:`FP32_OPS` stay fp32 for the reason the table gives; so do nodes
   named in ``keep``, float arithmetic that only computes shapes, operators whose schema at this
   opset has no such type, and operators graphopt has no entry for. Data-movement and
   order-preserving ops (:data:`EXACT_OPS`: rounding commutes with them) may go either way and
   lean to half; the other known-safe arithmetic (:data:`ARITH_OPS`) goes either way and leans to
   fp32.
3. With ``keep_io`` the graph inputs are fp32 anyway, so the first layers can stay fp32 for free:
   the longest prefix of the graph (in its node order) holding at most ``fp32_stem`` of the
   weights (parameters) whose boundary carries no more float values than the graph inputs do.
   Rounding errors made there would be amplified by every later layer: on the zoo's resnet50
   the stem and first stage (0.9% of the weights) take SQNR from 24 to 42 dB.
4. The assignment of the free nodes is a minimum cut (:mod:`graphopt.passes.min_cut`): a float
   value whose producer and readers disagree costs one Cast shared by all its readers, the leanings
   break ties. No assignment consistent with the fixed nodes has fewer Casts.
5. The edit: outputs retyped, initializers rounded to nearest (finite values beyond the format's
   range clamped to its largest finite value and counted), one Cast per boundary value,
   ``Cast(to=float)`` retargeted to the half type, Casts that became identities removed, graph
   outputs keep their names.

Runtimes (onnxruntime 1.32, openvino 2026.4, measured by ``bench/convert_float.py``): the CPU
provider of onnxruntime runs every fp16 model, wrapping ops without a half kernel in Casts (its
InsertCastTransformer runs even with graph optimizations off), but has no bfloat16 kernel at all:
``to="bf16", mode="full"`` models run on OpenVINO (and GPU runtimes), ``mode="weights"`` runs on
both (Cast from bfloat16 needs opset 13). ONNX gives Conv, the pools and many others a bfloat16
type only from opset 22: at lower opsets those stay fp32 with that reason.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import logging
from collections.abc import Iterator
from typing import ClassVar, Literal

import numpy as np
import onnx
import onnx_ir as ir

from graphopt.pass_api import GraphPass, register_pass
from graphopt.passes.min_cut import A, B, BinaryLabelling
from graphopt.passes.rewrite_utils import (
    add_initializer,
    bypass,
    bypass_blocker,
    forget_names,
    node_label,
    unique_name,
)
from graphopt.shapes import infer_shapes, missing_shapes

__all__ = [
    "ConvertFloatPass",
    "FP32_OPS",
    "COMPUTE_OPS",
    "EXACT_OPS",
    "ARITH_OPS",
    "FP32_INPUTS",
    "SOFTMAX_LONG_AXIS",
    "DEFAULT_FP32_STEM",
    "WEIGHTS_MIN_ELEMENTS",
    "FP32_LEAN_BYTES",
    "BF16_MIN_OPSET",
]

logger = logging.getLogger(__name__)

HALF_TYPES = {"fp16": ir.DataType.FLOAT16, "bf16": ir.DataType.BFLOAT16}
_TYPE_STRINGS = {ir.DataType.FLOAT16: "tensor(float16)", ir.DataType.BFLOAT16: "tensor(bfloat16)"}
_TYPE_NAMES = {ir.DataType.FLOAT16: "float16", ir.DataType.BFLOAT16: "bfloat16"}
# Largest finite value of each format; finite fp32 values beyond it are clamped, not made inf.
_MAX_FINITE = {ir.DataType.FLOAT16: 65504.0, ir.DataType.BFLOAT16: 3.3895313892515355e38}

# Cast to and from bfloat16 exists from opset 13 (Cast-13); onnxruntime refuses it below.
BF16_MIN_OPSET = 13
# Share of the weights (parameters) that may stay fp32 at the start of the graph (0 disables).
DEFAULT_FP32_STEM = 0.02
# mode="weights": initializers smaller than this stay fp32 (biases, scalars: a Cast node and a
# rounding would cost more than the 2 bytes per element they save).
WEIGHTS_MIN_ELEMENTS = 1024
# A softmax over more entries keeps fp32: with N entries an average probability is 1/N, and
# below 2^-10 the tail of the distribution falls into fp16's subnormals (< 6.1e-5), where it has
# only a few significant bits; the normalising sum also adds N terms.
SOFTMAX_LONG_AXIS = 1024

# op type -> why it stays fp32 (ONNX standard domain).
_SUM_REASON = (
    "accumulates over an axis: once the total passes 2048, fp16 counts in steps of 2 and drops "
    "small terms; it overflows at 65504"
)
FP32_OPS: dict[str, str] = {
    "Exp": "e^x overflows fp16 above x = 11.09, and a rounded input moves the output by |x| times"
    " the rounding error",
    "Log": "its input is usually a probability or a variance near 0, where fp16 is subnormal"
    " (below 6.1e-5) and rounds to 0, giving -inf",
    "Pow": "x^y multiplies the relative error of x by |y| and overflows fp16 quickly",
    "ReduceSum": _SUM_REASON,
    "ReduceMean": _SUM_REASON,
    "ReduceL1": _SUM_REASON,
    "ReduceL2": _SUM_REASON + " (squares overflow above 256)",
    "ReduceSumSquare": _SUM_REASON + " (squares overflow above 256)",
    "ReduceLogSum": _SUM_REASON,
    "ReduceLogSumExp": "exponentials summed over an axis overflow fp16 above 11.09",
    "ReduceProd": "products over an axis overflow and underflow fp16 within a few terms",
    "LpNormalization": "divides by a norm summed over an axis (a ReduceL2 inside)",
    "CumSum": "a running sum grows along the axis; past 2048 fp16 drops small increments",
    "Range": "integer-valued sequences: fp16 holds integers exactly only up to 2048",
    "TopK": "ranking: fp16 rounding turns near-ties into ties and reorders the selected indices",
    "NonMaxSuppression": "box coordinates against IoU thresholds: rounded boxes change which"
    " boxes survive",
    "RoiAlign": "region coordinates: fp16 steps are 0.25 px beyond 256 px, which moves the"
    " sampling grid",
    "QuantizeLinear": "quantization scales were calibrated in fp32; a rounded scale shifts every"
    " quantized value",
    "DequantizeLinear": "quantization scales were calibrated in fp32; a rounded scale shifts every"
    " dequantized value",
    "DynamicQuantizeLinear": "computes quantization scales from a min/max: keep them fp32",
    "LSTM": "the recurrent state accumulates rounding error over every time step",
    "GRU": "the recurrent state accumulates rounding error over every time step",
    "RNN": "the recurrent state accumulates rounding error over every time step",
}
# The weights and the work: these go to half precision (unless kept by the user or the stem).
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"})
# Rounding commutes with these (data movement, selection, order-preserving): either precision
# gives the same values, half moves half the bytes.
EXACT_OPS = frozenset({
    "Identity", "Relu", "MaxPool", "GlobalMaxPool", "Max", "Min", "Clip", "Neg", "Abs", "Sign",
    "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
    "Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements", "Tile", "Expand",
    "Pad", "DepthToSpace", "SpaceToDepth", "ReduceMax", "ReduceMin", "Where", "Dropout",
    "Hardmax", "Trilu", "Compress", "Constant", "ConstantOfShape", "Cast",
})
# Known to be safe with half inputs and outputs (runtimes accumulate inside in fp32); they round,
# so they lean to fp32 where that costs no Cast.
ARITH_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Sum", "Mean", "Sqrt", "Reciprocal", "Sigmoid", "Tanh", "Erf",
    "Gelu", "HardSigmoid", "HardSwish", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Softplus",
    "Softsign", "Mish", "ThresholdedRelu", "BatchNormalization", "InstanceNormalization",
    "LayerNormalization", "GroupNormalization", "AveragePool", "GlobalAveragePool", "LRN",
    "Softmax", "LogSoftmax", "Resize", "Upsample", "Floor", "Ceil", "Round", "ArgMax", "ArgMin",
    "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
})
_SOFTMAX_OPS = frozenset({"Softmax", "LogSoftmax"})
# (op type, input index) -> why that input stays fp32 although the node converts.
FP32_INPUTS: dict[tuple[str, int], str] = {
    ("Resize", 1): "roi: coordinate math",
    ("Resize", 2): "scales: coordinate math",
    ("Upsample", 1): "scales: coordinate math",
    ("Dropout", 1): "the ratio is a probability, not data",
}
# Inputs whose type does not matter to the node (it reads the shape, or converts anyway).
_ANY_INPUTS = frozenset({("Shape", 0), ("Size", 0), ("Cast", 0)})
# Inputs that are coordinates: float arithmetic feeding only these computes shapes.
_COORDINATE_INPUTS = frozenset({("Resize", 1), ("Resize", 2), ("Upsample", 1)})
_FLOATS = frozenset({
    ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE,
})

_STEM_REASON = (
    "in the fp32 stem: its rounding errors would pass through every later layer, and keeping it"
    " costs no Cast"
)
_NEIGHBOUR_REASON = "its neighbours are fp32: converting it would add a Cast"

# Leanings of the min cut, in bytes of file: an op that rounds stays fp32 where that costs no
# Cast unless it keeps more than this many bytes of its constants at double size; Casts weigh
# more than all leanings together.
FP32_LEAN_BYTES = 1024


@dataclasses.dataclass
class _Policy:
    """What a node may do: the slots that switch with it, and where it is allowed to go."""

    half_inputs: frozenset[int] = frozenset()
    half_outputs: frozenset[int] = frozenset()
    kind: Literal["compute", "exact", "arith", "fixed"] = "fixed"
    reason: str = ""
    reason_key: str = ""


def _opset(model: ir.Model) -> int:
    imports = model.opset_imports
    return imports.get("", imports.get("ai.onnx", 1))


@functools.lru_cache(maxsize=4096)
def _schema(op_type: str, opset: int, domain: str) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return None


@functools.lru_cache(maxsize=1024)
def _first_opset_with(op_type: str, type_string: str) -> int | None:
    for version in range(1, onnx.defs.onnx_opset_version() + 1):
        schema = _schema(op_type, version, "")
        if schema is None or schema.since_version != version:
            continue
        if any(type_string in tc.allowed_type_strs for tc in schema.type_constraints):
            return version
    return None


def _formal(params, index: int):
    if index < len(params):
        return params[index]
    if params and params[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
        return params[-1]
    return None


def _is_float(value: ir.Value | None) -> bool:
    return value is not None and value.dtype == ir.DataType.FLOAT


def _switchable(node: ir.Node, opset: int, half: ir.DataType) -> _Policy | None:
    """The slots bound to float32 that switch with ``node`` (None: it touches no float32)."""
    inputs = [(i, v) for i, v in enumerate(node.inputs) if _is_float(v)]
    outputs = [(i, v) for i, v in enumerate(node.outputs) if _is_float(v)]
    if not inputs and not outputs:
        return None
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return _Policy(reason=f"custom domain {node.domain!r}: not converted", reason_key="unknown")
    if op in ("Shape", "Size"):
        return None  # reads only the shape
    if op == "Cast":
        if not outputs:
            return None  # float32 to another type: reads any float type
        return _Policy(half_outputs=frozenset(i for i, _ in outputs), kind="exact")
    schema = _schema(op, opset, "")
    if schema is None:
        return _Policy(reason=f"no ONNX schema for {op} at opset {opset}", reason_key="unknown")
    allowed = {tc.type_param_str: set(tc.allowed_type_strs) for tc in schema.type_constraints}
    wanted = _TYPE_STRINGS[half]
    if op in ("Constant", "ConstantOfShape"):  # the output type is the value attribute's
        attr = node.attributes.get("value")
        if op == "Constant" and (attr is None or attr.type != ir.AttributeType.TENSOR):
            return _Policy(reason="Constant written as value_float(s)", reason_key="unknown")
        if wanted not in allowed.get(schema.outputs[0].type_str, ()):
            return _no_type(op, schema, half)
        return _Policy(half_outputs=frozenset(i for i, _ in outputs), kind="exact")
    slots: dict[str, list[tuple[str, int]]] = {}
    for side, params, values in (("in", schema.inputs, inputs), ("out", schema.outputs, outputs)):
        for index, _ in values:
            formal = _formal(params, index)
            if formal is not None:
                slots.setdefault(formal.type_str, []).append((side, index))
    switching: set[str] = set()
    missing: list[str] = []
    for param, members in slots.items():
        if param not in allowed:  # a fixed type such as tensor(float): stays
            continue
        if any(side == "in" and (op, i) in FP32_INPUTS for side, i in members):
            continue
        if wanted in allowed[param]:
            switching.add(param)
        else:
            missing.append(param)
    half_in = frozenset(i for p in switching for side, i in slots[p] if side == "in")
    half_out = frozenset(i for p in switching for side, i in slots[p] if side == "out")
    if not half_out and not half_in:
        if missing:
            return _no_type(op, schema, half)
        return _Policy(reason=f"{op}-{schema.since_version} computes its float inputs at a"
                       " fixed type", reason_key="schema")
    return _Policy(half_inputs=half_in, half_outputs=half_out)


def _no_type(op: str, schema: onnx.defs.OpSchema, half: ir.DataType) -> _Policy:
    first = _first_opset_with(op, _TYPE_STRINGS[half])
    later = f" (from opset {first})" if first else ""
    return _Policy(
        reason=f"{op}-{schema.since_version} has no {_TYPE_NAMES[half]} type{later}",
        reason_key="schema",
    )


def _axis_length(node: ir.Node, opset: int) -> int | None:
    """Entries a softmax normalises over (None when the shape is not known)."""
    shape = node.inputs[0].shape if node.inputs and node.inputs[0] is not None else None
    if shape is None:
        return None
    dims = list(shape)
    axis = node.attributes.get_int("axis", -1 if opset >= 13 else 1)
    axis = axis + len(dims) if axis < 0 else axis
    if not 0 <= axis < len(dims):
        return None
    span = dims[axis:axis + 1] if opset >= 13 else dims[axis:]  # opset < 13: coerced to 2-D
    if not all(isinstance(d, int) for d in span):
        return None
    return int(np.prod(span, dtype=np.int64)) if span else 1


def _short_axis(node: ir.Node, opset: int) -> bool:
    length = _axis_length(node, opset)
    return length is not None and length <= SOFTMAX_LONG_AXIS


def _constant_bytes(node: ir.Node, policy: _Policy) -> int:
    """Bytes of the float32 initializers ``node`` reads through inputs that switch with it."""
    return sum(
        node.inputs[i].const_value.nbytes
        for i in policy.half_inputs
        if node.inputs[i] is not None and node.inputs[i].is_initializer()
        and node.inputs[i].const_value is not None
    )


def _clamp_to(array: np.ndarray, half: ir.DataType) -> tuple[np.ndarray, int]:
    """``array`` rounded to nearest in ``half``; finite values beyond its range are clamped."""
    array = np.asarray(array, dtype=np.float32)
    limit = _MAX_FINITE[half]
    over = np.isfinite(array) & (np.abs(array) > limit)
    clamped = int(np.count_nonzero(over))
    if clamped:
        array = np.where(over, np.copysign(np.float32(limit), array), array)
    return array.astype(half.numpy()), clamped


@register_pass("convert_float")
@dataclasses.dataclass(kw_only=True)
class ConvertFloatPass(GraphPass):
    """Convert fp32 weights (and activations) to fp16 or bf16; fragile ops stay fp32."""

    lossless: ClassVar[bool] = False
    summary: ClassVar[str] = (
        "fp32 -> fp16/bf16: fragile ops kept fp32 with a reason, Casts only at boundaries"
    )

    #: The half-precision format.
    to: Literal["fp16", "bf16"] = "fp16"
    #: Graph inputs and outputs stay fp32, with Casts at the boundary.
    keep_io: bool = True
    #: Node names or op types kept fp32.
    keep: tuple[str, ...] = ()
    #: ``full``: weights and activations; ``weights``: half initializers, fp32 compute.
    mode: Literal["full", "weights"] = "full"
    #: Share of the weights (parameters) that stays fp32 at the start of the graph, where it
    #: costs no Cast (only with ``keep_io``; 0 disables).
    fp32_stem: float = DEFAULT_FP32_STEM

    def requires(self, model: ir.Model) -> None:
        opset = _opset(model)
        if self.to == "bf16" and opset < BF16_MIN_OPSET:
            raise ir.passes.PreconditionError(
                f"convert_float(to=bf16) needs opset >= {BF16_MIN_OPSET} (Cast to bfloat16);"
                f" the model has opset {opset}: run cleanup first (it upgrades to 17)"
            )
        listed = [v.name for v in model.graph.inputs if v.is_initializer()]
        if listed:
            raise ir.passes.PreconditionError(
                f"{len(listed)} initializers are also graph inputs (e.g. {listed[0]!r}), so they"
                " can be fed at run time and cannot change type: run cleanup first (it removes"
                " them from the input list)"
            )
        if not 0.0 <= self.fp32_stem <= 1.0:
            raise ir.passes.PreconditionError(
                f"convert_float(fp32_stem={self.fp32_stem}): a share between 0 and 1"
            )

    # ------------------------------------------------------------------ policy

    @staticmethod
    def _typed(model: ir.Model) -> None:
        """Every value read must have a known type: infer what the model does not state."""
        if missing_shapes(model.graph):
            infer_shapes(model)
        untyped = [
            v.name for node in model.graph for v in node.outputs
            if v.dtype is None and (v.uses() or v.is_graph_output())
        ]
        if untyped:
            raise ir.passes.PreconditionError(
                f"convert_float needs the type of every value; shape inference left"
                f" {len(untyped)} untyped (e.g. {untyped[0]!r})"
            )

    def _policies(self, model: ir.Model, half: ir.DataType) -> dict[ir.Node, _Policy]:
        opset = _opset(model)
        keep = set(self.keep)
        policies: dict[ir.Node, _Policy] = {}
        for node in model.graph:
            policy = _switchable(node, opset, half)
            if policy is None:
                continue
            policies[node] = policy
            op = node.op_type
            if policy.reason:
                continue
            if node.name in keep or op in keep:
                which = "name" if node.name in keep else "op type"
                policy.reason, policy.reason_key = f"kept by keep= ({which})", "keep"
            elif op in FP32_OPS:
                policy.reason, policy.reason_key = FP32_OPS[op], "fragile"
            elif op in _SOFTMAX_OPS and not _short_axis(node, opset):
                length = _axis_length(node, opset)
                size = "an axis of unknown length" if length is None else f"{length} entries"
                policy.reason = (
                    f"normalises over {size} (> {SOFTMAX_LONG_AXIS}): small probabilities fall"
                    " into fp16 subnormals and the sum adds every entry"
                )
                policy.reason_key = "fragile"
            elif op in COMPUTE_OPS:
                policy.kind = "compute"
            elif op in EXACT_OPS:
                policy.kind = "exact"
            elif op in ARITH_OPS:
                policy.kind = "arith"
            else:
                policy.reason = (
                    f"{op} is not in convert_float's tables of operators checked for half"
                    " precision"
                )
                policy.reason_key = "unknown"
        self._mark_shape_arithmetic(model, policies)
        return policies

    def _mark_shape_arithmetic(self, model: ir.Model, policies: dict[ir.Node, _Policy]) -> None:
        """Float nodes whose results only become shapes, indices or coordinates stay fp32."""
        shape_nodes: set[ir.Node] = set()

        def shape_sink(user: ir.Node, index: int) -> bool:
            if user in shape_nodes or user.op_type == "Range":
                return True
            if (user.op_type, index) in _COORDINATE_INPUTS:
                return True
            return user.op_type == "Cast" and user.attributes.get_int("to", 0) not in _FLOATS

        for node in reversed(list(model.graph)):
            policy = policies.get(node)
            if policy is None or policy.reason or node.op_type in ("Constant", "ConstantOfShape"):
                continue
            floats = [v for v in node.outputs if _is_float(v)]
            if not floats or any(v.is_graph_output() for v in floats):
                continue
            uses = [use for v in floats for use in v.uses()]
            if uses and all(shape_sink(user, index) for user, index in uses):
                shape_nodes.add(node)
        for node in shape_nodes:
            policy = policies[node]
            policy.reason = (
                "computes a shape, index or coordinate (its result is cast to an integer or read"
                " as scales): fp16 holds integers exactly only up to 2048"
            )
            policy.reason_key = "shape"

    # ------------------------------------------------------------------ stem

    def _stem(self, model: ir.Model, policies: dict[ir.Node, _Policy]) -> tuple[list, int]:
        """The longest prefix within the fp32 stem budget whose boundary costs no extra Cast,
        and the weight bytes it holds.

        A cut after the first ``k`` nodes is crossed by every float value defined before it (the
        graph inputs count as defined at the start) and read after it; the prefix qualifies when
        no more values cross it than cross the cut before the first node.
        """
        if not self.keep_io or self.fp32_stem <= 0:
            return [], 0
        nodes = list(model.graph)
        end = len(nodes)
        position = {node: i for i, node in enumerate(nodes)}
        weights = [0] * end  # float32 weight bytes first read by each node
        seen: set[ir.Value] = set()
        for i, node in enumerate(nodes):
            for value in node.inputs:
                if _is_float(value) and value.is_initializer() and value not in seen:
                    seen.add(value)
                    weights[i] += value.const_value.nbytes if value.const_value is not None else 0
        # The budget is a share of all float weights counted at 4 bytes each, so a model
        # converted before keeps its stem.
        total = 4 * sum(
            v.const_value.size for v in model.graph.initializers.values()
            if v.dtype in _FLOATS and v.const_value is not None
        )
        if total == 0:
            return [], 0
        crossing = [0] * (end + 2)  # difference array over cuts 0..end

        def count(defined: int, value: ir.Value) -> None:
            last = max((position.get(user, end) for user, _ in value.uses()), default=-1)
            if last > defined:  # crosses the cuts after defined .. before last
                crossing[defined + 1] += 1
                crossing[last + 1] -= 1

        for value in model.graph.inputs:
            if _is_float(value):
                count(-1, value)
        for i, node in enumerate(nodes):
            for value in node.outputs:
                if _is_float(value):
                    count(i, value)
        cuts = list(itertools.accumulate(crossing))
        budget, spent, best = self.fp32_stem * total, 0, 0
        for k in range(1, end + 1):
            spent += weights[k - 1]
            if spent > budget:
                break
            if spent > 0 and cuts[k] <= cuts[0]:
                best = k
        return [node for node in nodes[:best] if node in policies], sum(weights[:best])

    # ------------------------------------------------------------------ assignment

    def _requirement(self, policies, user: ir.Node, index: int, main: ir.Graph):
        """The node variable, or the fixed label, that reader ``user``/``index`` needs."""
        if user.graph is not main:
            return B
        policy = policies.get(user)
        if policy is not None and index in policy.half_inputs:
            return user
        if (user.op_type, index) in _ANY_INPUTS:
            return None
        return B

    def _boundaries(self, model: ir.Model, policies) -> Iterator[tuple[ir.Value, list]]:
        """Every non-constant float32 value with the terms that must agree about its type."""
        main = model.graph
        io_label = B if self.keep_io else A
        producers: list[tuple[ir.Value, object]] = [
            (v, io_label) for v in main.inputs if _is_float(v)
        ]
        for node in main:
            policy = policies.get(node)
            for index, value in enumerate(node.outputs):
                if not _is_float(value):
                    continue
                producers.append(
                    (value, node if policy is not None and index in policy.half_outputs else B)
                )
        for value, producer in producers:
            terms = [producer]
            for user, index in value.uses():
                term = self._requirement(policies, user, index, main)
                if term is not None:
                    terms.append(term)
            if value.is_graph_output():
                terms.append(io_label)
            yield value, terms

    def _assign(self, model: ir.Model, policies, fixed_fp32: set[ir.Node]):
        """Half or fp32 for every node with a policy: the minimum cut (fewest Casts)."""
        index = {node: i for i, node in enumerate(policies)}
        problem = BinaryLabelling(len(index))
        boundaries = list(self._boundaries(model, policies))
        leanings = 1
        for node, policy in policies.items():
            i = index[node]
            if policy.reason or node in fixed_fp32:
                problem.fix(i, B)
            elif policy.kind == "compute":
                problem.fix(i, A)
            else:
                saved = 1 + _constant_bytes(node, policy) // 2  # what half storage saves
                problem.prefer(i, A, saved)
                leanings += saved
                if policy.kind == "arith":
                    problem.prefer(i, B, FP32_LEAN_BYTES)
                    leanings += FP32_LEAN_BYTES
        cast_cost = leanings  # one Cast outweighs every leaning together
        for _, terms in boundaries:
            members = [index[t] if isinstance(t, ir.Node) else t for t in terms]
            problem.hyperedge(members, cast_cost)
        labels, _ = problem.solve()
        half = {node for node, i in index.items() if labels[i] == A}

        def side(term) -> str:
            return (A if term in half else B) if isinstance(term, ir.Node) else term

        casts = sum(1 for _, terms in boundaries if len({side(t) for t in terms}) > 1)
        return half, casts

    # ------------------------------------------------------------------ editing

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        half = HALF_TYPES[self.to]
        self._typed(model)
        if self.mode == "weights":
            # Compute stays fp32: only which inputs are weights of a node that may round them
            # matters, not whether the node's schema has the storage type.
            policies = self._policies(model, ir.DataType.FLOAT16)
            stem, _ = self._stem(model, policies)
            modified = self._convert_weights(model, policies, set(stem), half)
            return ir.passes.PassResult(model, modified=modified)
        policies = self._policies(model, half)
        stem, stem_bytes = self._stem(model, policies)
        if self.to == "bf16":
            self._warn_bf16(model, policies)
        chosen, casts = self._assign(model, policies, set())
        if stem:
            with_stem, stem_casts = self._assign(model, policies, set(stem))
            if stem_casts <= casts:
                chosen = with_stem
                self.stats["stem_nodes"] = len(stem)
                self.stats["stem_weight_bytes"] = stem_bytes
            else:
                stem = []
        stem_set = set(stem)
        for node, policy in policies.items():
            if node in chosen:
                continue
            if policy.reason:
                reason, key = policy.reason, policy.reason_key
            elif node in stem_set:
                reason, key = _STEM_REASON, "stem"
            else:
                reason, key = _NEIGHBOUR_REASON, "neighbours"
            self.stats["nodes_kept_fp32"] += 1
            self.stats[f"kept_fp32_{key}"] += 1
            self.explain(f"{node_label(node)} stays fp32: {reason}")
        modified = self._rewrite(model, policies, chosen, half)
        return ir.passes.PassResult(model, modified=modified)

    def _rewrite(self, model: ir.Model, policies, chosen: set[ir.Node], half: ir.DataType) -> bool:
        graph = model.graph
        forget_names(graph)  # other passes may have added names since the index was built
        names = functools.partial(unique_name, graph)
        views: dict[tuple[ir.Value, ir.DataType], ir.Value] = {}
        half_constants: dict[ir.Value, ir.Value] = {}
        io_type = ir.DataType.FLOAT if self.keep_io else half
        suffix = {ir.DataType.FLOAT: "fp32", ir.DataType.FLOAT16: "fp16",
                  ir.DataType.BFLOAT16: "bf16"}

        # The type of every float32 value after the edit, decided before anything changes.
        target: dict[ir.Value, ir.DataType] = {}
        for value in graph.inputs:
            if _is_float(value):
                target[value] = io_type
        for node in graph:
            policy = policies.get(node)
            for index, value in enumerate(node.outputs):
                if _is_float(value):
                    converts = node in chosen and index in policy.half_outputs
                    target[value] = half if converts else ir.DataType.FLOAT
        first_node = next(iter(graph), None)

        def view(value: ir.Value, dtype: ir.DataType) -> ir.Value:
            """One Cast of ``value`` to ``dtype``, shared by every reader that needs it."""
            key = (value, dtype)
            if key not in views:
                cast = ir.node("Cast", [value], {"to": dtype},
                               name=names(f"{value.name}_to_{suffix[dtype]}"))
                out = cast.outputs[0]
                out.name = names(f"{value.name}_{suffix[dtype]}")
                out.dtype, out.shape = dtype, value.shape
                producer = value.producer()
                if producer is not None:
                    graph.insert_after(producer, cast)
                else:
                    graph.insert_before(first_node, cast)
                self.stats["casts_inserted"] += 1
                views[key] = out
            return views[key]

        def half_constant(value: ir.Value, in_place: bool) -> ir.Value:
            if value in half_constants:
                return half_constants[value]
            array, clamped = _clamp_to(value.const_value.numpy(), half)
            if clamped:
                self.stats["values_clamped"] += clamped
                self.explain(
                    f"initializer {value.name!r}: {clamped} values beyond the"
                    f" {_TYPE_NAMES[half]} range clamped to ±{_MAX_FINITE[half]:g}"
                )
            if in_place:
                value.const_value = ir.Tensor(array, name=value.name)
                value.dtype = half
                result = value
            else:
                result = add_initializer(graph, array, f"{value.name}_{suffix[half]}")
                self.stats["initializers_duplicated"] += 1
            self.stats["initializers_converted"] += 1
            half_constants[value] = result
            return result

        # Readers: what each float32 input slot needs, and the edits that give it that.
        plan: list[tuple[ir.Node, int, ir.Value, ir.DataType]] = []
        for node in list(graph):
            policy = policies.get(node)
            for index, value in enumerate(node.inputs):
                if not _is_float(value):
                    continue
                if node in chosen and policy is not None and index in policy.half_inputs:
                    plan.append((node, index, value, half))
                elif (node.op_type, index) not in _ANY_INPUTS:
                    plan.append((node, index, value, ir.DataType.FLOAT))
        for value, dtype in target.items():  # readers inside subgraphs (If, Loop) stay fp32
            if dtype != ir.DataType.FLOAT:
                plan.extend((user, index, value, ir.DataType.FLOAT)
                            for user, index in value.uses() if user.graph is not graph)
        constant_uses: dict[ir.Value, set[ir.DataType]] = {}
        for _, _, value, need in plan:
            if value.is_initializer() and value not in target:
                constant_uses.setdefault(value, set()).add(need)

        # Retype converted outputs and (without keep_io) the graph inputs.
        for value, dtype in target.items():
            if dtype != ir.DataType.FLOAT:
                value.dtype = dtype
        for node in chosen:
            self._retarget_constant(node, half)
        for node, index, value, need in plan:
            if value.is_initializer() and value not in target:
                if need == half:
                    only_half = constant_uses[value] == {half} and not value.is_graph_output()
                    node.replace_input_with(index, half_constant(value, only_half))
                continue
            have = target.get(value, ir.DataType.FLOAT)
            if have != need:
                node.replace_input_with(index, view(value, need))
        # Graph outputs keep their names and (with keep_io) fp32.
        for position, value in enumerate(list(graph.outputs)):
            have = target.get(value)
            if have is None or have == io_type:
                continue
            out = view(value, io_type)
            name = value.name
            graph.outputs[position] = out
            if not value.is_graph_output() and not value.is_graph_input():
                value.name, out.name = names(f"{name}_{suffix[have]}"), name
        self._drop_identity_casts(graph)
        self.stats["nodes_converted"] = len(chosen)
        return bool(chosen) or any(
            self.stats[key] for key in ("casts_inserted", "casts_removed", "initializers_converted")
        )

    @staticmethod
    def _warn_bf16(model: ir.Model, policies: dict[ir.Node, _Policy]) -> None:
        logger.info("bfloat16 compute: onnxruntime's CPU provider has no bfloat16 kernels;"
                    " the result runs on OpenVINO and GPU runtimes")
        blocked = collections.Counter(
            node.op_type for node, policy in policies.items()
            if node.op_type in COMPUTE_OPS and policy.reason_key == "schema"
        )
        if blocked:
            logger.warning(
                "convert_float(to=bf16): %s have no bfloat16 type at opset %d and stay fp32;"
                " run cleanup(target_opset=22) first", ", ".join(
                    f"{count} {op}" for op, count in sorted(blocked.items())), _opset(model),
            )

    def _retarget_constant(self, node: ir.Node, half: ir.DataType) -> None:
        """Cast(to=float) now casts to ``half``; Constant values are rounded."""
        if node.op_type == "Cast":
            if node.attributes.get_int("to") == ir.DataType.FLOAT:
                node.attributes["to"] = ir.AttrInt64("to", half)
                self.stats["casts_retargeted"] += 1
            return
        if node.op_type not in ("Constant", "ConstantOfShape"):
            return
        attr = node.attributes.get("value")
        if attr is None:  # ConstantOfShape's default: float32 zero
            array = np.zeros((1,), dtype=np.float32)
        else:
            array = attr.as_tensor().numpy()
        converted, clamped = _clamp_to(array, half)
        if clamped:
            self.stats["values_clamped"] += clamped
        node.attributes["value"] = ir.AttrTensor("value", ir.Tensor(converted))
        self.stats["constants_converted"] += 1

    def _drop_identity_casts(self, graph: ir.Graph) -> None:
        for node in list(graph):
            if node.op_type != "Cast" or not node.inputs or node.inputs[0] is None:
                continue
            source = node.inputs[0]
            if source.dtype != node.attributes.get_int("to"):
                continue
            if bypass_blocker(node, source) is not None:
                continue
            bypass(node, source)
            self.stats["casts_removed"] += 1

    # ------------------------------------------------------------------ weights mode

    def _convert_weights(self, model, policies, stem: set[ir.Node], half: ir.DataType) -> bool:
        """Half initializers behind one Cast to fp32 each; compute stays fp32."""
        graph = model.graph
        forget_names(graph)
        names = functools.partial(unique_name, graph)
        first_node = next(iter(graph), None)
        for value in list(graph.initializers.values()):
            if not _is_float(value) or value.const_value is None:
                continue
            if value.is_graph_output() or not value.uses():
                continue
            reasons = []
            for user, index in value.uses():
                policy = policies.get(user)
                if user.graph is not graph or policy is None or index not in policy.half_inputs:
                    reasons.append(f"read by {node_label(user)} as an input that stays fp32")
                elif policy.reason:
                    reasons.append(f"read by {node_label(user)}, which stays fp32: {policy.reason}")
                elif user in stem:
                    reasons.append(f"read by {node_label(user)} in the fp32 stem")
            if reasons:
                self.stats["initializers_kept_fp32"] += 1
                self.explain(f"initializer {value.name!r} stays fp32: {reasons[0]}")
                continue
            if value.const_value.size < WEIGHTS_MIN_ELEMENTS:
                self.stats["initializers_below_threshold"] += 1
                continue
            uses = list(value.uses())
            array, clamped = _clamp_to(value.const_value.numpy(), half)
            if clamped:
                self.stats["values_clamped"] += clamped
                self.explain(f"initializer {value.name!r}: {clamped} values clamped to the"
                             f" {_TYPE_NAMES[half]} range")
            value.const_value = ir.Tensor(array, name=value.name)
            value.dtype = half
            cast = ir.node("Cast", [value], {"to": ir.DataType.FLOAT},
                           name=names(f"{value.name}_to_fp32"))
            out = cast.outputs[0]
            out.name = names(f"{value.name}_fp32")
            out.dtype, out.shape = ir.DataType.FLOAT, value.shape
            graph.insert_before(first_node, cast)
            for user, index in uses:
                user.replace_input_with(index, out)
            self.stats["initializers_converted"] += 1
            self.stats["casts_inserted"] += 1
        return self.stats["initializers_converted"] > 0
