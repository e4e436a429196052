"""Opset upgrade on the IR: each adapter equals the original numerically; unknowns go to the
reference converter."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from graphopt import oracle
from graphopt.passes.opset_upgrade import upgrade_natively, upgrade_opset
from graphopt.verify import random_inputs


def _model(opset: int, inputs: str, outputs: str, body: str) -> ir.Model:
    text = f"""
        <ir_version: 7, opset_import: ["" : {opset}]>
        g ({inputs}) => ({outputs}) {{
            {body}
        }}
    """
    return ir.from_proto(onnx.shape_inference.infer_shapes(onnx.parser.parse_model(text)))


CASES = {
    "unsqueeze_squeeze": (9, "float[2, 3] x", "float[2, 3] y",
                          "u = Unsqueeze <axes = [0, 3]> (x)\n y = Squeeze <axes = [0, 3]> (u)"),
    "squeeze_all": (11, "float[1, 3, 1] x", "float[3] y", "y = Squeeze (x)"),
    "reduce_sum": (11, "float[2, 3, 4] x", "float[2, 1, 4] y",
                   "y = ReduceSum <axes = [1], keepdims = 1> (x)"),
    "split": (11, "float[2, 6] x", "float[2, 2] a, float[2, 4] b",
              "a, b = Split <axis = 1, split = [2, 4]> (x)"),
    "dropout": (10, "float[2, 3] x", "float[2, 3] y", "y = Dropout <ratio = 0.3> (x)"),
    "clip": (10, "float[2, 3] x", "float[2, 3] y", "y = Clip <min = -0.5, max = 0.5> (x)"),
    "pad": (10, "float[1, 2, 3, 3] x", "float[1, 2, 5, 5] y",
            "y = Pad <pads = [0, 0, 1, 1, 0, 0, 1, 1], value = 2.0> (x)"),
    "slice": (9, "float[4, 6] x", "float[2, 3] y",
              "y = Slice <starts = [1, 2], ends = [3, 5], axes = [0, 1]> (x)"),
    "softmax_trailing_ones": (9, "float[1, 10, 1, 1] x", "float[1, 10, 1, 1] y",
                              "y = Softmax <axis = 1> (x)"),
    "softmax_last": (9, "float[2, 7] x", "float[2, 7] y", "y = Softmax (x)"),
    "conv_bn_relu": (
        9, "float[1, 2, 4, 4] x", "float[1, 2, 4, 4] y",
        """w = Constant <value = float[2, 2, 1, 1] {1.0, 0.5, -0.5, 1.0}> ()
           s = Constant <value = float[2] {1.0, 2.0}> ()
           b = Constant <value = float[2] {0.0, 0.1}> ()
           m = Constant <value = float[2] {0.2, 0.0}> ()
           v = Constant <value = float[2] {1.0, 4.0}> ()
           c = Conv (x, w)
           n = BatchNormalization (c, s, b, m, v)
           y = Relu (n)""",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_native_upgrade_keeps_outputs(case):
    opset, inputs, outputs, body = CASES[case]
    original = _model(opset, inputs, outputs, body)
    feed = random_inputs(original, seed=3)
    expected = oracle.run_model(oracle.make_session(original), feed)
    model = _model(opset, inputs, outputs, body)
    assert upgrade_natively(model, 17)
    assert model.opset_imports[""] == 17
    model.ir_version = 8
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    got = oracle.run_model(oracle.make_session(model), feed)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)


def test_softmax_whose_meaning_changes_goes_to_the_converter():
    body = "y = Softmax <axis = 1> (x)"
    original = _model(9, "float[1, 3, 4] x", "float[1, 3, 4] y", body)
    feed = random_inputs(original, seed=1)
    expected = oracle.run_model(oracle.make_session(original), feed)["y"]
    model = _model(9, "float[1, 3, 4] x", "float[1, 3, 4] y", body)
    assert not upgrade_natively(model, 17)
    assert [n.op_type for n in model.graph] == ["Softmax"]  # untouched
    assert upgrade_opset(model, 17) == "converter"
    got = oracle.run_model(oracle.make_session(model), feed)["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_unknown_operator_goes_to_the_converter():
    model = _model(9, "float[1, 1, 2, 2] x", "float[1, 1, 4, 4] y",
                   "s = Constant <value = float[4] {1.0, 1.0, 2.0, 2.0}> ()\n"
                   " y = Upsample <mode = \"nearest\"> (x, s)")
    assert upgrade_opset(model, 17) == "converter"
    assert "Resize" in [n.op_type for n in model.graph]


def test_already_modern_is_left_alone():
    model = _model(17, "float[2] x", "float[2] y", "y = Relu (x)")
    assert upgrade_opset(model, 17) is None
