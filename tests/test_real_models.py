"""The trained models in ../shared/models through the lossless pipeline (skipped without them,
except in CI: with ``CI=true`` a missing folder fails, since CI has it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

from graphopt.model_io import load_model
from graphopt.pipeline import Pipeline

SHARED = Path(__file__).resolve().parents[2] / "shared" / "models"
# What lossless reaches (bench/fusion_nodes.py): at or below the best peer (10 and 124).
MAX_NODES = {"superres-10": 10, "ultraface-rfb320": 123}


def _model_path(folder: str) -> Path:
    paths = sorted((SHARED / folder).glob("*.onnx"))
    if not paths:
        message = f"{SHARED / folder} is not here (the shared models sit beside the checkout)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{message}; CI must have them")
        pytest.skip(message)
    return paths[0]


@pytest.mark.parametrize("folder", sorted(MAX_NODES))
def test_lossless_on_real_models(folder):
    model = load_model(_model_path(folder))
    report = Pipeline.from_preset("lossless").run(model)
    assert report.fidelity.max_rel <= 1e-4
    assert report.output_cost.nodes <= MAX_NODES[folder]
    onnx.checker.check_model(ir.to_proto(model), full_check=True)


def test_superres_on_its_real_photo():
    path = _model_path("superres-10")
    data = path.parent / "test_data_set_real"
    image = numpy_helper.to_array(onnx.load_tensor(data / "input_0.pb"))
    expected = numpy_helper.to_array(onnx.load_tensor(data / "output_0.pb"))
    model = load_model(path)
    report = Pipeline.from_preset("lossless").run(model, inputs={"input": image})
    assert report.fidelity.max_rel <= 1e-4
    from graphopt import oracle

    (output,) = oracle.run_model(oracle.make_session(model), {"input": image}).values()
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-5)


def test_missing_shared_models_fail_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "SHARED", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have them"):
        _model_path("superres-10")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        _model_path("superres-10")
