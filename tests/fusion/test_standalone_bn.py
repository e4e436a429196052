"""bn_to_affine (opt-in): a BatchNormalization with nothing to fold into becomes Mul + Add."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes

from graphopt import oracle
from graphopt.passes.fusion import FusePass
from graphopt.verify import random_inputs

_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 3, 4, 4] x) => (float[1, 3, 4, 4] y) {
    s = Constant <value = float[3] {1.0, 2.0, 0.5}> ()
    b = Constant <value = float[3] {0.1, -0.2, 0.3}> ()
    m = Constant <value = float[3] {0.5, 0.0, -1.0}> ()
    v = Constant <value = float[3] {1.0, 4.0, 0.25}> ()
    r = Relu (x)
    y = BatchNormalization (r, s, b, m, v)
}
"""


def _model() -> ir.Model:
    model = ir.from_proto(onnx.shape_inference.infer_shapes(onnx.parser.parse_model(_MODEL)))
    common_passes.LiftConstantsToInitializersPass(size_limit=0)(model)
    return model


def test_kept_by_default_with_reason():
    model = _model()
    fuse = FusePass()
    fuse(model)
    assert [n.op_type for n in model.graph] == ["Relu", "BatchNormalization"]
    assert any("nothing to fold into" in line for line in fuse.explanations)


def test_affine_option_rewrites_and_keeps_outputs():
    original = _model()
    feed = random_inputs(original, seed=2)
    expected = oracle.run_model(oracle.make_session(original), feed)["y"]
    model = _model()
    fuse = FusePass(standalone_bn="affine")
    assert fuse(model).modified and fuse.stats["bn_to_affine"] == 1
    assert [n.op_type for n in model.graph] == ["Relu", "Mul", "Add"]
    assert model.graph.outputs[0].name == "y"
    assert len(model.graph.initializers) == 2
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    got = oracle.run_model(oracle.make_session(model), feed)["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_foldable_bn_is_left_to_bn_fold():
    from graphopt.model_io import resolve_model
    from graphopt.shapes import infer_shapes

    model = resolve_model("zoo:tiny_cnn")
    infer_shapes(model)
    fuse = FusePass(standalone_bn="affine")
    fuse(model)
    assert fuse.stats["bn_to_affine"] == 0 and fuse.stats["bn_fold"] == 2
