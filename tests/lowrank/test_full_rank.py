"""Full-rank splits reproduce each layer's output (1e-4 relative, onnxruntime with graph
optimizations off), for every method and conv geometry; factor structure and MACs as planned."""

from __future__ import annotations

import numpy as np
import pytest
from lowrank_testing import build, check, conv_model, op_types, relative_error, run

from graphopt.cost import model_cost
from graphopt.passes.lowrank import LowRankPass

FULL = {"energy": 1.0, "only_if_faster": False, "round_to": 1}

GEOMETRIES = {
    "plain": {"c": 6, "n": 8, "kernel": (3, 3)},
    "stride_pad": {"c": 6, "n": 8, "kernel": (3, 5), "strides": [2, 1], "pads": [1, 2, 0, 1]},
    "dilation": {"c": 4, "n": 6, "kernel": (3, 3), "dilations": [2, 1], "pads": [2, 1, 2, 1]},
    "groups": {"c": 8, "n": 12, "kernel": (3, 3), "group": 2, "strides": [1, 2],
               "pads": [1, 1, 1, 1]},
    "no_bias": {"c": 5, "n": 7, "kernel": (5, 3), "bias": False, "strides": [3, 2],
                "dilations": [1, 2], "pads": [0, 1, 2, 3]},
    "four_groups": {"c": 8, "n": 8, "kernel": (3, 3), "group": 4, "pads": [1, 0, 0, 1]},
}
FACTORS = {"spatial_svd": 2, "channel_svd": 2, "tucker2": 3}


@pytest.mark.parametrize("method", sorted(FACTORS))
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_full_rank_conv_reproduces_the_layer(method, geometry):
    spec = GEOMETRIES[geometry]
    model = conv_model(**spec)
    c, size = spec["c"], (11, 13)
    feed = {"x": np.random.default_rng(3).normal(size=(2, c, *size)).astype(np.float32)}
    reference = run(model, feed)
    macs_before = model_cost(model).macs
    lowrank = LowRankPass(method=method, **FULL)
    result = lowrank(model)
    assert result.modified
    assert op_types(model) == ["Conv"] * FACTORS[method]
    (decision,) = lowrank.decisions
    assert decision.split and decision.method == method
    assert decision.macs_before == macs_before
    # The planner's MAC count is the cost model's on the rewritten graph.
    assert model_cost(model, refresh_shapes=True).macs == decision.macs_after
    groups = spec.get("group", 1)
    assert all(node.attributes.get_int("group", 1) == groups for node in model.graph)
    last = list(model.graph)[-1]
    assert (len(last.inputs) == 3) == spec.get("bias", True)
    assert relative_error(reference, run(model, feed)) < 1e-4
    check(model)


def test_spatial_svd_factor_geometry():
    model = conv_model(6, 8, (3, 5), strides=[2, 3], pads=[1, 2, 0, 1], dilations=[2, 1])
    LowRankPass(method="spatial_svd", **FULL)(model)
    vertical, horizontal = list(model.graph)
    assert vertical.attributes.get_ints("kernel_shape") == (3, 1)
    assert vertical.attributes.get_ints("strides") == (2, 1)
    assert vertical.attributes.get_ints("dilations") == (2, 1)
    assert vertical.attributes.get_ints("pads") == (1, 0, 0, 0)
    assert horizontal.attributes.get_ints("kernel_shape") == (1, 5)
    assert horizontal.attributes.get_ints("strides") == (1, 3)
    assert horizontal.attributes.get_ints("pads") == (0, 2, 0, 1)
    # Full rank of the (c*kh) x (n*kw) matrix: min(18, 40).
    assert vertical.inputs[1].const_value.numpy().shape == (18, 6, 3, 1)


def test_conv1d_channel_svd_and_tucker():
    for method in ("channel_svd", "tucker2"):
        model = conv_model(6, 10, (3,), strides=[2], pads=[1, 1], size=(17,))
        feed = {"x": np.random.default_rng(4).normal(size=(2, 6, 17)).astype(np.float32)}
        reference = run(model, feed)
        LowRankPass(method=method, **FULL)(model)
        assert relative_error(reference, run(model, feed)) < 1e-4
    model = conv_model(6, 10, (3,), size=(17,))
    lowrank = LowRankPass(method="spatial_svd", **FULL)
    assert not lowrank(model).modified
    assert "2-D kernel" in lowrank.decisions[0].reason


_GEMM = """
    <ir_version: 8, opset_import: ["" : 9]>
    g (float[5, 12] x) => (float[5, 7] y) {
        y = Gemm <transB = 1, alpha = 0.5, beta = 2.0> (x, w, c)
    }
"""
_MATMUL = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3, 12] x) => (float[2, 3, 7] y) {
        y = MatMul (x, w)
    }
"""


def test_full_rank_gemm_keeps_opset9_gemm_and_its_bias():
    rng = np.random.default_rng(5)
    model = build(_GEMM, w=rng.normal(size=(7, 12)).astype(np.float32),
                  c=rng.normal(size=7).astype(np.float32))
    feed = {"x": rng.normal(size=(5, 12)).astype(np.float32)}
    reference = run(model, feed)
    lowrank = LowRankPass(**FULL)
    lowrank(model)
    assert op_types(model) == ["MatMul", "Gemm"]
    assert lowrank.decisions[0].ranks == (7,)
    assert relative_error(reference, run(model, feed)) < 1e-4
    check(model)


def test_full_rank_matmul_on_batched_input():
    rng = np.random.default_rng(6)
    model = build(_MATMUL, w=rng.normal(size=(12, 7)).astype(np.float32))
    feed = {"x": rng.normal(size=(2, 3, 12)).astype(np.float32)}
    reference = run(model, feed)
    lowrank = LowRankPass(**FULL)
    lowrank(model)
    assert op_types(model) == ["MatMul", "MatMul"]
    assert lowrank.decisions[0].macs_after == model_cost(model, refresh_shapes=True).macs
    assert relative_error(reference, run(model, feed)) < 1e-4
