"""graphopt tune: the search space, the choice within the budget, the Pareto front, the output
always written (also at the time limit and on an interrupt), the energy objective, the CLI.

Timing is kept to fractions of a second (zoo:tiny_cnn on ort-cpu, one session); no figure
here is a speed claim, only the bookkeeping around the measurements is checked.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from graphopt.backends.registry import parse_backend
from graphopt.budget import Budget
from graphopt.errors import GraphoptError
from graphopt.harness.tune import (
    METADATA_KEY,
    Candidate,
    Trial,
    Tuner,
    TuneResult,
    backend_variants,
    parse_duration,
    restore_softmax,
    search_space,
    strip_softmax,
    tightened,
)

MODEL = "zoo:tiny_cnn"
FAST = {"probe_seconds": 0.6, "sessions": 1, "threads": 1, "energy_seconds": 0.1}


def test_durations_parse_with_units_and_refuse_nonsense():
    assert parse_duration("90") == 90.0
    assert parse_duration("90s") == 90.0
    assert parse_duration("10m") == 600.0
    assert parse_duration("1.5h") == 5400.0
    for bad in ("", "m", "ten minutes", "-3s", "0", "inf"):
        with pytest.raises(GraphoptError, match="time"):
            parse_duration(bad)


def test_tightened_raises_sqnr_and_halves_the_cosine_gap_only():
    budget = tightened(Budget.parse("sqnr>=25,cosine>=0.99,accuracy_drop<=0.5"))
    assert str(budget) == "sqnr>=28,cosine>=0.995,accuracy_drop<=0.5"


def test_backend_variants_add_each_precision_only_without_one_given():
    variants = [str(v) for v in backend_variants(parse_backend("openvino-cpu@threads=1"))]
    assert variants[0] == "openvino-cpu@threads=1"
    assert {"openvino-cpu:fp32@threads=1", "openvino-cpu:bf16@threads=1"} <= set(variants)
    assert backend_variants(parse_backend("openvino-cpu:f32")) == [
        parse_backend("openvino-cpu:f32")]
    assert [str(v) for v in backend_variants(parse_backend("ort-cpu"))] == ["ort-cpu"]


def test_search_space_leaves_out_unregistered_passes_with_the_reason():
    candidates, left_out = search_space(
        parse_backend("ort-cpu"), pipelines=["lossless", "cleanup,nosuchpass", "none"],
        budget=Budget.parse("sqnr>=25"))
    assert [c.pipeline for c in candidates] == ["lossless", ""]
    assert len(left_out) == 1 and "nosuchpass" in left_out[0]
    default, _ = search_space(parse_backend("ort-cpu"), budget=Budget.parse("sqnr>=25"))
    assert default[0] == Candidate("lossless", "ort-cpu")
    assert any(c.tighten for c in default)
    # Without an sqnr or cosine term there is nothing to tighten.
    plain, _ = search_space(parse_backend("ort-cpu"), budget=Budget.parse("top1>=0.9"))
    assert not any(c.tighten for c in plain)


def test_the_pareto_front_keeps_the_undominated_timed_trials():
    result = TuneResult(model="m", target="t", budget="sqnr>=20", objective="latency",
                        output="o")
    specs = [("baseline", 1.0, math.inf), ("measured", 2.0, 30.0), ("measured", 1.5, 25.0),
             ("measured", 3.0, 22.0), ("over budget", None, 10.0)]
    for status, speedup, sqnr in specs:
        result.trials.append(Trial(Candidate("p", "b"), status=status, speedup=speedup,
                                   sqnr_db=sqnr))
    # 1.5x at 25 dB is beaten by 2x at 30 dB on both; the over-budget one was never timed.
    assert result.pareto_front() == [3, 1, 0]


def _check_result(result, output, budget: Budget) -> None:
    assert result.written and output.is_file()
    assert result.trials[0].status == "baseline"
    measured = [t for t in result.trials if t.status == "measured"]
    assert measured, [(t.candidate.name, t.status, t.reason) for t in result.trials]
    for trial in measured:
        assert budget.judge(_fidelity(trial)).ok
        assert trial.speedup > 0 and trial.speedup_ci[0] <= trial.speedup <= trial.speedup_ci[1]
    best = result.best_trial
    if best.status == "measured" and result.objective == "latency":
        assert best.verdict == "faster"
        faster = [t for t in measured if t.verdict == "faster"]
        assert best.speedup == max(t.speedup for t in faster)
    front = result.pareto_front()
    assert result.best in front or best.status == "baseline"
    meta = {p.key: p.value for p in onnx.load(output).metadata_props}
    note = json.loads(meta[METADATA_KEY])
    assert note["backend"] == best.candidate.backend
    assert note["pipeline"] == (best.candidate.pipeline or "none")


def _fidelity(trial):
    from graphopt.harness.benchmark import _fidelity_from_dict

    return _fidelity_from_dict(trial.fidelity)


def test_cli_tune_chooses_within_the_budget_writes_the_model_and_explains(tmp_path, run_cli):
    output, report = tmp_path / "best.onnx", tmp_path / "tune.json"
    code, out, err = run_cli(
        "tune", MODEL, "--budget", "sqnr>=25", "--pipeline", "lossless", "--pipeline", "int8",
        "--pipeline", "cleanup,nosuchpass", "--probe-seconds", "0.6", "--sessions", "1",
        "--threads", "1", "--time", "60s", "-o", str(output), "--json", str(report))
    assert code == 0, err
    assert "graphopt tune" in out and "stopped: every candidate tried" in out
    assert f"written: {output}" in out
    assert "left out of the search: cleanup,nosuchpass" in out
    data = json.loads(report.read_text(), parse_constant=_refuse)  # strict JSON
    assert data["trials"][0]["status"] == "baseline"
    # The CLI's JSON convention: an infinite SQNR is null with sqnr_db_inf beside it.
    assert data["trials"][0]["sqnr_db"] is None and data["trials"][0]["sqnr_db_inf"] == 1
    assert {t["candidate"]["pipeline"] for t in data["trials"]} == {"", "lossless", "int8"}
    assert data["best"] in data["pareto"] or data["best"] == 0
    assert data["explanation"] and data["stop_reason"] == "every candidate tried"
    budget = Budget.parse("sqnr>=25")
    for trial in data["trials"]:
        if trial["status"] == "measured":
            assert trial.get("sqnr_db_inf") == 1 or trial["sqnr_db"] >= 25
        if trial["status"] == "over budget":
            assert trial["sqnr_db"] < 25 and "breaks" in trial["reason"]
    assert budget  # the same budget type as optimize and bench
    note = json.loads({p.key: p.value for p in onnx.load(output).metadata_props}[METADATA_KEY])
    assert note["budget"] == "sqnr>=25"


def _refuse(name):
    raise ValueError(f"not strict JSON: {name}")


def test_an_unmeetable_budget_keeps_the_input_model(tmp_path):
    output = tmp_path / "out.onnx"
    # int8 cannot keep a max relative error of 1e-9: over budget, so the input model stays.
    tuner = Tuner(MODEL, output, budget="max_rel<=1e-9", pipelines=["int8"], **FAST)
    result = tuner.run()
    assert [t.status for t in result.trials] == ["baseline", "over budget"]
    assert result.best == 0 and output.is_file()
    assert "no candidate beat the input model" in result.explain()[0]


def test_time_limit_and_interrupt_leave_the_best_so_far(tmp_path):
    # A time limit that ends the search inside its first pipelines: the input model is there.
    output = tmp_path / "limited.onnx"
    tuner = Tuner(MODEL, output, budget="sqnr>=25", time_limit=1.0, **FAST)
    result = tuner.run()
    assert result.stop_reason.startswith("time limit")
    assert result.written and output.is_file()
    assert any(t.status == "not tried" for t in result.trials)
    assert result.seconds < 10

    # An interrupt (Ctrl-C) after the first measured candidate: re-raised, the best so far
    # (the model written when it was found) is in place and result says why it stopped.
    output = tmp_path / "interrupted.onnx"
    seen = []

    def interrupt(trial):
        seen.append(trial)
        if trial.status == "measured":
            raise KeyboardInterrupt

    tuner = Tuner(MODEL, output, budget="sqnr>=25", pipelines=["lossless", "int8", "fp16"],
                  on_trial=interrupt, **FAST)
    with pytest.raises(KeyboardInterrupt):
        tuner.run()
    result = tuner.result
    assert result.stop_reason == "interrupted (KeyboardInterrupt)"
    assert result.written and output.is_file()
    assert any(t.status == "not tried" for t in result.trials)
    written = json.loads({p.key: p.value for p in onnx.load(output).metadata_props}
                         [METADATA_KEY])
    assert written["backend"] == result.best_trial.candidate.backend


def test_energy_objective_ranks_by_labelled_energy_per_inference(tmp_path):
    output = tmp_path / "energy.onnx"
    result = Tuner(MODEL, output, budget="sqnr>=25", objective="energy",
                   pipelines=["lossless"], **FAST).run()
    timed = [t for t in result.trials if t.status in ("baseline", "measured")]
    assert len(timed) == 2
    for trial in timed:
        assert trial.energy_j is not None and trial.energy_j > 0
        assert trial.energy_source  # rapl, nvml, jetson or estimate:time-x-power
    best = result.best_trial
    assert best.energy_j == min(t.energy_j for t in timed)
    _check_result(result, output, Budget.parse("sqnr>=25"))
    assert "mJ per inference" in result.explain()[0] or best.status == "baseline"


def test_tune_refuses_a_missing_budget_and_an_unknown_objective(tmp_path):
    with pytest.raises(GraphoptError, match="budget"):
        Tuner(MODEL, tmp_path / "x.onnx", budget="")
    with pytest.raises(GraphoptError, match="objective"):
        Tuner(MODEL, tmp_path / "x.onnx", budget="sqnr>=20", objective="speed")


def _softmax_classifier(path):
    """x[1, 16] -> MatMul -> Relu -> MatMul -> Softmax (opset 9, the zoo's habit): logits that
    saturate the softmax on large inputs."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(16, 32)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(32, 10)).astype(np.float32) * 3, "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["prob"])],
        "classifier", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("prob", onnx.TensorProto.FLOAT, [1, 10])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_judging_logits_strips_and_restores_the_final_softmax(tmp_path):
    from graphopt import oracle
    from graphopt.model_io import resolve_model

    source = _softmax_classifier(tmp_path / "classifier.onnx")
    model = resolve_model(source)
    strip_softmax(model)
    assert [v.name for v in model.graph.outputs] == ["logits"]
    restore_softmax(model)
    assert [v.name for v in model.graph.outputs] == ["prob"]
    with pytest.raises(GraphoptError, match="Softmax"):
        strip_softmax(resolve_model(MODEL))

    output = tmp_path / "tuned.onnx"
    result = Tuner(source, output, budget="sqnr>=25", judge="logits",
                   pipelines=["lossless"], **FAST).run()
    (trial,) = [t for t in result.trials if t.candidate.pipeline == "lossless"]
    assert trial.status == "measured", trial.reason
    assert [o["name"] for o in trial.fidelity["outputs"]] == ["logits"]
    assert result.to_dict()["judged_on"] == "logits"
    # The written model computes the input's probabilities, under the input's output name.
    feed = {"x": np.random.default_rng(1).normal(size=(1, 16)).astype(np.float32)}
    expected = oracle.run_model(oracle.make_session(resolve_model(source)), feed)
    got = oracle.run_model(oracle.make_file_session(output), feed)
    assert list(got) == ["prob"]
    np.testing.assert_allclose(got["prob"], expected["prob"], rtol=1e-5, atol=1e-7)
