"""The harness benchmark: in-memory models, an explicit fp32 reference, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graphopt.backends.timing import TimingConfig
from graphopt.harness.benchmark import BenchmarkResult, benchmark
from graphopt.harness.pairs import run_pairs
from graphopt.model_io import model_file, resolve_model, zoo_name
from graphopt.pipeline import Pipeline
from graphopt.verify import random_inputs

FAST = TimingConfig(min_iterations=3, min_seconds=0.02, warmup_max_seconds=0.2)
QUICK = {"config": FAST, "sessions": 1, "energy": "none", "concurrent_seconds": 0}


@pytest.fixture(scope="module")
def result() -> BenchmarkResult:
    return benchmark("zoo:tiny_cnn", "ort-cpu", config=FAST, sessions=2, energy="estimate",
                     concurrent_seconds=0.02)


def test_the_zoo_scheme_has_one_reader():
    assert zoo_name("zoo:mlp") == "mlp" and zoo_name("models/mlp.onnx") is None
    assert model_file("zoo:mlp").exists() and model_file("a/b.onnx").as_posix() == "a/b.onnx"


def test_a_result_round_trips_through_json(result):
    data = json.loads(json.dumps(result.to_dict()))
    again = BenchmarkResult.from_dict(data)
    assert again.to_dict() == data
    assert again.stats == result.stats and again.fidelity == result.fidelity
    assert again.energy == result.energy and again.energy_bound == result.energy_bound
    assert again.fidelity_judgement == result.fidelity_judgement
    np.testing.assert_array_equal(again.timing.samples_us, result.timing.samples_us)


def test_an_in_memory_model_is_judged_against_the_given_reference():
    original = resolve_model("zoo:tiny_cnn")
    halved = resolve_model("zoo:tiny_cnn")
    Pipeline.from_spec("fp16").run(halved)
    feed = random_inputs(original, seed=4)
    against_original = benchmark(halved, "ort-cpu", reference=original, inputs=feed,
                                 label="tiny fp16", **QUICK)
    against_itself = benchmark(halved, "ort-cpu", inputs=feed, **QUICK)
    assert against_original.model == "tiny fp16"
    assert "reference model" in against_original.to_dict()["fidelity"]["reference"]
    assert against_itself.model.startswith("model in memory")
    # fp16 weights move the outputs away from the fp32 model, not away from themselves
    assert against_original.fidelity.max_abs > against_itself.fidelity.max_abs


def test_run_pairs_keeps_going_past_a_failing_pair(tmp_path):
    seen = []
    run = run_pairs([str(tmp_path / "missing.onnx"), "zoo:mlp"], ["ort-cpu"],
                    on_failure=seen.append, **QUICK)
    assert [r.model for r in run.results] == ["zoo:mlp"]
    assert seen == run.failures and "no such file" in seen[0]["error"]
    assert run.pairings == [] and run.speedups() is None
