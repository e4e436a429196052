"""Verification metrics, input generation and the per-pass tolerance check."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx_ir as ir
import pytest

from graphopt.errors import VerificationError
from graphopt.model_io import resolve_model
from graphopt.pass_api import GraphPass, scoped_registration
from graphopt.pipeline import Pipeline
from graphopt.verify import Verifier, compare_outputs, random_inputs


@pytest.fixture(autouse=True, scope="module")
def _test_passes():
    """The test passes exist while this module's tests run, never after."""
    with scoped_registration({"_break_outputs": _BreakOutputs}):
        yield


def test_identical_outputs():
    ref = {"y": np.array([[1.0, 2.0, 3.0]], np.float32)}
    fid = compare_outputs(ref, {"y": ref["y"].copy()})
    assert fid.max_abs == 0 and fid.max_rel == 0 and fid.cosine == pytest.approx(1.0)
    assert math.isinf(fid.sqnr_db) and fid.top1_agreement == 1.0


def test_metrics_by_hand():
    r = np.array([[3.0, 4.0]], np.float32)
    y = np.array([[3.0, 3.0]], np.float32)
    fid = compare_outputs({"y": r}, {"y": y}).outputs[0]
    assert fid.max_abs == pytest.approx(1.0)
    assert fid.max_rel == pytest.approx(1.0 / 4.0)
    assert fid.cosine == pytest.approx(21.0 / (5.0 * math.sqrt(18.0)))
    assert fid.sqnr_db == pytest.approx(10 * math.log10(25.0 / 1.0))
    assert fid.top1_agreement == 0.0


def test_top1_only_for_classifier_shapes():
    images = np.zeros((1, 3, 8, 8), np.float32)
    assert compare_outputs({"y": images}, {"y": images}).top1_agreement is None


def test_random_inputs_respect_dynamic_batch():
    model = resolve_model("zoo:mlp")
    (array,) = random_inputs(model, batch_size=3).values()
    assert array.shape == (3, 256) and array.dtype == np.float32
    again = random_inputs(model, batch_size=3)
    np.testing.assert_array_equal(array, next(iter(again.values())))


def test_verifier_rejects_wrong_input_names():
    model = resolve_model("zoo:mlp")
    with pytest.raises(Exception, match="input data does not match"):
        Verifier(model, {"wrong": np.zeros((1, 256), np.float32)})


@dataclasses.dataclass(kw_only=True)
class _BreakOutputs(GraphPass):
    """Claims to be lossless but scales the first initializer: verification must catch it."""

    def call(self, model):
        value = next(iter(model.graph.initializers.values()))
        value.const_value = ir.tensor(value.const_value.numpy() * 1.5)
        return ir.passes.PassResult(model, modified=True)


def test_lossless_pass_that_changes_outputs_stops_the_pipeline():
    model = resolve_model("zoo:mlp")
    with pytest.raises(VerificationError, match="_break_outputs.*passes before it: cleanup"):
        Pipeline.from_spec("cleanup,_break_outputs").run(model)


def test_no_verify_skips_the_check():
    model = resolve_model("zoo:mlp")
    report = Pipeline.from_spec("_break_outputs").run(model, verify=False)
    assert report.fidelity is None and report.passes[0].fidelity is None
