"""The cleanup pass on tiny hand-built graphs and on opset-9 zoo models."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from graphopt.model_io import resolve_model
from graphopt.passes.cleanup import CleanupPass
from graphopt.verify import Verifier


def _model(text: str) -> ir.Model:
    return ir.from_proto(onnx.parser.parse_model(text))


def _ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def test_folds_constants_and_removes_identity_and_dropout():
    model = _model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4] x) => (float[1, 4] y) {
            a = Constant <value = float[4] {1.0, 2.0, 3.0, 4.0}> ()
            b = Constant <value = float[4] {1.0, 1.0, 1.0, 1.0}> ()
            c = Add (a, b)
            i = Identity (x)
            d = Dropout (i)
            y = Mul (d, c)
        }
        """
    )
    verifier = Verifier(model)
    pass_ = CleanupPass()
    result = pass_(model)
    assert result.modified
    assert _ops(model) == ["Mul"]
    assert model.graph.outputs[0].name == "y"
    assert pass_.stats["dropout_removed"] == 1
    assert verifier.check(model).max_abs == 0


def test_keeps_training_mode_dropout():
    model = _model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4] x, bool training) => (float[1, 4] y) {
            ratio = Constant <value = float {0.5}> ()
            y = Dropout (x, ratio, training)
        }
        """
    )
    CleanupPass()(model)
    assert _ops(model) == ["Dropout"]


def test_unmodified_model_reports_not_modified():
    model = _model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4] x) => (float[1, 4] y) {
            y = Relu (x)
        }
        """
    )
    assert not CleanupPass()(model).modified


def test_upgrades_opset9_zoo_model_and_drops_initializer_inputs():
    model = resolve_model("zoo:squeezenet")
    assert model.opset_imports[""] == 9
    verifier = Verifier(model)
    pass_ = CleanupPass()
    pass_(model)
    assert model.opset_imports[""] == 17
    assert [v.name for v in model.graph.inputs] == ["data_0"]
    assert pass_.stats["dropout_removed"] == 1
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    assert verifier.check(model).max_rel == 0
