"""The suite's build pool: a job that kills its worker fails alone, the others are built."""

from __future__ import annotations

import os
from pathlib import Path

from graphopt.harness.suite_build import BuildJob, Built, build_all


def _build_or_die(job: BuildJob, place: Path) -> dict:
    """A stand-in for ``build_job`` (spawned workers import it from this module): the job
    labelled ``dies`` ends its process as the out-of-memory killer would."""
    if job.label == "dies":
        os._exit(9)
    return {"": Built(str(place), {"name": job.label, "pid": os.getpid()})}


def _jobs(labels: list[str]) -> list[BuildJob]:
    return [BuildJob(label=label, spec=f"zoo:{label}", calib=None, pipelines=(("", "none"),))
            for label in labels]


def test_a_job_that_kills_its_worker_fails_alone(tmp_path):
    jobs = _jobs(["a", "dies", "b", "c", "d"])
    progress = []
    results = {job.label: built[""] for job, built in build_all(
        jobs, tmp_path, workers=2, build=_build_or_die,
        on_built=lambda done, total, label: progress.append((done, total, label)))}
    assert sorted(results) == ["a", "b", "c", "d", "dies"]
    for label in "abcd":
        assert results[label].error is None and results[label].path.endswith(
            f"job-{'a dies b c d'.split().index(label)}")
    assert "the build process died" in results["dies"].error
    assert "again on its own" in results["dies"].error
    assert [p[0] for p in progress] == [1, 2, 3, 4, 5] and {p[1] for p in progress} == {5}


def test_in_this_process_the_build_function_is_called_directly(tmp_path):
    results = [built[""] for _, built in build_all(_jobs(["a", "b"]), tmp_path, workers=0,
                                                     build=_build_or_die)]
    assert [r.summary["pid"] for r in results] == [os.getpid()] * 2
