"""equalize: cross-layer equalization keeps outputs and gives paired channels equal ranges."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper

from graphopt import oracle
from graphopt.passes.equalize import EqualizePass, equalization_pairs


def _model(rng, *, gemm: bool = False):
    w1 = (rng.normal(0, 1, (6, 3, 3, 3)) * rng.uniform(0.01, 10, (6, 1, 1, 1))).astype(np.float32)
    b1 = rng.normal(0, 1, 6).astype(np.float32)
    w2 = rng.normal(0, 1, (4, 6, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["y"], name="conv2"),
    ]
    inits = [onnx.numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2))]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 4, 4])], inits)
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _run(model, feed):
    return oracle.run_model(oracle.make_session(model), feed)["y"]


def test_equalize_keeps_outputs_and_equalizes_ranges():
    rng = np.random.default_rng(0)
    model = _model(rng)
    feed = {"x": rng.normal(0, 1, (2, 3, 8, 8)).astype(np.float32)}
    before = _run(model, feed)
    assert len(equalization_pairs(model)) == 1
    graph_pass = EqualizePass(rounds=1)
    result = graph_pass(model)
    assert result.modified and graph_pass.stats["pairs"] == 1
    after = _run(result.model, feed)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5 * np.abs(before).max())
    nodes = {n.name: n for n in result.model.graph}
    w1 = nodes["conv1"].inputs[1].const_value.numpy()
    w2 = nodes["conv2"].inputs[1].const_value.numpy()
    r1 = np.abs(w1).reshape(6, -1).max(axis=1)
    r2 = np.abs(w2).transpose(1, 0, 2, 3).reshape(6, -1).max(axis=1)
    np.testing.assert_allclose(r1, r2, rtol=1e-5)
    onnx.checker.check_model(ir.to_proto(result.model), full_check=True)


def test_a_shared_intermediate_is_not_a_pair():
    model = _model(np.random.default_rng(1))
    relu_out = next(n for n in model.graph if n.name == "relu").outputs[0]
    model.graph.outputs.append(relu_out)
    assert equalization_pairs(model) == []
