"""Contenders from model and backend specs, compared paired on real runners."""

from __future__ import annotations

import json

import numpy as np

from graphopt.backends.comparison import compare
from graphopt.backends.paired import PairedConfig
from graphopt.harness.pairs import contenders

QUICK = PairedConfig(max_seconds=1.0, resamples=500)


def test_contenders_are_models_by_backends_with_shared_inputs():
    entries = contenders(["zoo:tiny_cnn", "zoo:mlp"], ["ort-cpu", "ort-cpu@opt=basic"], seed=3)
    assert [(c.label, str(c.spec)) for c in entries] == [
        ("zoo:tiny_cnn", "ort-cpu"), ("zoo:tiny_cnn", "ort-cpu@opt=basic"),
        ("zoo:mlp", "ort-cpu"), ("zoo:mlp", "ort-cpu@opt=basic")]
    assert entries[0].feed is entries[1].feed  # one model, one set of inputs
    (name, array), = entries[0].feed.items()
    again = contenders(["zoo:tiny_cnn"], ["ort-cpu"], seed=3)[0].feed[name]
    np.testing.assert_array_equal(array, again)  # deterministic by seed
    assert entries[0].path.is_file()


def test_a_model_against_itself_gets_numbered_arms_and_every_session():
    run = compare(contenders(["zoo:tiny_cnn"] * 2, ["ort-cpu"]), QUICK, sessions=2, threads=1)
    assert run.names == ["zoo:tiny_cnn on ort-cpu #1", "zoo:tiny_cnn on ort-cpu #2"]
    assert run.result.sessions == 2 and set(run.result.round_sessions) == {0, 1}
    assert run.precisions == ["fp32", "fp32"]
    assert all(s["intra_op_threads"] == 1 for s in run.settings)
    assert run.comparison_of(0) is None and run.comparison_of(1) is run.result.comparisons[0]
    data = json.loads(json.dumps(run.to_dict(include_samples=False)))
    assert [a["model"] for a in data["arms"]] == ["zoo:tiny_cnn", "zoo:tiny_cnn"]
    assert data["comparisons"][0]["backend"] == "ort-cpu"
    assert all(a["compile_seconds"] > 0 for a in data["arms"])
