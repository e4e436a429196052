"""Channel bookkeeping shared by fuse, equalize, prune and lowrank: per-channel affine maps
``y = scale * x + shift`` and the operators that absorb them.

BatchNormalization at inference, and Mul / Add by a per-channel constant, are per-channel affine
maps. A Conv, ConvTranspose, Gemm, MatMul or BatchNormalization producing their input can absorb
the map into its own weights and bias (``ABSORBERS``, keyed by op type); a Conv without padding
consuming it can absorb it into its weights and bias as well (``absorb_into_next_conv``).

All arithmetic is float64; results are rounded once to the weight's dtype (weights are
multiplied in float64 inside one ufunc pass that writes the rounded result directly). Every
folded tensor must be an initializer (``constant_array``), never a graph input.
"""

from __future__ import annotations

import abc
import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from graphopt.passes.rewrite_utils import (
    add_initializer,
    bypass,
    constant_array,
    drop_unused_initializer,
    rank,
    remove_if_dead,
    replace_node,
    set_constant_input,
    single_consumer,
)

__all__ = [
    "ChannelAffine",
    "Absorber",
    "ABSORBERS",
    "FLOAT_TYPES",
    "batchnorm_affine",
    "channel_vector",
    "check_next_conv",
    "absorb_into_next_conv",
    "ProducerPlan",
    "plan_producer_fold",
    "extend_chain",
    "fold_chain_into_producer",
    "CHANNELWISE_OPS",
    "BROADCAST_OPS",
    "PER_CHANNEL_PARAMETERS",
]

logger = logging.getLogger(__name__)

FLOAT_TYPES = frozenset(
    {ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16}
)
DEFAULT_BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class ChannelAffine:
    """``y[c] = scale[c] * x[c] + shift[c]`` along one axis (float64 vectors of equal length)."""

    scale: np.ndarray
    shift: np.ndarray

    @classmethod
    def from_scale(cls, scale: np.ndarray) -> ChannelAffine:
        return cls(scale, np.zeros_like(scale))

    @classmethod
    def from_shift(cls, shift: np.ndarray) -> ChannelAffine:
        return cls(np.ones_like(shift), shift)

    @property
    def has_shift(self) -> bool:
        return bool(np.any(self.shift != 0))


def channel_vector(array: np.ndarray, *, rank: int, axis: int, channels: int) -> np.ndarray | None:
    """``array`` as a float64 vector of ``channels`` entries if, broadcast against a tensor of
    ``rank`` dims, it varies at most along ``axis`` (and does not grow the tensor); else None."""
    if array.ndim > rank:
        return None
    full = (1,) * (rank - array.ndim) + tuple(array.shape)
    for i, dim in enumerate(full):
        if i != axis and dim != 1:
            return None
    if full[axis] not in (1, channels):
        return None
    return np.broadcast_to(array.astype(np.float64).reshape(-1), (channels,)).copy()


def _training_mode(node: ir.Node) -> bool:
    return bool(node.attributes.get_int("training_mode", 0))


def _extra_outputs_used(node: ir.Node) -> bool:
    return any(out.uses() or out.is_graph_output() for out in node.outputs[1:])


def _batchnorm_params(node: ir.Node) -> list[np.ndarray] | str:
    if _training_mode(node):
        return "BatchNormalization in training mode"
    if _extra_outputs_used(node):
        return "BatchNormalization running-statistics outputs are used"
    if len(node.inputs) < 5:
        return "BatchNormalization without its four parameters"
    params = [constant_array(v) for v in node.inputs[1:5]]
    if any(p is None for p in params):
        return "BatchNormalization parameters are not initializers"
    if node.inputs[0] is None or node.inputs[0].dtype not in FLOAT_TYPES:
        return "BatchNormalization input is not floating point"
    if len({p.size for p in params}) != 1:
        return "BatchNormalization parameters differ in length"
    return [p.astype(np.float64).reshape(-1) for p in params]


def batchnorm_affine(node: ir.Node) -> ChannelAffine | str:
    """The inference-mode BatchNormalization as an affine map over axis 1 (or a decline reason)."""
    params = _batchnorm_params(node)
    if isinstance(params, str):
        return params
    gamma, beta, mean, var = params
    epsilon = node.attributes.get_float("epsilon", DEFAULT_BN_EPSILON)
    scale = gamma / np.sqrt(var + np.float64(np.float32(epsilon)))
    return ChannelAffine(scale, beta - mean * scale)


def _cast(array: np.ndarray, like: np.ndarray) -> np.ndarray:
    return array.astype(like.dtype)


def _scaled(weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``weight * scale`` computed in float64 and rounded once to the weight's dtype."""
    out = np.empty(np.broadcast_shapes(weight.shape, scale.shape), dtype=weight.dtype)
    return np.multiply(weight, scale, out=out, dtype=np.float64, casting="unsafe")


def _hint(node: ir.Node, suffix: str) -> str:
    return f"{node.name or node.op_type}_{suffix}"


class Absorber(abc.ABC):
    """How one op type absorbs an affine map applied to its output.

    ``layout(node)`` gives ``(rank, channel_axis, channels)`` of the output or a decline reason;
    ``decline(node, affine)`` says why it cannot absorb this map (``None`` when it can);
    ``absorb(node, affine)`` rewrites and returns the value that now carries the result.
    """

    op_type = ""

    @abc.abstractmethod
    def layout(self, node: ir.Node) -> tuple[int, int, int] | str:
        ...

    def decline(self, node: ir.Node, affine: ChannelAffine) -> str | None:
        return None

    @abc.abstractmethod
    def absorb(self, node: ir.Node, affine: ChannelAffine) -> ir.Value:
        ...


def _weight_and_bias(node: ir.Node, bias_index: int) -> tuple[np.ndarray, np.ndarray | None] | str:
    weight = constant_array(node.inputs[1]) if len(node.inputs) > 1 else None
    if weight is None:
        return f"{node.op_type} weight is not an initializer"
    if node.inputs[1].dtype not in FLOAT_TYPES:
        return f"{node.op_type} weight is not floating point"
    bias_value = node.inputs[bias_index] if len(node.inputs) > bias_index else None
    if bias_value is None:
        return weight, None
    bias = constant_array(bias_value)
    if bias is None:
        return f"{node.op_type} bias is not an initializer"
    return weight, bias


def _new_bias(bias: np.ndarray | None, affine: ChannelAffine) -> np.ndarray | None:
    """``scale * bias + shift``, or None when there is no bias and nothing to add."""
    if bias is None:
        return affine.shift if affine.has_shift else None
    return bias.astype(np.float64).reshape(-1) * affine.scale + affine.shift


def _store_folded(
    node: ir.Node, folded: np.ndarray, bias: np.ndarray | None, affine: ChannelAffine
) -> ir.Value:
    """Write a Conv/ConvTranspose's folded weight and (if any) its new bias (input 2)."""
    set_constant_input(node, 1, folded, _hint(node, "weight"))
    new_bias = _new_bias(bias, affine)
    if new_bias is not None:
        set_constant_input(node, 2, _cast(new_bias, folded), _hint(node, "bias"))
    return node.outputs[0]


class _ConvAbsorber(Absorber):
    """Conv: weight [Cout, Cin/group, k...], output channels on axis 1."""

    op_type = "Conv"

    def layout(self, node):
        params = _weight_and_bias(node, 2)
        if isinstance(params, str):
            return params
        weight, _ = params
        return weight.ndim, 1, weight.shape[0]

    def absorb(self, node, affine):
        weight, bias = _weight_and_bias(node, 2)
        shape = (-1,) + (1,) * (weight.ndim - 1)
        folded = _scaled(weight, affine.scale.reshape(shape))
        return _store_folded(node, folded, bias, affine)


class _ConvTransposeAbsorber(Absorber):
    """ConvTranspose: weight [Cin, Cout/group, k...], output channel = g * Cout/group + j."""

    op_type = "ConvTranspose"

    def layout(self, node):
        params = _weight_and_bias(node, 2)
        if isinstance(params, str):
            return params
        weight, _ = params
        return weight.ndim, 1, weight.shape[1] * node.attributes.get_int("group", 1)

    def absorb(self, node, affine):
        weight, bias = _weight_and_bias(node, 2)
        group = node.attributes.get_int("group", 1)
        cin, cout_g, *kernel = weight.shape
        grouped = weight.reshape(group, cin // group, cout_g, *kernel)
        scale = affine.scale.reshape(group, 1, cout_g, *([1] * len(kernel)))
        folded = _scaled(grouped, scale).reshape(weight.shape)
        return _store_folded(node, folded, bias, affine)


class _GemmAbsorber(Absorber):
    """Gemm: ``alpha * A' B' + beta * C`` of shape [M, N]; channels are the N columns."""

    op_type = "Gemm"

    def layout(self, node):
        params = _weight_and_bias(node, 2)
        if isinstance(params, str):
            return params
        weight, _ = params
        if weight.ndim != 2:
            return "Gemm weight is not 2-D"
        trans_b = node.attributes.get_int("transB", 0)
        return 2, 1, weight.shape[0] if trans_b else weight.shape[1]

    def absorb(self, node, affine):
        weight, bias = _weight_and_bias(node, 2)
        trans_b = node.attributes.get_int("transB", 0)
        scale = affine.scale[:, None] if trans_b else affine.scale[None, :]
        folded = _scaled(weight, scale)
        set_constant_input(node, 1, folded, _hint(node, "weight"))
        if bias is None and not affine.has_shift:
            return node.outputs[0]
        if bias is None:
            new_bias = affine.shift
        else:
            beta = node.attributes.get_float("beta", 1.0)
            new_bias = beta * bias.astype(np.float64) * affine.scale + affine.shift
        set_constant_input(node, 2, _cast(new_bias, weight), _hint(node, "bias"))
        node.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
        return node.outputs[0]


class _MatMulAbsorber(Absorber):
    """MatMul by a 2-D initializer [K, N]: channels are the N columns of the last axis.

    Scaling folds into the weight at any rank; a shift needs a bias, so a 2-D MatMul becomes
    a Gemm (``A @ B + C``) and a higher-rank one declines.
    """

    op_type = "MatMul"

    def layout(self, node):
        weight = constant_array(node.inputs[1])
        if weight is None:
            return "MatMul weight is not an initializer"
        if weight.ndim != 2 or node.inputs[1].dtype not in FLOAT_TYPES:
            return "MatMul weight is not a 2-D floating-point tensor"
        value_rank = rank(node.inputs[0])
        if value_rank is None or value_rank < 2:
            return "MatMul input rank unknown or below 2"
        return value_rank, value_rank - 1, weight.shape[1]

    def decline(self, node, affine):
        if affine.has_shift and rank(node.inputs[0]) != 2:
            return "MatMul of rank above 2 has no bias to take the shift"
        return None

    def absorb(self, node, affine):
        weight = constant_array(node.inputs[1])
        folded = _scaled(weight, affine.scale[None, :])
        if not affine.has_shift:
            set_constant_input(node, 1, folded, _hint(node, "weight"))
            return node.outputs[0]
        graph = node.graph
        b_value = add_initializer(graph, folded, _hint(node, "weight"))
        c_value = add_initializer(graph, _cast(affine.shift, weight), _hint(node, "bias"))
        old_weight = node.inputs[1]
        gemm = ir.node("Gemm", [node.inputs[0], b_value, c_value], name=node.name)
        replace_node(node, gemm)
        drop_unused_initializer(graph, old_weight)
        return gemm.outputs[0]


class _BatchNormAbsorber(Absorber):
    """BatchNormalization: scale and bias take the affine map; mean and variance stay."""

    op_type = "BatchNormalization"

    def layout(self, node):
        params = _batchnorm_params(node)
        if isinstance(params, str):
            return params
        value_rank = rank(node.inputs[0])
        if value_rank is None:
            return "BatchNormalization input rank unknown"
        return value_rank, 1, params[0].size

    def absorb(self, node, affine):
        gamma, beta = (constant_array(v) for v in node.inputs[1:3])
        new_gamma = gamma.astype(np.float64).reshape(-1) * affine.scale
        new_beta = beta.astype(np.float64).reshape(-1) * affine.scale + affine.shift
        set_constant_input(node, 1, _cast(new_gamma, gamma), _hint(node, "scale"))
        set_constant_input(node, 2, _cast(new_beta, beta), _hint(node, "bias"))
        return node.outputs[0]


ABSORBERS: dict[str, Absorber] = {
    a.op_type: a
    for a in (
        _ConvAbsorber(),
        _ConvTransposeAbsorber(),
        _GemmAbsorber(),
        _MatMulAbsorber(),
        _BatchNormAbsorber(),
    )
}


def _conv_pads_input(node: ir.Node) -> bool:
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        return True
    return any(p != 0 for p in node.attributes.get_ints("pads", ()))


def check_next_conv(conv: ir.Node, data: ir.Value) -> tuple[int, int] | str:
    """``(rank, input_channels)`` if ``conv`` can absorb an affine map on its input ``data``."""
    if conv.op_type != "Conv" or len(conv.inputs) < 2 or conv.inputs[0] is not data:
        return f"followed by {conv.op_type}, not the data input of a Conv"
    if data in conv.inputs[1:]:
        return "the value also feeds the Conv's weight or bias"
    if _conv_pads_input(conv):
        return "the next Conv pads its input: the shift would not reach the padding"
    params = _weight_and_bias(conv, 2)
    if isinstance(params, str):
        return params
    weight, _ = params
    return weight.ndim, weight.shape[1] * conv.attributes.get_int("group", 1)


def absorb_into_next_conv(conv: ir.Node, affine: ChannelAffine) -> None:
    """``Conv(scale * x + shift)`` as ``Conv'(x)``: scale the input-channel slices of the weight,
    and add the weight's response to the constant shift to the bias (exact without padding)."""
    logger.debug("folding a per-channel affine map forward into Conv %s", conv.name)
    weight, bias = _weight_and_bias(conv, 2)
    group = conv.attributes.get_int("group", 1)
    cout, cin_g, *kernel = weight.shape
    groups_of_outputs = np.arange(cout) // (cout // group)
    scale = affine.scale.reshape(group, cin_g)[groups_of_outputs]
    shift = affine.shift.reshape(group, cin_g)[groups_of_outputs]
    weight64 = weight.astype(np.float64)
    extra = (weight64 * shift.reshape(cout, cin_g, *([1] * len(kernel)))).reshape(cout, -1).sum(1)
    folded = weight64 * scale.reshape(cout, cin_g, *([1] * len(kernel)))
    old_bias = np.zeros(cout) if bias is None else bias.astype(np.float64).reshape(-1)
    set_constant_input(conv, 1, _cast(folded, weight), _hint(conv, "weight"))
    if bias is not None or affine.has_shift:
        set_constant_input(conv, 2, _cast(old_bias + extra, weight), _hint(conv, "bias"))


@dataclasses.dataclass(frozen=True)
class ProducerPlan:
    """Where an affine map on ``data`` would fold: ``producer`` via ``absorber``."""

    producer: ir.Node
    absorber: Absorber
    rank: int
    axis: int
    channels: int


def plan_producer_fold(node: ir.Node, data: ir.Value) -> ProducerPlan | str:
    """Can the producer of ``data`` (read only by ``node``) absorb ``node``'s affine map?"""
    what = node.op_type
    producer = data.producer()
    if producer is None:
        return f"{what} of a graph input or initializer: nothing to fold into"
    absorber = ABSORBERS.get(producer.op_type) if producer.domain in ("", "ai.onnx") else None
    if absorber is None:
        return f"{what} after {producer.op_type}: nothing to fold into"
    if single_consumer(data) is not node:
        return (
            f"{what} after {producer.op_type}: the {producer.op_type} output is also"
            " used elsewhere or is a graph output"
        )
    layout = absorber.layout(producer)
    if isinstance(layout, str):
        return f"{what} after {producer.op_type}: {layout}"
    rank, axis, channels = layout
    return ProducerPlan(producer, absorber, rank, axis, channels)


def _compose(first: ChannelAffine, then: ChannelAffine) -> ChannelAffine:
    return ChannelAffine(then.scale * first.scale, then.scale * first.shift + then.shift)


def _follower_affine(node: ir.Node, data: ir.Value, plan: ProducerPlan) -> ChannelAffine | None:
    """The affine map ``node`` applies to ``data`` in ``plan``'s layout, if it is one."""
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "BatchNormalization":
        if node.inputs[0] is not data or plan.axis != 1:
            return None
        affine = batchnorm_affine(node)
        if isinstance(affine, str) or affine.scale.size != plan.channels:
            return None
        return affine
    if node.op_type not in ("Mul", "Add") or len(node.inputs) != 2:
        return None
    other = node.inputs[1] if node.inputs[0] is data else node.inputs[0]
    constant = constant_array(other)
    if other is data or constant is None:
        return None
    vector = channel_vector(constant, rank=plan.rank, axis=plan.axis, channels=plan.channels)
    if vector is None:
        return None
    if node.op_type == "Mul":
        return ChannelAffine.from_scale(vector)
    return ChannelAffine.from_shift(vector)


def extend_chain(
    node: ir.Node, affine: ChannelAffine, plan: ProducerPlan
) -> tuple[ChannelAffine, list[ir.Node]]:
    """Compose the per-channel Mul / Add / BatchNormalization nodes that follow ``node`` (each
    the only reader of the one before) into ``affine``, so that weights are rounded once."""
    chain = [node]
    while True:
        output = chain[-1].outputs[0]
        follower = single_consumer(output)
        if follower is None:
            break
        step = _follower_affine(follower, output, plan)
        if step is None:
            break
        composed = _compose(affine, step)
        if plan.absorber.decline(plan.producer, composed) is not None:
            break
        affine = composed
        chain.append(follower)
    return affine, chain


def fold_chain_into_producer(plan: ProducerPlan, affine: ChannelAffine, chain: list[ir.Node]):
    """Rewrite: the producer absorbs ``affine``; the ``chain`` of nodes it replaces goes."""
    logger.debug(
        "folding %s into %s %s",
        " -> ".join(n.op_type for n in chain),
        plan.producer.op_type,
        plan.producer.name,
    )
    graph = chain[-1].graph
    last_inputs = list(chain[-1].inputs)
    result = plan.absorber.absorb(plan.producer, affine)
    bypass(chain[-1], result)
    for value in last_inputs:
        drop_unused_initializer(graph, value)
    for node in reversed(chain[:-1]):
        remove_if_dead(node)


# Which operators keep channel ``c`` of their input at channel ``c`` of their output (what
# structured pruning follows through a graph). Parameters, if any, are per channel (PRelu's
# slope, BatchNormalization's statistics) or scalars.
CHANNELWISE_OPS = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "ThresholdedRelu", "Sigmoid",
    "HardSigmoid", "HardSwish", "Tanh", "Softplus", "Softsign", "Gelu", "Mish", "Clip", "Abs",
    "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf", "Cast",
    "Identity", "Dropout", "BatchNormalization", "InstanceNormalization",
    "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
})
"""Operators whose output channel ``c`` depends only on input channel ``c``."""

BROADCAST_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow"})
"""Elementwise operators with broadcasting: operands carrying channels are coupled position by
position; a constant operand is either per channel or broadcast along the channels."""

PER_CHANNEL_PARAMETERS = {
    "BatchNormalization": (1, 2, 3, 4),
    "InstanceNormalization": (1, 2),
    "PRelu": (1,),
}
"""Inputs of channelwise operators that hold one entry per channel (axis 0, or broadcast)."""
