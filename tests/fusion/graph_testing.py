"""Test helpers for fusion rules: tiny graphs from ``onnx.parser`` text, rules applied by name,
numeric equivalence against onnxruntime with graph optimizations OFF, and the full checker.

Typical test::

    model = build(TEXT, w=np.ones((4,), np.float32))
    reference = snapshot(model)
    fuse = apply(model, "transpose_merge")
    assert op_types(model) == ["Transpose"]
    assert_equivalent(reference, model)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper

from graphopt import oracle
from graphopt.passes.fusion import FusePass
from graphopt.verify import random_inputs

__all__ = [
    "DEFAULT_RTOL",
    "build",
    "snapshot",
    "apply",
    "op_types",
    "nodes_of",
    "run",
    "assert_equivalent",
    "check_model",
    "declines",
]

# Tight: rules are exact rewrites or reorder at most a few float operations.
DEFAULT_RTOL = 1e-6


def build(text: str, **initializers: np.ndarray) -> ir.Model:
    """Parse a model written in ONNX text format, add initializers, infer shapes, load into IR."""
    proto = onnx.parser.parse_model(text)
    for name, array in initializers.items():
        proto.graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    return ir.from_proto(proto)


def snapshot(model: ir.Model) -> onnx.ModelProto:
    """A frozen copy of ``model`` to compare against after rewriting it in place."""
    return ir.to_proto(model)


def apply(model: ir.Model, *rules: str) -> FusePass:
    """Run ``fuse`` restricted to ``rules`` on ``model`` in place; returns the pass (stats...)."""
    fuse = FusePass(rules=tuple(rules))
    fuse(model)
    return fuse


def declines(fuse: FusePass) -> list[str]:
    """The decline explanations the last run recorded."""
    return list(fuse.explanations)


def op_types(model: ir.Model) -> list[str]:
    """Operator types in graph order."""
    return [node.op_type for node in model.graph]


def nodes_of(model: ir.Model, op_type: str) -> list[ir.Node]:
    return [node for node in model.graph if node.op_type == op_type]


def run(model: ir.Model | onnx.ModelProto, inputs: Mapping[str, np.ndarray]):
    """Outputs of ``model`` on ``inputs`` in onnxruntime with graph optimizations off."""
    if isinstance(model, onnx.ModelProto):
        model = ir.from_proto(model)
    return oracle.run_model(oracle.make_session(model), inputs)


def assert_equivalent(
    reference: onnx.ModelProto,
    model: ir.Model,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    rtol: float = DEFAULT_RTOL,
) -> None:
    """Same output names, shapes, dtypes and values (within ``rtol`` of each output's range)."""
    check_model(model)
    if inputs is None:
        inputs = random_inputs(ir.from_proto(reference), seed=7)
    expected = run(reference, inputs)
    actual = run(model, inputs)
    assert list(actual) == list(expected), f"outputs {list(actual)} != {list(expected)}"
    for name, want in expected.items():
        got = actual[name]
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        np.testing.assert_allclose(got, want, rtol=0, atol=rtol * max(scale, 1e-30))


def check_model(model: ir.Model) -> None:
    """The ONNX checker with full shape and type checking."""
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
