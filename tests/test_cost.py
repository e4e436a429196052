"""Cost model: MACs and parameters by hand on tiny graphs, and the resnet50 reference."""

from __future__ import annotations

import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
import pytest

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
