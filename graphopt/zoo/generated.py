"""Small models built in code for tests and demos, and a large-weights generator.

- ``mbv2_block``: a MobileNetV2 inverted residual (1x1 expand, depthwise 3x3, 1x1 project, each
  with BatchNormalization, Clip(0, 6) as ReLU6, residual Add).
- ``mlp``: MatMul+Add+Relu layers ending in a Gemm, dynamic batch.
- ``tiny_cnn``: Conv+BN+Relu, pooling, Flatten, Gemm with a dynamic batch dimension.
``write_large_model`` writes a MatMul chain with external data of any size (the >2 GB case).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

__all__ = ["GENERATED_MODELS", "build", "write_large_model"]

OPSET = 17


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


class _Builder:
    """Collects nodes and initializers with seeded, He-scaled weights."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rng = _rng(name)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, array: np.ndarray) -> str:
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, *, group: int = 1, stride: int = 1,
             bias: bool = False) -> str:
        fan_in = cin // group * k * k
        w = self.rng.normal(0, np.sqrt(2 / fan_in), (cout, cin // group, k, k)).astype(np.float32)
        inputs = [x, self.const("w", w)]
        if bias:
            inputs.append(self.const("b", self.rng.normal(0, 0.01, cout).astype(np.float32)))
        pad = k // 2
        return self.node("Conv", inputs, kernel_shape=[k, k], pads=[pad] * 4,
                         strides=[stride, stride], group=group)

    def batch_norm(self, x: str, channels: int) -> str:
        r = self.rng
        params = [
            r.uniform(0.7, 1.3, channels),
            r.normal(0, 0.1, channels),
            r.normal(0, 0.1, channels),
            r.uniform(0.5, 1.5, channels),
        ]
        names = [self.const("bn", p.astype(np.float32)) for p in params]
        return self.node("BatchNormalization", [x, *names], epsilon=1e-5)

    def relu6(self, x: str) -> str:
        low = self.const("min", np.array(0.0, np.float32))
        high = self.const("max", np.array(6.0, np.float32))
        return self.node("Clip", [x, low, high])

    def model(self, inputs: list[onnx.ValueInfoProto], output: str,
              output_shape: list) -> onnx.ModelProto:
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)
        self.nodes[-1].output[0] = output
        graph = helper.make_graph(self.nodes, self.name, inputs, [out], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="graphopt.zoo")
        model.ir_version = 8
        return model


def _mbv2_block() -> onnx.ModelProto:
    b = _Builder("mbv2_block")
    channels, expanded = 16, 96
    x = "input"
    h = b.relu6(b.batch_norm(b.conv(x, channels, expanded, 1), expanded))
    h = b.relu6(b.batch_norm(b.conv(h, expanded, expanded, 3, group=expanded), expanded))
    h = b.batch_norm(b.conv(h, expanded, channels, 1), channels)
    b.node("Add", [h, x])
    shape = [1, channels, 56, 56]
    return b.model([helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)], "output", shape)


def _mlp() -> onnx.ModelProto:
    b = _Builder("mlp")
    sizes = [256, 512, 256, 10]
    h = "input"
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        w = b.rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out)).astype(np.float32)
        h = b.node("MatMul", [h, b.const("w", w)])
        h = b.node("Add", [h, b.const("b", b.rng.normal(0, 0.01, fan_out).astype(np.float32))])
        h = b.node("Relu", [h])
    w = b.rng.normal(0, np.sqrt(1 / sizes[-2]), (sizes[-1], sizes[-2])).astype(np.float32)
    bias = b.rng.normal(0, 0.01, sizes[-1]).astype(np.float32)
    b.node("Gemm", [h, b.const("w", w), b.const("b", bias)], transB=1)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])
    return b.model([x], "logits", ["batch", sizes[-1]])


def _tiny_cnn() -> onnx.ModelProto:
    b = _Builder("tiny_cnn")
    h = b.node("Relu", [b.batch_norm(b.conv("input", 3, 16, 3), 16)])
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.node("Relu", [b.batch_norm(b.conv(h, 16, 32, 3, stride=2), 32)])
    h = b.node("Flatten", [b.node("GlobalAveragePool", [h])])
    w = b.rng.normal(0, np.sqrt(1 / 32), (10, 32)).astype(np.float32)
    b.node("Gemm", [h, b.const("w", w), b.const("b", np.zeros(10, np.float32))], transB=1)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])
    return b.model([x], "logits", ["batch", 10])


GENERATED_MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "mbv2_block": _mbv2_block,
    "mlp": _mlp,
    "tiny_cnn": _tiny_cnn,
}


def build(name: str) -> ir.Model:
    return ir.from_proto(GENERATED_MODELS[name]())


def write_large_model(path: str | Path, weight_bytes: int, *, width: int = 8192) -> Path:
    """Write a MatMul chain whose weights total about ``weight_bytes``, as external data.

    Each layer is a ``width x width`` float32 MatMul followed by an Identity and a Dropout (so
    that the lossless pipeline has something to remove); layers are generated one at a time.
    """
    path = Path(path)
    layer_bytes = width * width * 4
    layers = max(1, -(-weight_bytes // layer_bytes))
    rng = np.random.default_rng(0)
    x = ir.Value(name="input", shape=ir.Shape([1, width]), type=ir.TensorType(ir.DataType.FLOAT))
    nodes, initializers, h = [], [], x
    for index in range(layers):
        array = rng.standard_normal((width, width), dtype=np.float32)
        array *= np.float32(1 / np.sqrt(width))
        weight = ir.Value(name=f"w{index}", const_value=ir.tensor(array, name=f"w{index}"),
                          shape=ir.Shape([width, width]), type=ir.TensorType(ir.DataType.FLOAT))
        initializers.append(weight)
        matmul = ir.node("MatMul", [h, weight], name=f"matmul{index}")
        identity = ir.node("Identity", [matmul.outputs[0]], name=f"identity{index}")
        dropout = ir.node("Dropout", [identity.outputs[0]], name=f"dropout{index}")
        nodes += [matmul, identity, dropout]
        h = dropout.outputs[0]
    h.name = "output"
    graph = ir.Graph([x], [h], nodes=nodes, initializers=initializers, opset_imports={"": OPSET},
                     name="large_mlp")
    model = ir.Model(graph, ir_version=8, producer_name="graphopt.zoo")
    path.parent.mkdir(parents=True, exist_ok=True)
    ir.save(model, path, external_data=f"{path.name}.data")
    return path
