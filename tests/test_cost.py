"""Cost model: MACs and parameters by hand on tiny graphs, and the resnet50 reference."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
import pytest

from graphopt import cost as cost_module
from graphopt.cost import model_cost
from graphopt.model_io import resolve_model


def _model(text: str) -> ir.Model:
    return ir.from_proto(onnx.parser.parse_model(text))


def test_grouped_dilated_conv_macs():
    model = _model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 8, 10, 10] x) => (float[1, 16, 10, 10] y) {
            w = Constant <value = float[16, 2, 3, 3] {0.0}> ()
            y = Conv <group = 4, dilations = [2, 2], pads = [2, 2, 2, 2]> (x, w)
        }
        """
    )
    common_passes.LiftConstantsToInitializersPass(size_limit=0)(model)
    cost = model_cost(model)
    assert cost.macs == 16 * 10 * 10 * 2 * 3 * 3
    assert cost.params == 16 * 2 * 3 * 3


def test_gemm_and_matmul_macs():
    model = _model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[4, 32] x) => (float[4, 10] y) {
            w1 = Constant <value = float[32, 64] {0.0}> ()
            h = MatMul (x, w1)
            w2 = Constant <value = float[10, 64] {0.0}> ()
            y = Gemm <transB = 1> (h, w2)
        }
        """
    )
    common_passes.LiftConstantsToInitializersPass(size_limit=0)(model)
    cost = model_cost(model)
    assert cost.macs == 4 * 32 * 64 + 4 * 64 * 10
    assert cost.params == 32 * 64 + 10 * 64
    assert cost.weight_bytes == 4 * cost.params


def test_resnet50_reference_figures():
    cost = model_cost(resolve_model("zoo:resnet50"))
    assert cost.params == pytest.approx(25.6e6, rel=0.01)
    assert cost.macs == pytest.approx(4.1e9, rel=0.02)


_TWO_CONVS = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4, 8, 8] x) => (float[1, 6, 8, 8] y) {
        w1 = Constant <value = float[16, 4, 3, 3] {0.0}> ()
        h = Conv <pads = [1, 1, 1, 1]> (x, w1)
        r = Relu (h)
        w2 = Constant <value = float[6, 16, 1, 1] {0.0}> ()
        y = Conv (r, w2)
    }
"""


def test_costs_by_node_and_refreshed_after_a_channel_change():
    model = _model(_TWO_CONVS)
    common_passes.LiftConstantsToInitializersPass(size_limit=0)(model)
    first, relu, second = list(model.graph)
    before = model_cost(model)
    first.name = second.name = ""  # names may be empty: lookups go by node
    assert before.of(first).macs == 16 * 64 * 4 * 9
    assert before.of(second).macs == 6 * 64 * 16
    # Prune the first conv from 16 to 8 output channels, and the second conv's inputs.
    first.inputs[1].const_value = ir.tensor(np.zeros((8, 4, 3, 3), np.float32))
    first.inputs[1].shape = ir.Shape([8, 4, 3, 3])
    second.inputs[1].const_value = ir.tensor(np.zeros((6, 8, 1, 1), np.float32))
    second.inputs[1].shape = ir.Shape([6, 8, 1, 1])
    stale = model_cost(model)
    assert stale.of(first).macs == 16 * 64 * 4 * 9  # its output shape still says 16 channels
    refreshed = model_cost(model, refresh_shapes=True)
    assert list(relu.outputs[0].shape) == [1, 8, 8, 8]
    assert refreshed.of(first).macs == 8 * 64 * 4 * 9
    assert refreshed.of(second).macs == 6 * 64 * 8
    assert refreshed.activation_bytes < before.activation_bytes
    with pytest.raises(KeyError):
        before.of(ir.Node("", "Relu", []))


def test_weight_bytes_follow_the_dtype():
    model = _model(_TWO_CONVS)
    common_passes.LiftConstantsToInitializersPass(size_limit=0)(model)
    first = next(iter(model.graph))
    first.inputs[1].const_value = ir.tensor(np.zeros((16, 4, 3, 3), np.float16))
    first.inputs[1].dtype = ir.DataType.FLOAT16
    cost = model_cost(model)
    assert cost.weight_bytes_by_dtype == {"float16": 16 * 4 * 9 * 2, "float": 6 * 16 * 4}
    assert cost.of(first).weight_dtype == "float16"
    assert cost.weight_bytes == 16 * 4 * 9 * 2 + 6 * 16 * 4


def test_mac_nodes_carry_their_precision(monkeypatch):
    model = _model(_TWO_CONVS)
    common_passes.LiftConstantsToInitializersPass(size_limit=0)(model)
    first, relu, second = list(model.graph)
    cost = model_cost(model)
    assert (cost.of(first).precision, cost.of(first).arithmetic) == ("fp32", "fp32")
    assert (cost.of(relu).precision, cost.of(relu).arithmetic) == ("", "")
    assert cost.precision == "fp32" and cost.macs_by_precision == {"fp32": cost.macs}
    assert cost.to_dict(per_node=True)["per_node"][0]["precision"] == "fp32"
    # An operator counted by a registered rule computes in its output's float type.
    monkeypatch.setitem(cost_module._MAC_RULES, "Relu", lambda node: 7)
    counted = model_cost(model).of(relu)
    assert (counted.macs, counted.precision, counted.arithmetic) == (7, "fp32", "fp32")
