"""Suites: TOML checked on load, cells skipped with a reason, resumed after a kill -9."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from graphopt.errors import GraphoptError
from graphopt.harness.benchmark import BenchmarkResult
from graphopt.harness.store import ResultStore
from graphopt.harness.suite import load_suite, plan, run_suite

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "bench" / "suites" / "tiny.toml"
FAST_TIMING = """
[timing]
duration = 0.02
min_iterations = 3
sessions = 1
energy = "none"
threads = 1
"""


def _suite(tmp_path: Path, body: str, timing: str = FAST_TIMING) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(textwrap.dedent(body) + timing)
    return path


def test_the_tiny_suite_runs_and_a_second_run_resumes_everything(tmp_path):
    suite = load_suite(TINY)
    store = ResultStore(tmp_path / "r.jsonl")
    first = run_suite(suite, store)
    assert first.counts == {"ok": len(plan(suite))} == {"ok": 4}
    records = store.records()
    assert {(r["cell"]["model"], r["cell"]["pipeline"]) for r in records} == {
        (m, p) for m in ("zoo:tiny_cnn", "zoo:mlp") for p in ("none", "lossless")}
    lossless = next(r for r in records if r["cell"]["pipeline"] == "lossless")
    assert lossless["cell"]["pipeline_spec"] == "cleanup,fuse"
    assert lossless["pipeline"]["passes"] == ["cleanup", "fuse"]
    assert lossless["pipeline"]["output_size_bytes"] > 0
    result = BenchmarkResult.from_dict(lossless["result"])
    assert result.fidelity_ok and "reference model" in result.reference
    assert lossless["result"]["model"] == "zoo:tiny_cnn [lossless]"
    again = run_suite(suite, store)
    assert again.counts == {"resumed": 4} and len(store.records()) == 4


def test_missing_passes_and_backends_are_skipped_with_a_reason_and_retried(tmp_path):
    path = _suite(tmp_path, """
        models = ["zoo:mlp"]
        pipelines = ["none", "prune_later", "not_a_pipeline"]
        backends = ["ort-cpu", "tensorrt"]
        [pipeline_specs]
        prune_later = "cleanup,no_such_pass(ratio=0.3)"
    """)
    cells = plan(load_suite(path))
    reasons = collections.Counter(c.skip for c in cells)
    assert len(cells) == 6 and reasons[None] == 1
    assert any(r and "no_such_pass" in r and "not registered" in r for r in reasons)
    assert any(r and "not_a_pipeline" in r for r in reasons)
    store = ResultStore(tmp_path / "r.jsonl")
    counts = run_suite(load_suite(path), store).counts
    assert counts["ok"] == 1 and counts["skipped"] == 5
    skipped = [r for r in store.records() if r["status"] == "skipped"]
    assert all(r["reason"] for r in skipped)
    # skipped cells are tried again, but the same reason is not written twice
    assert run_suite(load_suite(path), store).counts == {"resumed": 1, "skipped": 5}
    assert len(store.records()) == 6


@pytest.mark.parametrize(("body", "message"), [
    ("models = []\npipelines = ['none']\nbackends = ['ort-cpu']", "'models' must be"),
    ("models = ['zoo:mlp']\npipelines = ['none']\nbackends = ['ort-cpu']\nspeed = 1",
     "unknown key(s) speed"),
    ("models = ['zoo:mlp']\npipelines = ['none']\nbackends = ['ort-cpu']\n"
     "options = [{warp = 9}]", "options[0]: unknown setting(s) warp"),
    ("models = ['zoo:mlp'", "not valid TOML"),
])
def test_a_bad_suite_is_one_readable_error(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(GraphoptError, match="suite .*bad.toml") as info:
        load_suite(path)
    assert message in str(info.value)


def test_model_paths_are_relative_to_the_suite_and_a_missing_one_is_skipped(tmp_path):
    path = _suite(tmp_path, """
        models = ["models/absent.onnx"]
        pipelines = ["none"]
        backends = ["ort-cpu"]
    """)
    (cell,) = plan(load_suite(path))
    assert cell.model.spec == str(tmp_path / "models" / "absent.onnx")
    assert cell.cell.model == "models/absent.onnx" and "cannot read" in cell.skip


def test_the_cli_runs_a_suite_into_its_store(tmp_path, run_cli):
    results = tmp_path / "r.jsonl"
    code, stdout, err = run_cli("bench", "--suite", str(TINY), "--results", str(results))
    assert code == 0, err
    assert "4 ok" in stdout and len(ResultStore(results).records()) == 4
    code, stdout, _ = run_cli("bench", "--suite", str(TINY), "--results", str(results))
    assert code == 0 and "4 resumed" in stdout
    code, _, err = run_cli("bench", "zoo:mlp", "--suite", str(TINY))
    assert code == 2 and "give no MODEL" in err
    code, _, err = run_cli("bench", "--suite", str(TINY), "--results", str(TINY))
    assert code == 2 and "refusing to write over" in err


def test_failed_cells_are_finished_unless_retried(tmp_path, monkeypatch):
    from graphopt.harness import suite as suite_module

    real = suite_module.benchmark

    def broken(*args, **kwargs):
        raise GraphoptError("the runtime fell over")

    path = _suite(tmp_path, """
        models = ["zoo:mlp"]
        pipelines = ["none"]
        backends = ["ort-cpu"]
    """)
    store = ResultStore(tmp_path / "r.jsonl")
    monkeypatch.setattr(suite_module, "benchmark", broken)
    assert run_suite(load_suite(path), store).counts == {"failed": 1}
    assert store.records()[-1]["error"] == "the runtime fell over"
    monkeypatch.setattr(suite_module, "benchmark", real)
    assert run_suite(load_suite(path), store).counts == {"resumed": 1}
    assert run_suite(load_suite(path), store, retry_failed=True).counts == {"ok": 1}


def _start_sweep(path: Path, results: Path, wait_for_lines: int) -> subprocess.Popen:
    command = [sys.executable, "-c", "from graphopt.cli import main; main()", "bench",
               "--suite", str(path), "--results", str(results)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "COLUMNS": "120"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if results.exists() and results.read_bytes().count(b"\n") >= wait_for_lines:
            break
        time.sleep(0.01)
    assert process.poll() is None, process.stderr.read().decode()
    return process


def test_a_sweep_killed_mid_run_resumes_without_redoing_finished_cells(tmp_path):
    path = _suite(tmp_path, """
        models = ["zoo:tiny_cnn", "zoo:mlp"]
        pipelines = ["none", "lossless"]
        backends = ["ort-cpu"]
        options = [{threads = 1}, {threads = 2}]
    """, timing=FAST_TIMING.replace("0.02", "0.1"))
    results = tmp_path / "r.jsonl"
    process = _start_sweep(path, results, 1)  # Ctrl-C: says how to resume
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and b"the same command resumes" in err
    process = _start_sweep(path, results, len(ResultStore(results).records()) + 1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = ResultStore(results).records()
    assert 2 <= len(before) < 8
    with open(results, "ab") as handle:  # as if the kill had hit a write
        handle.write(b'{"key": "torn", "status": "ok", "result": {"mod')
    store = ResultStore(results)
    run = run_suite(load_suite(path), store)
    assert run.counts == {"resumed": len(before), "ok": 8 - len(before)}
    records = store.records()
    assert collections.Counter(r["key"] for r in records).most_common(1)[0][1] == 1
    assert {r["key"] for r in records} == {c.cell.key for c in plan(load_suite(path))}
    assert records[: len(before)] == before  # nothing finished was touched
    json.loads(results.read_bytes().split(b"\n")[-2])


def test_the_process_pool_builds_the_cells_this_process_would(tmp_path):
    path = _suite(tmp_path, """
        models = [{model = "zoo:digits", calib = "zoo:digits"}, "zoo:mbv2_block"]
        pipelines = ["none", "lossless", "int8", "prune30", "compress"]
        backends = ["ort-cpu"]
        [pipeline_specs]
        prune30 = "cleanup,fuse,prune(ratio=0.3)"
        compress = "cleanup,fuse,prune(ratio=0.3),quantize"
    """)
    built = []
    stores = {}
    for workers in (2, 0):
        stores[workers] = ResultStore(tmp_path / f"r{workers}.jsonl")
        run = run_suite(load_suite(path), stores[workers], workers=workers,
                        on_built=lambda done, total, label: built.append((done, total)))
        assert run.counts == {"ok": 10}
    assert sorted(built) == [(1, 2), (1, 2), (2, 2), (2, 2)]

    def cells(store):
        found = {}
        for record in store.records():
            found[record["key"]] = (record["pipeline"], record["result"]["fidelity"])
        return found

    assert cells(stores[2]) == cells(stores[0])
    compress = next(r for r in stores[2].records()
                    if r["cell"]["pipeline"] == "compress" and r["cell"]["model"] == "zoo:digits")
    assert compress["pipeline"]["passes"] == ["cleanup", "fuse", "prune", "quantize"]
    assert compress["pipeline"]["accuracy_after"] is not None
