"""Opset upgrade of the default domain, done on the IR for the operators we know.

Most operators kept their inference semantics from opset 7 to 17 and only need the model's
opset import raised; a handful moved attributes to inputs (Unsqueeze/Squeeze/ReduceSum/Split
axes, Clip bounds, Pad pads, Slice starts/ends, Dropout ratio) or changed meaning (Softmax's
2-D coercion before 13). Those are adapted here node by node. Any operator outside these
tables, a subgraph, or a Softmax whose meaning cannot be proven unchanged sends the whole model
to the onnx version converter instead (``upgrade_with_converter``), so the result is always
either our exact adaptation or the reference converter's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import onnx_ir as ir
from onnx import version_converter

from graphopt.errors import UnsupportedModelError
from graphopt.passes_support import PLACEHOLDER_MIN_BYTES, weightless_proto

__all__ = ["upgrade_opset", "upgrade_natively", "upgrade_with_converter", "MIN_IR_VERSION"]

logger = logging.getLogger(__name__)

MIN_IR_VERSION = 8
_NATIVE_MIN_OPSET = 7

# Operators whose inference semantics are unchanged from opset 7 up to 17 (new types, negative
# axes, optional inputs and clarified docs only): raising the opset import is enough.
_UNCHANGED = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast Ceil Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh DepthToSpace Div Elu
    Equal Erf Exp Expand Flatten Floor Gather Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
    Greater HardSigmoid Identity InstanceNormalization LRN LeakyRelu Less Log LpNormalization
    MatMul Max MaxPool Mean Min Mul Neg Not Or PRelu Pow Reciprocal Relu Reshape Selu Shape
    Sigmoid Sign Sin Sinh Size Softplus Softsign SpaceToDepth Sqrt Sub Sum Tan Tanh Tile
    Transpose Where Xor
    ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
    ReduceSumSquare
    """.split()
)
# Attributes that must be absent for an "unchanged" operator to really be unchanged.
_FORBIDDEN_ATTRIBUTES = {"BatchNormalization": {"spatial"}, "Gemm": {"broadcast"}}

_Adapter = Callable[[ir.Node, int], bool]
_ADAPTERS: dict[str, tuple[int, _Adapter]] = {}


def _adapter(op_type: str, changed_in: int):
    """Register an adapter for nodes of ``op_type`` coming from an opset below ``changed_in``."""

    def decorate(fn: _Adapter) -> _Adapter:
        _ADAPTERS[op_type] = (changed_in, fn)
        return fn

    return decorate


def _const_input(node: ir.Node, array: np.ndarray, suffix: str) -> ir.Value:
    graph = node.graph
    base = f"{node.name or node.op_type}_{suffix}"
    name, index = base, 0
    while name in graph.initializers:
        index += 1
        name = f"{base}_{index}"
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.Tensor(array, name=name),
    )
    graph.register_initializer(value)
    return value


def _ints_to_input(node: ir.Node, attribute: str, position: int, *, required: bool) -> bool:
    """Move an INTS attribute to input ``position`` as an int64 initializer."""
    attr = node.attributes.pop(attribute, None)
    if attr is None:
        return not required
    inputs = list(node.inputs)
    while len(inputs) < position:
        inputs.append(None)
    inputs.insert(position, _const_input(node, np.array(attr.as_ints(), np.int64), attribute))
    node.resize_inputs(len(inputs))
    for index, value in enumerate(inputs):
        node.replace_input_with(index, value)
    return True


@_adapter("Unsqueeze", 13)
@_adapter("Squeeze", 13)
@_adapter("ReduceSum", 13)
def _axes_to_input(node: ir.Node, source: int) -> bool:
    required = node.op_type == "Unsqueeze"
    return _ints_to_input(node, "axes", 1, required=required)


@_adapter("Split", 13)
def _split_to_input(node: ir.Node, source: int) -> bool:
    return _ints_to_input(node, "split", 1, required=False)


@_adapter("Dropout", 12)
def _dropout_ratio_to_input(node: ir.Node, source: int) -> bool:
    if "is_test" in node.attributes:
        return False
    ratio = node.attributes.pop("ratio", None)
    if ratio is not None:
        node.resize_inputs(2)
        node.replace_input_with(1, _const_input(node, np.array(ratio.as_float(), np.float32),
                                                "ratio"))
    return True


@_adapter("Clip", 11)
def _clip_bounds_to_inputs(node: ir.Node, source: int) -> bool:
    dtype = node.inputs[0].dtype
    if dtype is None or not dtype.is_floating_point():
        return False
    low, high = node.attributes.pop("min", None), node.attributes.pop("max", None)
    np_dtype = dtype.numpy()
    node.resize_inputs(3)
    if low is not None:
        node.replace_input_with(1, _const_input(node, np.array(low.as_float(), np_dtype), "min"))
    if high is not None:
        node.replace_input_with(2, _const_input(node, np.array(high.as_float(), np_dtype), "max"))
    return True


@_adapter("Pad", 11)
def _pad_to_inputs(node: ir.Node, source: int) -> bool:
    pads = node.attributes.pop("pads", None)
    if pads is None:
        return False
    value = node.attributes.pop("value", None)
    node.resize_inputs(3 if value is not None else 2)
    node.replace_input_with(1, _const_input(node, np.array(pads.as_ints(), np.int64), "pads"))
    if value is not None:
        dtype = node.inputs[0].dtype
        if dtype is None:
            return False
        node.replace_input_with(
            2, _const_input(node, np.array(value.as_float(), dtype.numpy()), "value")
        )
    return True


@_adapter("Slice", 10)
def _slice_to_inputs(node: ir.Node, source: int) -> bool:
    names = ("starts", "ends", "axes")
    arrays = {}
    for name in names:
        attr = node.attributes.pop(name, None)
        if attr is not None:
            arrays[name] = np.array(attr.as_ints(), np.int64)
    if "starts" not in arrays or "ends" not in arrays:
        return False
    ordered = [node.inputs[0]] + [_const_input(node, arrays[n], n) for n in names if n in arrays]
    node.resize_inputs(len(ordered))
    for index, value in enumerate(ordered):
        node.replace_input_with(index, value)
    return True


@_adapter("Softmax", 13)
@_adapter("LogSoftmax", 13)
@_adapter("Hardmax", 13)
def _softmax_axis(node: ir.Node, source: int) -> bool:
    """Pin ``axis`` explicitly once ``_softmax_axis_possible`` proved the meaning unchanged."""
    if not _softmax_axis_possible(node):
        return False
    rank = len(node.inputs[0].shape)
    axis = node.attributes.get_int("axis", 1)
    node.attributes["axis"] = ir.AttrInt64("axis", axis + rank if axis < 0 else axis)
    return True


def _softmax_axis_possible(node: ir.Node) -> bool:
    """Before 13 the input was coerced to 2-D at ``axis``: that equals the per-axis operator
    when the dims after ``axis`` multiply to 1 (the last axis, or trailing 1s)."""
    shape = node.inputs[0].shape
    if shape is None:
        return False
    rank = len(shape)
    axis = node.attributes.get_int("axis", 1)
    axis = axis + rank if axis < 0 else axis
    trailing = list(shape)[axis + 1 :]
    return all(isinstance(d, int) for d in trailing) and int(np.prod(trailing)) == 1


def _node_plan(node: ir.Node, source: int) -> str | _Adapter | None:
    """'bump', an adapter, or None when this node needs the reference converter."""
    if node.domain not in ("", "ai.onnx"):
        return "bump"  # other domains keep their own opset imports
    if any(attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
           for attr in node.attributes.values()):
        return None
    if node.op_type in _UNCHANGED:
        forbidden = _FORBIDDEN_ATTRIBUTES.get(node.op_type, set())
        return None if forbidden & set(node.attributes) else "bump"
    if node.op_type in _ADAPTERS:
        changed_in, fn = _ADAPTERS[node.op_type]
        return "bump" if source >= changed_in else fn
    return None


def upgrade_natively(model: ir.Model, target: int) -> bool:
    """Adapt every node on the IR; False (model untouched) if some node needs the converter."""
    source = model.opset_imports.get("", 1)
    if source < _NATIVE_MIN_OPSET or target > 17:
        return False
    plans = [(node, _node_plan(node, source)) for node in model.graph]
    if any(plan is None for _, plan in plans):
        return False
    adapters = [(node, plan) for node, plan in plans if plan != "bump"]
    # Softmax adapters only read shapes: check them all before editing anything.
    for node, plan in adapters:
        if plan is _softmax_axis and not _softmax_axis_possible(node):
            return False
    for node, plan in adapters:
        if not plan(node, source):
            raise UnsupportedModelError(
                f"cannot upgrade {node.op_type} node {node.name!r} from opset {source}"
            )
    model.opset_imports[""] = target
    return True


def upgrade_with_converter(model: ir.Model, target: int) -> None:
    """The onnx version converter on a weightless copy; original tensors are put back."""
    source = model.opset_imports.get("", 1)
    originals = {
        name: value.const_value
        for name, value in model.graph.initializers.items()
        if value.const_value is not None and value.const_value.nbytes >= PLACEHOLDER_MIN_BYTES
    }
    proto = weightless_proto(model)
    try:
        converted = version_converter.convert_version(proto, target)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModelError(f"cannot upgrade opset {source} -> {target}: {text}") from exc
    upgraded = ir.from_proto(converted)
    for name, value in upgraded.graph.initializers.items():
        if name in originals:
            value.const_value = originals[name]
    model.graph = upgraded.graph  # a model's opset imports live on its graph


def upgrade_opset(model: ir.Model, target: int) -> str | None:
    """Raise the default-domain opset to ``target`` in place.

    Returns ``"native"`` or ``"converter"`` (how it was done), or None if already there.
    """
    source = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
    if source >= target:
        return None
    method = "native" if upgrade_natively(model, target) else "converter"
    if method == "converter":
        upgrade_with_converter(model, target)
    # IR 3 required initializers to be listed as inputs; modern opsets need a modern IR.
    model.ir_version = max(model.ir_version, MIN_IR_VERSION)
    logger.debug("opset %d -> %d (%s)", source, target, method)
    return method
