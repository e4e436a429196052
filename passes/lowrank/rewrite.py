"""Graph edits of low-rank splitting: which layers can be split, and the nodes that replace one.

A layer is a *site*: a :class:`ConvSite` (a Conv with an initializer weight, explicit or VALID
padding, a known input shape) or a :class:`MatrixSite` (a MatMul by a 2-D initializer, or a
Gemm ``alpha * A @ op(B) + beta * C`` with ``transA = 0`` and ``C`` absent or a constant
vector). :func:`conv_site` and :func:`matrix_site` return the site or a sentence saying why the
layer is not one.

:func:`apply_split` writes a :class:`Split` (the factor weights, stacked over the groups)
in place of the layer: the first factors are inserted before it, the last one replaces it
(taking over its output and name, and carrying its bias), every edit through the use-def API.

- ``spatial_svd``: ``Conv kh x 1`` (stride, dilation and padding of the height) then
  ``Conv 1 x kw`` (those of the width, and the bias);
- ``channel_svd``: ``Conv`` with the original geometry and ``r`` outputs, then a ``1x1`` Conv;
- ``tucker2``: ``1x1`` Conv, the core Conv with the original geometry, ``1x1`` Conv;
- ``svd``: ``MatMul(X, A)`` then ``MatMul(., B)``, or for a Gemm ``Gemm(., B, beta * C)``
  (``alpha`` folded into ``B``; a Gemm stays a Gemm so opset-9 graphs stay valid).

Every factor keeps the layer's ``group``: factor ``i`` of group ``g`` reads and writes only that
group's channels, so a grouped convolution is split group by group.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx_ir as ir

from graphopt.passes.channels import FLOAT_TYPES, channel_vector
from graphopt.passes.rewrite_utils import (
    add_initializer,
    constant_array,
    drop_unused_initializer,
    replace_node,
)

__all__ = [
    "CONV_METHODS",
    "MATRIX_METHOD",
    "ConvSite",
    "MatrixSite",
    "Split",
    "conv_site",
    "matrix_site",
    "apply_split",
    "factor_nodes",
    "layer_model",
]

CONV_METHODS = ("spatial_svd", "channel_svd", "tucker2")
MATRIX_METHOD = "svd"


@dataclasses.dataclass(frozen=True)
class Split:
    """A factorisation of one layer: the method, the rank(s) per group, the factor weights
    (stacked over groups, float64) in graph order, its MACs and its relative weight error.
    ``bias`` replaces the layer's bias on the last factor (set by the least-squares repair)."""

    method: str
    ranks: tuple[int, ...]
    weights: tuple[np.ndarray, ...]
    macs: int
    error: float
    kept_energy: float
    bias: np.ndarray | None = None

    def describe(self) -> str:
        ranks = "x".join(str(r) for r in self.ranks)
        return f"{self.method} rank {ranks}"


def _dim(value) -> int:
    return value if isinstance(value, int) else 1


@dataclasses.dataclass(frozen=True)
class ConvSite:
    """A convolution that can be split (see the module docstring)."""

    node: ir.Node
    weight: np.ndarray
    bias: np.ndarray | None
    groups: int
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    batch: int
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return self.weight.dtype

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def group_outputs(self) -> int:
        return self.weight.shape[0] // self.groups

    @property
    def group_inputs(self) -> int:
        return self.weight.shape[1]

    def group_weights(self) -> list[np.ndarray]:
        """The weight of each group, ``[n / g, c / g, *kernel]`` in float64."""
        weight = self.weight.astype(np.float64)
        return list(weight.reshape(self.groups, self.group_outputs, *weight.shape[1:]))

    @property
    def macs(self) -> int:
        return (self.batch * self.out_channels * math.prod(self.out_spatial)
                * self.group_inputs * math.prod(self.kernel))

    def describe(self) -> str:
        kernel = "x".join(map(str, self.kernel))
        grouped = f", group {self.groups}" if self.groups > 1 else ""
        return (f"Conv {self.group_inputs * self.groups}->{self.out_channels}"
                f" {kernel}{grouped}")


@dataclasses.dataclass(frozen=True)
class MatrixSite:
    """``Y = X @ W (+ bias)`` with ``W`` of shape ``[k, n]`` (alpha folded in) over ``rows``
    rows of ``X``."""

    node: ir.Node
    weight: np.ndarray
    bias: np.ndarray | None
    rows: int
    dtype: np.dtype


    @property
    def macs(self) -> int:
        k, n = self.weight.shape
        return self.rows * k * n

    def describe(self) -> str:
        k, n = self.weight.shape
        return f"{self.node.op_type} {k}->{n}"


def _ints(node: ir.Node, name: str, default: list[int]) -> tuple[int, ...]:
    attribute = node.attributes.get(name)
    return tuple(attribute.as_ints()) if attribute is not None else tuple(default)


def _float_weight(node: ir.Node, index: int) -> np.ndarray | str:
    value = node.inputs[index] if len(node.inputs) > index else None
    array = constant_array(value)
    if array is None:
        return f"input {index} is not an initializer"
    if value.dtype not in FLOAT_TYPES:
        return f"input {index} is not floating point"
    return array


def conv_site(node: ir.Node) -> ConvSite | str:
    """The :class:`ConvSite` of a Conv node, or why it cannot be split."""
    weight = _float_weight(node, 1)
    if isinstance(weight, str):
        return f"its weight ({weight})"
    spatial = weight.ndim - 2
    if spatial < 1:
        return "its weight has no spatial axes"
    bias = None
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        bias = constant_array(node.inputs[2])
        if bias is None:
            return "its bias is not an initializer"
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        return f"auto_pad={auto_pad} (only explicit pads are split)"
    groups = node.attributes.get_int("group", 1)
    if weight.shape[0] % groups:
        return f"{weight.shape[0]} outputs do not divide into {groups} groups"
    data, output = node.inputs[0], node.outputs[0]
    if data is None or data.shape is None or len(data.shape) != spatial + 2:
        return "its input shape is unknown"
    in_spatial = tuple(data.shape)[2:]
    if not all(isinstance(d, int) for d in in_spatial):
        return "its input's spatial shape is not static"
    strides = _ints(node, "strides", [1] * spatial)
    dilations = _ints(node, "dilations", [1] * spatial)
    pads = (0,) * (2 * spatial) if auto_pad == "VALID" else _ints(node, "pads", [0] * 2 * spatial)
    kernel = weight.shape[2:]
    out_spatial = tuple(
        (in_spatial[i] + pads[i] + pads[i + spatial] - dilations[i] * (kernel[i] - 1) - 1)
        // strides[i] + 1 for i in range(spatial))
    if output.dtype is not None and output.dtype not in FLOAT_TYPES:
        return "its output is not floating point"
    return ConvSite(node, weight, bias, groups, strides, dilations, pads,
                    _dim(tuple(data.shape)[0]), in_spatial, out_spatial)


def matrix_site(node: ir.Node) -> MatrixSite | str:
    """The :class:`MatrixSite` of a Gemm or MatMul node, or why it cannot be split."""
    weight = _float_weight(node, 1)
    if isinstance(weight, str):
        return f"its weight ({weight})"
    if weight.ndim != 2:
        return f"its weight has {weight.ndim} dimensions (only 2-D weights are split)"
    data = node.inputs[0]
    if data is None or data.shape is None or len(data.shape) < 2:
        return "its input is not a known matrix or batch of matrices"
    rows = math.prod(_dim(d) for d in tuple(data.shape)[:-1])
    dtype, weight = weight.dtype, weight.astype(np.float64)
    if node.op_type == "MatMul":
        return MatrixSite(node, weight, None, rows, dtype)
    if node.attributes.get_int("transA", 0):
        return "Gemm with transA=1"
    if node.attributes.get_int("transB", 0):
        weight = weight.T
    weight = weight * node.attributes.get_float("alpha", 1.0)
    bias = None
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        c = constant_array(node.inputs[2])
        vector = None if c is None else channel_vector(c, rank=2, axis=1, channels=weight.shape[1])
        if vector is None:
            return "its C input is not a constant vector over the outputs"
        bias = vector * node.attributes.get_float("beta", 1.0)
    return MatrixSite(node, weight, bias, rows, dtype)


def _like(array: np.ndarray, site: ConvSite | MatrixSite) -> np.ndarray:
    return np.asarray(array).astype(site.dtype)


def _conv(x: ir.Value, weight: ir.Value, bias: ir.Value | None, *, kernel, strides, dilations,
          pads, groups: int, name: str) -> ir.Node:
    inputs = [x, weight] + ([bias] if bias is not None else [])
    return ir.node("Conv", inputs, {
        "kernel_shape": list(kernel), "strides": list(strides), "dilations": list(dilations),
        "pads": list(pads), "group": groups}, name=name)


def _conv_geometries(site: ConvSite, method: str) -> list[dict]:
    """Kernel, strides, dilations and pads of each factor of ``method``."""
    spatial = len(site.kernel)
    ones, zeros = (1,) * spatial, (0,) * (2 * spatial)
    original = {"kernel": site.kernel, "strides": site.strides, "dilations": site.dilations,
                "pads": site.pads}
    pointwise = {"kernel": ones, "strides": ones, "dilations": ones, "pads": zeros}
    if method == "channel_svd":
        return [original, pointwise]
    if method == "tucker2":
        return [pointwise, original, pointwise]
    (kh, kw), (sh, sw), (dh, dw) = site.kernel, site.strides, site.dilations
    top, left, bottom, right = site.pads
    return [{"kernel": (kh, 1), "strides": (sh, 1), "dilations": (dh, 1),
             "pads": (top, 0, bottom, 0)},
            {"kernel": (1, kw), "strides": (1, sw), "dilations": (1, dw),
             "pads": (0, left, 0, right)}]


def factor_nodes(graph: ir.Graph, site: ConvSite | MatrixSite, split: Split,
                 x: ir.Value) -> list[ir.Node]:
    """The factor nodes of ``split`` reading ``x``, weights registered in ``graph``; the last
    node carries the bias."""
    node = site.node
    base = node.name or node.outputs[0].name or node.op_type
    bias = None
    bias_array = split.bias if split.bias is not None else site.bias
    if bias_array is not None:
        bias = add_initializer(graph, _like(bias_array, site), f"{base}_lowrank_bias")
    nodes: list[ir.Node] = []
    current = x
    if isinstance(site, ConvSite):
        geometries = _conv_geometries(site, split.method)
        for index, (weight, geometry) in enumerate(zip(split.weights, geometries, strict=True)):
            last = index == len(geometries) - 1
            value = add_initializer(graph, _like(weight, site),
                                    f"{base}_lowrank_w{index}")
            nodes.append(_conv(current, value, bias if last else None, groups=site.groups,
                               name=f"{base}_lowrank{index}", **geometry))
            current = nodes[-1].outputs[0]
    else:
        first, second = split.weights
        a = add_initializer(graph, _like(first, site), f"{base}_lowrank_w0")
        nodes.append(ir.node("MatMul", [current, a], name=f"{base}_lowrank0"))
        current = nodes[-1].outputs[0]
        b = add_initializer(graph, _like(second, site), f"{base}_lowrank_w1")
        if node.op_type == "Gemm":
            inputs = [current, b] + ([bias] if bias is not None else [])
            nodes.append(ir.node("Gemm", inputs, name=f"{base}_lowrank1"))
        else:
            nodes.append(ir.node("MatMul", [current, b], name=f"{base}_lowrank1"))
    dtype = node.outputs[0].dtype
    for factor in nodes[:-1]:
        factor.outputs[0].dtype = dtype
    return nodes


def apply_split(site: ConvSite | MatrixSite, split: Split) -> list[ir.Node]:
    """Replace the site's layer by the factor nodes of ``split``; returns them."""
    node = site.node
    graph = node.graph
    old_inputs = list(node.inputs)
    nodes = factor_nodes(graph, site, split, node.inputs[0])
    if len(nodes) > 1:
        graph.insert_before(node, nodes[:-1])
    nodes[-1].name = node.name
    replace_node(node, nodes[-1])
    for value in old_inputs[1:]:
        drop_unused_initializer(graph, value)
    return nodes


def layer_model(site: ConvSite | MatrixSite, split: Split | None, opset: int) -> ir.Model:
    """A model of the layer alone (``split`` None) or of its factors, on the layer's input
    shape with a batch of 1: what a latency probe measures a per-layer decision on."""
    source = site.node.inputs[0]
    dims = [d if isinstance(d, int) else 1 for d in tuple(source.shape)]
    x = ir.Value(name="x", shape=ir.Shape(dims), type=ir.TensorType(source.dtype))
    graph = ir.Graph([x], [], nodes=[], opset_imports={"": opset}, name="layer")
    if split is None:
        node = site.node
        inputs = [x]
        for index, value in enumerate(node.inputs[1:], start=1):
            array = None if value is None else constant_array(value)
            inputs.append(None if array is None else add_initializer(graph, array, f"i{index}"))
        nodes = [ir.node(node.op_type, inputs, {a.name: a.value for a in node.attributes.values()},
                         name="layer")]
    else:
        nodes = factor_nodes(graph, site, split, x)
    graph.extend(nodes)
    output = nodes[-1].outputs[0]
    output.name, output.dtype = "y", source.dtype
    known = site.node.outputs[0].shape
    if known is not None:
        output.shape = ir.Shape([d if isinstance(d, int) else 1 for d in tuple(known)])
    graph.outputs.append(output)
    return ir.Model(graph, ir_version=8)
