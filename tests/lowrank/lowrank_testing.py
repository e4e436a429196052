"""Test helpers for lowrank: tiny conv / Gemm / MatMul models with initializers, outputs from
onnxruntime with graph optimizations off, and the relative error of two outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper

from graphopt import oracle

__all__ = ["build", "conv_model", "run", "relative_error", "op_types", "check"]


def build(text: str, **initializers: np.ndarray) -> ir.Model:
    proto = onnx.parser.parse_model(text)
    for name, array in initializers.items():
        proto.graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    return ir.from_proto(proto)


def conv_model(c: int, n: int, kernel: tuple[int, ...], *, strides=None, pads=None,
               dilations=None, group: int = 1, bias: bool = True, size=(11, 13),
               batch: int = 2, seed: int = 0, weight: np.ndarray | None = None) -> ir.Model:
    """One Conv ``c -> n`` on a ``[batch, c, *size]`` input with the given geometry."""
    rng = np.random.default_rng(seed)
    spatial = len(kernel)
    strides = strides or [1] * spatial
    pads = pads or [0] * 2 * spatial
    dilations = dilations or [1] * spatial
    dims = ", ".join(map(str, (batch, c, *size[:spatial])))
    out_dims = ", ".join(f"o{i}" for i in range(spatial + 2))
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[{dims}] x) => (float[{out_dims}] y) {{
            y = Conv <strides = {list(strides)}, pads = {list(pads)},
                      dilations = {list(dilations)}, group = {group}> (x, w{", b" if bias else ""})
        }}"""
    if weight is None:
        weight = rng.normal(0, 0.3, (n, c // group, *kernel))
    arrays = {"w": weight.astype(np.float32)}
    if bias:
        arrays["b"] = rng.normal(0, 0.3, n).astype(np.float32)
    return build(text, **arrays)


def run(model: ir.Model | onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The first output of ``model`` on ``feed`` (onnxruntime, optimizations off)."""
    if isinstance(model, onnx.ModelProto):
        model = ir.from_proto(model)
    outputs = oracle.run_model(oracle.make_session(model), feed)
    return next(iter(outputs.values()))


def relative_error(reference: np.ndarray, actual: np.ndarray) -> float:
    """Largest absolute difference over the largest reference magnitude."""
    return float(np.max(np.abs(reference - actual)) / np.max(np.abs(reference)))


def op_types(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def check(model: ir.Model) -> None:
    """The full ONNX checker with shape inference."""
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
