"""Where Q/DQ pairs go: the layers computed in int8 and the tensors that carry their data.

A *quantized layer* is a Conv, Gemm or MatMul with a constant weight (``op_types``). Around
each one:

- its data input and its output are *quantized tensors* (per-tensor Q/DQ pairs), so that
  onnxruntime, OpenVINO and TensorRT see ``DQ -> Conv -> Q`` and run the layer in int8;
- a ReLU that is the output's only reader is absorbed when activations are asymmetric: the
  quantized tensor is the ReLU's output, whose range starts at 0, so the zero point is the
  type's minimum and the Q clamp computes the ReLU exactly (the node is removed);
- graph outputs stay float (the last layer's output is not requantized);
- a Gemm's or MatMul's output is quantized only when a quantized tensor reads it (through
  value-moving operators): onnxruntime fuses ``DQ -> Gemm`` into QGemm with a float output,
  so the classifier's logits are not rounded before the Softmax (zoo shufflenet output SQNR
  on photo crops 21.9 -> 24.7 dB, inception_v2 10.7 -> 15.4 dB, resnet50 logits 32.0 ->
  33.9 dB; onnxruntime still runs QGemm). A Conv's output is quantized even when nothing
  quantized reads it, since onnxruntime runs a Conv in int8 only with a Q after it;
  ``unread_outputs=False`` drops those pairs (OpenVINO ran superres-10's int8 1.09x -> 0.70x
  of its bf16 time without the one on its last Conv), and ``--target`` tries both;
- grouped convolutions that are not depthwise (``1 < group < channels``, as in shufflenet)
  stay float unless ``grouped``: OpenVINO 2026.4 fails to compile some of them in int8
  ("No reorder available", zoo shufflenet's 272-channel group-4 1x1 convs) or computes them
  wrongly, and onnxruntime's int8 kernels for them are slower than float. Depthwise
  convolutions are quantized.

Tensors joined by an operator that moves or selects values without arithmetic (MaxPool,
Reshape, Flatten, Transpose, Squeeze, Unsqueeze) share one set of parameters, the union of
their ranges, so a runtime can run the operator on integers with nothing requantized. Concat
joins its inputs too with ``share_concat`` (the pass's default): on zoo squeezenet it took
onnxruntime from 0.80x to 0.73x of fp32 time, level with onnxruntime's own quantizer, and the
SQNR rose (38.8 -> 39.9 dB on photo crops; inception_v2 10.0 -> 10.7 dB, same latency).
Between two such operators (squeezenet's fire modules: Concat -> MaxPool) the tensor is
quantized too, in the same group: onnxruntime then runs both on integers where it used to
dequantize around them (squeezenet int8 on onnxruntime 0.963x -> 1.062x the speed of
onnxruntime's own quantizer's, measured paired).
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

__all__ = ["SHARING_OPS", "DEFAULT_OP_TYPES", "QuantLayer", "Placement", "plan_placement",
           "grouped_not_depthwise", "weight_axis", "weighted_layers"]

DEFAULT_OP_TYPES = ("Conv", "Gemm", "MatMul")
SHARING_OPS = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"})


@dataclasses.dataclass
class QuantLayer:
    """One layer to run in int8: its weight axis and the tensors around it."""

    node: ir.Node
    weight_axis: int
    data: ir.Value
    output: ir.Value  # the output (a ReLU's output when absorbed)
    relu: ir.Node | None = None
    output_quantized: bool = True  # whether ``output`` gets a Q/DQ pair


@dataclasses.dataclass
class Placement:
    layers: list[QuantLayer]
    tensors: list[ir.Value]  # every quantized tensor, in graph order
    groups: list[list[ir.Value]]  # tensors that share parameters
    declined: list[str]


def _constant(value: ir.Value | None) -> bool:
    return value is not None and value.const_value is not None


def weight_axis(node: ir.Node) -> int | str:
    """The output-channel axis of the node's weight, or why the node is not quantized."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if not _constant(weight):
        return "its weight is not a constant"
    rank = len(weight.const_value.shape)
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        if node.attributes.get_int("transA", 0):
            return "transA=1"
        if node.attributes.get_float("alpha", 1.0) != 1.0:
            return "alpha != 1"
        return 0 if node.attributes.get_int("transB", 0) else 1
    if node.op_type == "MatMul":
        return 1 if rank == 2 else f"a rank-{rank} weight"
    return f"{node.op_type} is not a quantized layer type"


def _absorbable_relu(output: ir.Value, asymmetric: bool) -> ir.Node | None:
    if not asymmetric or output.is_graph_output():
        return None
    readers = output.uses()
    if len(readers) != 1:
        return None
    (reader, _), = readers
    if reader.op_type == "Relu" and reader.domain in ("", "ai.onnx"):
        return None if reader.outputs[0].is_graph_output() else reader
    return None


def grouped_not_depthwise(node: ir.Node) -> int | None:
    """The ``group`` of a Conv with ``1 < group < channels``, else ``None``."""
    if node.op_type != "Conv":
        return None
    group = node.attributes.get_int("group", 1)
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    per_group = (weight.shape[1] if weight is not None and weight.shape is not None
                 and len(weight.shape) > 1 else None)
    return group if group > 1 and per_group != 1 else None


def weighted_layers(model: ir.Model, *, op_types=DEFAULT_OP_TYPES,
                    keep: frozenset[str] = frozenset(),
                    grouped: bool = True) -> tuple[list[tuple[ir.Node, int]], list[str]]:
    """``(node, weight axis)`` of every layer of ``op_types`` with a constant weight, and why
    the others were declined; ``keep`` names nodes or op types that stay float, and grouped
    convolutions that are not depthwise stay float unless ``grouped``."""
    layers, declined = [], []
    for node in model.graph:
        if node.op_type not in op_types or node.domain not in ("", "ai.onnx"):
            continue
        label = node.name or node.op_type
        if label in keep or node.op_type in keep:
            declined.append(f"{label}: kept float (keep=...)")
            continue
        group = None if grouped else grouped_not_depthwise(node)
        if group is not None:
            declined.append(f"{label}: stays float, a grouped convolution (group={group}, not"
                            " depthwise) whose int8 kernels runtimes lack or get wrong"
                            " (grouped=true quantizes it)")
            continue
        axis = weight_axis(node)
        if isinstance(axis, str):
            declined.append(f"{label}: stays float, {axis}")
            continue
        layers.append((node, axis))
    return layers, declined


def plan_placement(model: ir.Model, *, op_types=DEFAULT_OP_TYPES, asymmetric: bool = True,
                   keep: frozenset[str] = frozenset(), share_concat: bool = False,
                   outputs: bool = True, unread_outputs: bool = True,
                   grouped: bool = False) -> Placement:
    """The layers and tensors to quantize (see the module docstring); ``keep`` names nodes or
    op types that stay float. ``outputs=False``: layer inputs only; ``unread_outputs=False``:
    a Conv's output too only where a quantized tensor reads it."""
    candidates, declined = weighted_layers(model, op_types=op_types, keep=keep,
                                           grouped=grouped)
    layers = []
    for node, axis in candidates:
        relu = _absorbable_relu(node.outputs[0], asymmetric)
        output = relu.outputs[0] if relu is not None else node.outputs[0]
        layers.append(QuantLayer(node, axis, node.inputs[0], output, relu))
    wanted: dict[int, ir.Value] = {id(layer.data): layer.data for layer in layers}
    if outputs:
        for layer in layers:
            if (unread_outputs and layer.node.op_type == "Conv"
                    and not layer.output.is_graph_output()):
                wanted[id(layer.output)] = layer.output
        pending = [layer for layer in layers if id(layer.output) not in wanted]
        while any(_place_if_read(layer, wanted, share_concat) for layer in pending):
            pending = [layer for layer in pending if id(layer.output) not in wanted]
        for layer in pending:  # unread: the ReLU stays a node
            layer.output, layer.relu = layer.node.outputs[0], None
    _extend_through_moves(model, wanted, share_concat)
    for layer in layers:
        layer.output_quantized = id(layer.output) in wanted
    groups = _sharing_groups(model, wanted, share_concat)
    order = {id(v): i for i, v in enumerate(_graph_values(model))}
    tensors = sorted(wanted.values(), key=lambda v: order.get(id(v), -1))
    return Placement(layers, tensors, groups, declined)


def _place_if_read(layer: QuantLayer, wanted: dict[int, ir.Value], share_concat: bool) -> bool:
    """Quantize the layer's output if a quantized tensor reads it through value-moving
    operators; whether it did. Gemm and MatMul outputs are only ever placed so: unlike Conv,
    onnxruntime fuses ``DQ -> Gemm`` without an output Q (QGemm with a float output; MatMul:
    MatMulIntegerToFloat), so a Q on logits that only a Softmax reads would round them for
    nothing."""
    if layer.output.is_graph_output() or not _reaches_wanted(layer.output, wanted,
                                                               share_concat):
        return False
    wanted[id(layer.output)] = layer.output
    return True


def _reaches_wanted(value: ir.Value, wanted: dict[int, ir.Value], share_concat: bool) -> bool:
    """Whether ``value`` is wanted, or every reader moves it into a tensor that reaches a
    wanted one."""
    if id(value) in wanted:
        return True
    readers = value.uses()
    return bool(readers) and not value.is_graph_output() and all(
        _moves_values(node, share_concat) and any(v is value for v in _moved_inputs(node))
        and _reaches_wanted(node.outputs[0], wanted, share_concat)
        for node, _ in readers)


def _graph_values(model: ir.Model) -> list[ir.Value]:
    values = list(model.graph.inputs)
    for node in model.graph:
        values.extend(node.outputs)
    return values


def _moves_values(node: ir.Node, share_concat: bool) -> bool:
    return node.domain in ("", "ai.onnx") and (
        node.op_type in SHARING_OPS or (share_concat and node.op_type == "Concat"))


def _moved_inputs(node: ir.Node) -> list[ir.Value | None]:
    """The inputs whose values a value-moving operator moves (Concat: all; else the first)."""
    return list(node.inputs) if node.op_type == "Concat" else [node.inputs[0]]


def _extend_through_moves(model: ir.Model, wanted: dict[int, ir.Value],
                          share_concat: bool) -> None:
    """Quantize the tensor between two value-moving operators when the first one's inputs
    and the second one's output are quantized (fire modules' Concat -> MaxPool): runtimes
    then run both on integers (``DQ -> Concat -> Q``, ``DQ -> MaxPool -> Q``) instead of
    dequantizing around them; the tensor shares the others' parameters, so nothing rounds."""
    changed = True
    while changed:
        changed = False
        for node in reversed(list(model.graph)):
            if not _moves_values(node, share_concat) or id(node.outputs[0]) not in wanted:
                continue
            value = node.inputs[0] if node.op_type != "Concat" else None
            producer = value.producer() if value is not None else None
            if (value is None or id(value) in wanted or value.is_graph_output()
                    or producer is None or not _moves_values(producer, share_concat)):
                continue
            if all(v is not None and id(v) in wanted for v in _moved_inputs(producer)):
                wanted[id(value)] = value
                changed = True


def _sharing_groups(model: ir.Model, wanted: dict[int, ir.Value],
                    share_concat: bool) -> list[list[ir.Value]]:
    """Union-find over quantized tensors joined by value-moving operators."""
    parent = {key: key for key in wanted}

    def find(key: int) -> int:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for node in model.graph:
        if not _moves_values(node, share_concat):
            continue
        output = node.outputs[0]
        data = _moved_inputs(node)
        members = [output, *data]
        if not all(v is not None and id(v) in wanted for v in members):
            continue
        root = find(id(output))
        for value in data:
            parent[find(id(value))] = root
    grouped: dict[int, list[ir.Value]] = {}
    for key, value in wanted.items():
        grouped.setdefault(find(key), []).append(value)
    return list(grouped.values())
