"""Suites on Ray: the same cells (keys and statuses) as the local run, streamed into the store,
resumed by the same rule; one timing slot per node; a GPU for GPU backends.

Needs ``ray`` (the ``ray`` extra, which ``make test`` installs). The test starts its
own local instance (``ray.init(num_cpus=2, resources={"timing_slot": 1})``) and stops it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from graphopt.errors import GraphoptError
from graphopt.harness.ray_runner import TIMING_SLOT, cell_resources, run_suite_on_ray
from graphopt.harness.store import ResultStore
from graphopt.harness.suite import load_suite, plan, run_suite

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'graphopt[ray]')")

TINY = Path(__file__).resolve().parents[2] / "bench" / "suites" / "tiny.toml"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, resources={TIMING_SLOT: 1}, include_dashboard=False,
             logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def _tiny():
    suite = load_suite(TINY)
    # Energy off and a missing pass: skipped cells go through the Ray runner's bookkeeping too.
    timing = dataclasses.replace(suite.timing, energy="none")
    return dataclasses.replace(suite, timing=timing,
                               pipelines=(*suite.pipelines, "nosuchpipeline"))


def _cells(store: ResultStore) -> dict[str, str]:
    return {key: record["status"] for key, record in store.latest().items()}


def test_ray_runs_the_same_cells_as_the_local_run_and_resumes(tmp_path, local_ray):
    suite = _tiny()
    local, remote = ResultStore(tmp_path / "local.jsonl"), ResultStore(tmp_path / "ray.jsonl")
    run_suite(suite, local)
    seen = []
    run = run_suite_on_ray(suite, remote, on_cell=lambda planned, status: seen.append(status))
    assert _cells(remote) == _cells(local)
    assert set(_cells(remote).values()) == {"ok", "skipped"}
    assert run.counts == {"ok": 4, "skipped": 2} and sorted(seen) == sorted(
        ["ok"] * 4 + ["skipped"] * 2)
    for record in remote.records():
        if record["status"] == "ok":
            assert record["result"]["stats"]["n"] >= suite.timing.min_iterations
    # The same resume rule: a second run submits nothing and appends nothing new.
    lines = len(remote.records())
    again = run_suite_on_ray(suite, remote)
    assert again.counts == {"resumed": 4, "skipped": 2}
    assert len(remote.records()) == lines


def test_cells_ask_for_a_timing_slot_and_gpu_backends_for_a_gpu():
    suite = _tiny()
    cell = next(c for c in plan(suite) if c.skip is None)
    assert cell_resources(cell) == {"resources": {TIMING_SLOT: 1}, "num_cpus": 1}
    gpu = dataclasses.replace(cell, cell=dataclasses.replace(cell.cell, backend="tensorrt:fp16"))
    assert cell_resources(gpu)["num_gpus"] == 1


def test_a_cluster_without_timing_slots_is_refused(tmp_path, local_ray, monkeypatch):
    resources = dict(local_ray.cluster_resources())
    resources.pop(TIMING_SLOT)
    monkeypatch.setattr(local_ray, "cluster_resources", lambda: resources)
    with pytest.raises(GraphoptError, match="timing_slot"):
        run_suite_on_ray(_tiny(), ResultStore(tmp_path / "none.jsonl"))
