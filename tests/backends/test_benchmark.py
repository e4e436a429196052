"""The benchmark harness: result contents, fidelity against the oracle, energy labelling."""

from __future__ import annotations

import json
import math
import os

import pytest

from graphopt.backends.timing import TimingConfig
from graphopt.budget import precision_budget
from graphopt.errors import BackendUnavailableError, GraphoptError
from graphopt.harness.benchmark import benchmark
from graphopt.verify import Fidelity, OutputFidelity

FAST = TimingConfig(min_iterations=5, min_seconds=0.05, warmup_max_seconds=0.5)
RESULT_KEYS = {
    "model", "backend", "precision", "requested_precision", "batch_size", "seed",
    "sessions", "compile_seconds", "compile_seconds_sessions", "first_inference_ms", "latency",
    "stats", "throughput", "energy",
    "energy_fallback", "fidelity", "fidelity_ok", "settings", "cost", "environment", "warnings",
    "background_cores_busy",
}


def _fidelity(max_rel: float, cosine: float) -> Fidelity:
    return Fidelity((OutputFidelity("y", max_rel, max_rel, cosine, 40.0, None),))


@pytest.fixture(scope="module")
def ort_result():
    return benchmark("zoo:tiny_cnn", "ort-cpu", config=FAST, batch_size=2, seed=1,
                     concurrent_seconds=0.05)


def test_result_dict_has_every_section(ort_result):
    data = ort_result.to_dict()
    assert set(data) == RESULT_KEYS
    json.dumps(data)  # JSON-ready
    assert len(data["latency"]["samples_us"]) == data["stats"]["n"] >= FAST.min_iterations
    assert data["latency"]["first_call_us"] > 0
    assert data["compile_seconds"] > 0 and data["first_inference_ms"] > 0
    assert data["stats"]["median_ci_low"] <= data["stats"]["p50"] <= data["stats"]["median_ci_high"]
    assert set(data["throughput"]) >= {"sync_per_second", "concurrent_per_second"}
    assert data["environment"]["extra"]["backend"] == "ort-cpu"
    assert data["environment"]["extra"]["runner_settings"]["providers"] == ["CPUExecutionProvider"]
    assert data["cost"]["macs"] > 0
    assert "samples_us" not in ort_result.to_dict(include_samples=False)["latency"]


def test_default_splits_the_budget_over_three_sessions(ort_result):
    data = ort_result.to_dict()
    assert data["sessions"] == 3 == data["stats"]["n_groups"]
    assert sorted(set(data["latency"]["samples_session"])) == [0, 1, 2]
    assert len(data["latency"]["samples_session"]) == len(data["latency"]["samples_us"])
    assert data["compile_seconds"] == data["compile_seconds_sessions"][0]
    assert data["latency"]["config"]["min_seconds"] == FAST.min_seconds  # the whole budget


def test_two_sessions_record_two_session_ids_and_compile_times():
    result = benchmark("zoo:tiny_cnn", "ort-cpu", config=FAST, sessions=2, energy="none",
                       concurrent_seconds=0)
    data = result.to_dict()
    assert data["sessions"] == 2 and data["stats"]["n_groups"] == 2
    assert sorted(set(data["latency"]["samples_session"])) == [0, 1]
    assert len(data["compile_seconds_sessions"]) == 2
    assert all(seconds > 0 for seconds in data["compile_seconds_sessions"])
    assert data["first_inference_ms"] == data["latency"]["sessions"][0]["first_call_us"] / 1e3
    per_session = [s["n"] for s in data["latency"]["sessions"]]
    assert all(n >= 3 for n in per_session)  # ceil(5 / 2) each
    assert sum(per_session) == data["stats"]["n"]
    assert "two-level" in data["stats"]["median_ci"]


def test_one_session_is_a_flat_interval():
    result = benchmark("zoo:mlp", "ort-cpu", config=FAST, sessions=1, energy="none",
                       concurrent_seconds=0)
    assert result.sessions == 1 and result.stats.n_groups == 1
    assert set(result.to_dict()["latency"]["samples_session"]) == {0}
    with pytest.raises(GraphoptError, match="sessions"):
        benchmark("zoo:mlp", "ort-cpu", config=FAST, sessions=0)


def test_ort_fp32_fidelity_is_ok(ort_result):
    assert ort_result.precision == "fp32"
    assert ort_result.fidelity_ok, ort_result.fidelity_failures
    assert ort_result.fidelity.max_rel <= 1e-4
    fidelity = ort_result.to_dict()["fidelity"]
    assert fidelity["budget"] == "max_rel<=0.0001" == str(precision_budget("fp32"))
    assert fidelity["judged_at"] == "fp32"
    assert (fidelity["ok"], fidelity["failures"], fidelity["unchecked"]) == (True, [], [])


def test_throughputs_are_measured(ort_result):
    expected = 2 * 1e6 / ort_result.stats.p50
    assert math.isclose(ort_result.throughput_sync, expected, rel_tol=1e-9)
    assert ort_result.throughput_concurrent is not None and ort_result.throughput_concurrent > 0
    assert "thread pool" in ort_result.concurrent_method


def test_energy_is_labelled_with_its_source(ort_result):
    energy = ort_result.to_dict()["energy"]
    assert energy["source"] in ("rapl", "nvml", "jetson", "estimate:time-x-power")
    assert energy["joules_per_inference"] > 0
    if energy["source"] == "estimate:time-x-power":
        assert ort_result.energy_fallback  # says why nothing was measured


def test_openvino_bf16_fidelity_is_computed():
    pytest.importorskip("openvino", reason="needs openvino")
    result = benchmark("zoo:mlp", "openvino-cpu:bf16", config=FAST, energy="model",
                       concurrent_seconds=0.05)
    assert result.precision in ("bf16", "fp32")  # fp32 on CPUs without bf16 support
    assert result.settings["inference_precision_hint"] == result.precision
    assert result.fidelity.cosine > 0.99
    assert result.fidelity_judgement.budget == precision_budget(result.precision)
    assert result.to_dict()["fidelity"]["budget"] == str(precision_budget(result.precision))
    assert result.energy.source == "estimate:time-x-power"
    assert "async queue" in result.concurrent_method
    if result.precision == "bf16":
        assert result.fidelity.max_rel > 0  # bf16 really ran: outputs differ from fp32


def test_energy_none_and_no_concurrent_phase():
    result = benchmark("zoo:mlp", "ort-cpu", config=FAST, energy="none", concurrent_seconds=0)
    assert result.energy is None and result.to_dict()["energy"] is None
    assert result.throughput_concurrent is None


def test_fixed_batch_model_refuses_another_batch_size():
    with pytest.raises(GraphoptError, match="fixed batch of 1"):
        benchmark("zoo:squeezenet", "ort-cpu", config=FAST, batch_size=4)


def test_unknown_backend_is_a_one_line_error():
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        benchmark("zoo:mlp", "ort-quantum", config=FAST)


def test_background_load_is_recorded(ort_result):
    """Where /proc/stat exists the reading is a core count between 0 and the machine's cores
    (plus clock-tick granularity); elsewhere it is absent, not zero."""
    value = ort_result.background_cores_busy
    if not os.path.exists("/proc/stat"):
        assert value is None
        return
    assert value is not None
    assert 0.0 <= value <= os.cpu_count() + 0.5


def test_bench_judges_fidelity_on_the_core_precision_budget():
    """One definition for pipeline and bench: the judgement is graphopt.budget's."""
    def judge(max_rel, cosine, precision):
        return precision_budget(precision).judge(_fidelity(max_rel, cosine))

    assert judge(5e-5, 1.0, "fp32").ok
    fp32 = judge(5e-3, 0.9999, "fp32")
    assert not fp32.ok and fp32.failures == ("max_rel 5.00e-03 breaks max_rel<=0.0001",)
    assert judge(5e-3, 0.9999, "bf16").ok and judge(5e-3, 0.9999, "fp16").ok
    assert len(judge(0.2, 0.97, "bf16").failures) == 2
    assert judge(0.5, 0.985, "int8").ok and not judge(0.01, 0.97, "int8").ok
    assert not judge(float("nan"), float("nan"), "fp16").ok
    assert precision_budget("unknown") == precision_budget("fp32")  # never judged leniently
