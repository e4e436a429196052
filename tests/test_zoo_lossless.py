"""End to end: `graphopt optimize zoo:NAME` on every zoo model: valid, equal outputs, no bigger."""

from __future__ import annotations

import json

import onnx
import pytest

from graphopt import zoo


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.LIGHT_MODELS)
def test_lossless_on_zoo(tmp_path, run_cli, name):
    out, report = tmp_path / f"{name}.onnx", tmp_path / "report.json"
    code, _, err = run_cli("optimize", f"zoo:{name}", "-o", str(out), "--report", str(report))
    assert code == 0, err
    onnx.checker.check_model(str(out), full_check=True)
    data = json.loads(report.read_text())
    assert data["fidelity"]["max_rel"] <= 1e-4
    assert data["output"]["nodes"] <= data["input"]["nodes"]
    assert data["output"]["params"] <= data["input"]["params"]
