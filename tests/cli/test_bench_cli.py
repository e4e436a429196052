"""``graphopt bench`` and ``graphopt backends`` through the CLI entry point."""

from __future__ import annotations

import json

import pytest

from graphopt.backends.registry import available_backends

BENCH_FAST = ("--duration", "0.2", "--min-iterations", "5")


def test_bench_writes_json_and_prints_the_table(tmp_path, run_cli):
    out = tmp_path / "out.json"
    code, stdout, err = run_cli("bench", "zoo:tiny_cnn", "--backend", "ort-cpu", *BENCH_FAST,
                                "--json", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    assert {"graphopt_version", "results", "timing_config"} <= set(data)
    (result,) = data["results"]
    assert {"stats", "latency", "throughput", "energy", "fidelity", "fidelity_ok",
            "environment", "compile_seconds", "first_inference_ms"} <= set(result)
    assert result["backend"] == "ort-cpu" and result["precision"] == "fp32"
    assert result["fidelity_ok"] is True
    assert result["latency"]["config"]["min_seconds"] == 0.2
    assert result["sessions"] == 3 and data["sessions"] == 3  # the default
    assert "zoo:tiny_cnn" in stdout and "ort-cpu" in stdout and "fp32" in stdout
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_bench_sessions_option(tmp_path, run_cli):
    out = tmp_path / "out.json"
    code, stdout, err = run_cli("bench", "zoo:tiny_cnn", "--backend", "ort-cpu", *BENCH_FAST,
                                "--sessions", "2", "--energy", "none", "--json", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["sessions"] == 2
    (result,) = data["results"]
    assert result["sessions"] == 2 and len(result["compile_seconds_sessions"]) == 2
    assert sorted(set(result["latency"]["samples_session"])) == [0, 1]
    assert "2 runner sessions" in stdout
    code, _, err = run_cli("bench", "zoo:tiny_cnn", "--sessions", "0")
    assert code == 2 and "--sessions" in err


def test_bench_several_backends_and_threads(tmp_path, run_cli):
    out = tmp_path / "out.json"
    code, _, err = run_cli("bench", "zoo:mlp", "--backend", "ort-cpu@opt=basic,ort-cpu",
                           "--threads", "1", "--energy", "model", *BENCH_FAST, "--no-paired",
                           "--json", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["paired"] is None
    results = data["results"]
    assert [r["backend"] for r in results] == ["ort-cpu@opt=basic", "ort-cpu"]
    assert [r["settings"]["graph_optimization"] for r in results] == ["basic", "all"]
    assert all(r["settings"]["intra_op_threads"] == 1 for r in results)
    # --energy model is the older name of --energy estimate: no meter, the time x power
    # estimate as the headline and the compute-bound figure beside it
    assert all(r["energy"]["source"] == "estimate:time-x-power" for r in results)
    assert all(r["energy"]["power_watts"] > 0 for r in results)
    assert all(r["energy"]["compute_bound"]["source"] == "model:compute-bound" for r in results)
    assert all(r["environment"]["cpu"]["dvfs"]["status"] in ("known", "partial", "unknown")
               for r in results)


PAIRED_FAST = (*BENCH_FAST, "--sessions", "1", "--energy", "none", "--max-seconds", "1")


def test_several_pairs_are_measured_paired_against_the_first(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # the whole table on one line per row
    out = tmp_path / "out.json"
    code, stdout, err = run_cli("bench", "zoo:tiny_cnn", "zoo:mlp", "--backend", "ort-cpu",
                                *PAIRED_FAST, "--threads", "1", "--json", str(out), "--verbose")
    assert code == 0, err
    data = json.loads(out.read_text())
    (paired,) = data["paired"]  # one paired measurement per baseline: one backend here
    assert paired["baseline"] == "zoo:tiny_cnn on ort-cpu"
    assert paired["stop_reason"] in ("ci_target", "time_budget") and paired["stop_detail"]
    assert paired["config"]["max_seconds"] == 1.0 and paired["sessions"] == 1
    (comparison,) = paired["comparisons"]
    assert (comparison["model"], comparison["backend"]) == ("zoo:mlp", "ort-cpu")
    assert comparison["ci_low"] <= comparison["speedup"] <= comparison["ci_high"]
    assert comparison["verdict"] in ("faster", "slower", "no detectable difference")
    first, second = data["results"]
    assert first["speedup_vs_baseline"] is None
    assert second["speedup_vs_baseline"]["verdict"] == comparison["verdict"]
    assert [a["model"] for a in paired["arms"]] == ["zoo:tiny_cnn", "zoo:mlp"]
    assert all(len(a["samples_us"]) == a["stats"]["n"] for a in paired["arms"])
    assert "speedup vs" in stdout and "baseline" in stdout
    assert f"{comparison['speedup']:.3f}x" in stdout and comparison["verdict"] in stdout
    assert "measured paired" in stdout


def test_a_real_difference_gets_a_verdict(tmp_path, run_cli):
    # squeezenet does ~100x the work of tiny_cnn: the CI must exclude 1 even on a busy machine.
    out = tmp_path / "out.json"
    code, _, err = run_cli("bench", "zoo:squeezenet", "zoo:tiny_cnn", *PAIRED_FAST,
                           "--threads", "1", "--json", str(out))
    assert code == 0, err
    ((comparison,),) = [p["comparisons"] for p in json.loads(out.read_text())["paired"]]
    assert comparison["verdict"] == "faster" and comparison["ci_low"] > 1.0


def test_pinning_and_threads_are_recorded(tmp_path, run_cli):
    out = tmp_path / "out.json"
    code, _, err = run_cli("bench", "zoo:tiny_cnn", "--backend", "ort-cpu@opt=basic,ort-cpu",
                           *PAIRED_FAST, "--threads", "1", "--pin", "--json", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["pin"] is True and data["threads"] == 1
    for record in [*data["results"], *(a for p in data["paired"] for a in p["arms"])]:
        assert record["settings"]["thread_pinning"].startswith("caller on core")
        assert record["settings"]["intra_op_threads"] == 1


def test_no_paired_opts_out(tmp_path, run_cli):
    out = tmp_path / "out.json"
    code, stdout, err = run_cli("bench", "zoo:tiny_cnn", "zoo:mlp", *PAIRED_FAST, "--no-paired",
                                "--json", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["paired"] is None
    assert all(r["speedup_vs_baseline"] is None for r in data["results"])
    assert "speedup vs" not in stdout


@pytest.mark.parametrize(
    ("option", "value"),
    [("--ci-target", "0"), ("--max-seconds", "0"), ("--contention", "ignore"),
     ("--confidence", "1")],
)
def test_bad_paired_options_exit_2(run_cli, option, value):
    code, _, err = run_cli("bench", "zoo:tiny_cnn", "zoo:mlp", option, value)
    assert code == 2 and option in err


def test_unknown_backend_exits_2_with_one_line(run_cli):
    code, stdout, err = run_cli("bench", "zoo:tiny_cnn", "--backend", "warp-drive")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown backend 'warp-drive'" in lines[0]


def test_unavailable_backend_exits_2_with_the_reason(run_cli):
    missing = [name for name, ok, _ in available_backends() if not ok]
    if not missing:
        pytest.skip("every backend is available on this machine")
    code, _, err = run_cli("bench", "zoo:tiny_cnn", "--backend", missing[0])
    assert code == 2
    assert f"{missing[0]} is not available here" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_one_failing_pair_keeps_the_other_results(tmp_path, run_cli):
    out = tmp_path / "out.json"
    code, _, err = run_cli("bench", str(tmp_path / "missing.onnx"), "zoo:mlp", *BENCH_FAST,
                           "--energy", "model", "--json", str(out))
    assert code == 2
    assert "1 of 2 benchmarks failed" in err
    data = json.loads(out.read_text())
    assert [r["model"] for r in data["results"]] == ["zoo:mlp"]
    assert data["failures"][0]["model"].endswith("missing.onnx")
    assert "no such file" in data["failures"][0]["error"]


def test_bad_energy_choice_exits_2(run_cli):
    code, _, err = run_cli("bench", "zoo:tiny_cnn", "--energy", "solar")
    assert code == 2 and "--energy" in err


def test_backends_lists_every_name(run_cli):
    code, stdout, err = run_cli("backends", "--json")
    assert code == 0, err
    rows = json.loads(stdout)
    names = {row["name"] for row in rows}
    assert {"ort-cpu", "openvino-cpu", "tensorrt", "ort-cuda"} <= names
    for row in rows:
        assert row["available"] or row["reason"]
    code, stdout, _ = run_cli("backends")
    assert code == 0 and "ort-cpu" in stdout and "tensorrt" in stdout


def test_bench_judges_fidelity_on_the_same_budget_type_as_optimize(tmp_path, run_cli):
    out = tmp_path / "out.json"
    code, _, err = run_cli("bench", "zoo:tiny_cnn", "--backend", "ort-cpu", *BENCH_FAST,
                           "--sessions", "1", "--energy", "none", "--budget", "sqnr>=60",
                           "--json", str(out))
    assert code == 0, err
    (result,) = json.loads(out.read_text())["results"]
    assert result["fidelity"]["budget"] == "sqnr>=60" and result["fidelity_ok"] is True
    code, _, err = run_cli("bench", "zoo:tiny_cnn", *BENCH_FAST, "--budget", "sqnr>high")
    assert code == 2 and "is not METRIC>=VALUE" in err


def test_bench_refuses_to_write_json_over_the_model_and_an_infinite_duration(tmp_path, run_cli,
                                                                             tiny_model_path):
    before = tiny_model_path.read_bytes()
    code, _, err = run_cli("bench", str(tiny_model_path), "--json", str(tiny_model_path),
                           *BENCH_FAST)
    assert code == 2 and "--json" in err and len(err.strip().splitlines()) == 1
    assert tiny_model_path.read_bytes() == before
    code, _, err = run_cli("bench", "zoo:tiny_cnn", "--duration", "inf")
    assert code == 2 and "finite number of seconds" in err
