"""End to end: `graphopt optimize zoo:NAME` on every zoo model: valid, equal outputs, no bigger."""

from __future__ import annotations

import json

import onnx
import pytest

from graphopt import zoo

# Fewest standard-domain nodes any peer reaches (onnxsim, onnxslim, onnxscript, ORT basic):
# ../shared/ANCHORS.md for the first five, bench/fusion_nodes.py on this machine for the rest.
BEST_PEER_NODES = {
    "squeezenet": 65,
    "shufflenet": 154,
    "resnet50": 123,
    "inception_v2": 164,
    "densenet121": 491,
    "inception_v1": 142,
    "vgg19": 44,
    "bvlc_alexnet": 22,
    "zfnet512": 22,
}
STRICTLY_FEWER = {"inception_v2", "densenet121"}


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
    if name in STRICTLY_FEWER:
        assert data["output"]["nodes"] < BEST_PEER_NODES[name]
    else:
        assert data["output"]["nodes"] <= BEST_PEER_NODES[name]
    assert data["output"]["params"] <= data["input"]["params"]
