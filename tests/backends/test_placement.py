"""Thread placement: ORT's affinity string, the caller pin, runners recording what they pinned."""

from __future__ import annotations

import glob
import os
import time

import pytest

from graphopt import zoo
from graphopt.backends import placement
from graphopt.backends.registry import create_runner
from graphopt.errors import BackendUnavailableError
from graphopt.model_io import load_model
from graphopt.verify import random_inputs

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux")


def _thread_cores() -> list[set[int]]:
    """The allowed cores of every thread of this process, from /proc."""
    masks = []
    for task in glob.glob("/proc/self/task/*"):
        try:
            with open(f"{task}/status") as status:
                line = next(x for x in status if x.startswith("Cpus_allowed_list"))
        except OSError:  # a thread (of an earlier test's pool) ended meanwhile
            continue
        masks.append(_parse_list(line.split()[1]))
    return masks


def _parse_list(text: str) -> set[int]:
    cores: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cores.update(range(int(low), int(high or low) + 1))
    return cores


def test_ort_pool_affinities_are_one_based_and_skip_the_caller():
    assert placement.ort_pool_affinities(1, [0, 1]) == ""  # the caller runs alone
    assert placement.ort_pool_affinities(2, [0, 1]) == "2"  # pool thread on core 1
    assert placement.ort_pool_affinities(3, [4, 5, 6, 7]) == "6;7"
    with pytest.raises(ValueError, match="cannot pin 3 threads to 2 cores"):
        placement.ort_pool_affinities(3, [0, 1])
    with pytest.raises(ValueError, match=">= 1"):
        placement.ort_pool_affinities(0, [0, 1])


@linux_only
def test_pin_caller_is_reference_counted_and_restores():
    before = os.sched_getaffinity(0)
    core = min(before)
    placement.pin_caller(core)
    placement.pin_caller(core)
    try:
        assert os.sched_getaffinity(0) == {core}
        assert placement.available_cores() == sorted(before)  # the process's, not the pin
        placement.unpin_caller()
        assert os.sched_getaffinity(0) == {core}  # one holder left
    finally:
        placement.unpin_caller()
    assert os.sched_getaffinity(0) == before
    placement.unpin_caller()  # an extra release does nothing
    assert os.sched_getaffinity(0) == before


@linux_only
def test_pinned_ort_runner_binds_caller_and_pool_threads():
    cores = placement.available_cores()
    if len(cores) < 2:
        pytest.skip("needs two cores")
    before = os.sched_getaffinity(0)
    runner = create_runner("ort-cpu", zoo.path("tiny_cnn"), threads=2, pin=True)
    with runner:
        assert os.sched_getaffinity(0) == {cores[0]}
        # ORT's pool thread pins itself when it starts: run once, then give it a moment.
        runner.infer(random_inputs(load_model(zoo.path("tiny_cnn")), batch_size=1))
        deadline = time.monotonic() + 2.0
        while {cores[1]} not in _thread_cores() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert {cores[1]} in _thread_cores()
        assert runner.settings["thread_pinning"] == (
            f"caller on core {cores[0]}, pool on cores [{cores[1]}]")
        assert runner.settings["intra_op_threads"] == 2
    assert os.sched_getaffinity(0) == before


def test_unpinned_runner_says_who_places_threads():
    with create_runner("ort-cpu", zoo.path("tiny_cnn")) as runner:
        assert runner.settings["thread_pinning"].startswith("runtime default")
    with create_runner("ort-cpu", zoo.path("tiny_cnn"), threads=1) as runner:
        assert runner.settings["thread_pinning"] == "off"


def test_too_many_pinned_threads_is_a_one_line_error():
    threads = len(placement.available_cores()) + 1
    with pytest.raises(BackendUnavailableError, match=f"cannot pin {threads} threads"):
        create_runner(f"ort-cpu@threads={threads},pin=true", zoo.path("tiny_cnn"))


def test_openvino_pinning_is_set_and_read_back():
    pytest.importorskip("openvino", reason="needs openvino")
    for text, expected in (("openvino-cpu@pin=false", False), ("openvino-cpu@pin=true", True)):
        runner = create_runner(text, zoo.path("tiny_cnn"))
        assert runner.compile_config()["ENABLE_CPU_PINNING"] == ("YES" if expected else "NO")
        with runner:
            assert runner.settings["enable_cpu_pinning"] is expected
    assert "ENABLE_CPU_PINNING" not in create_runner(
        "openvino-cpu", zoo.path("tiny_cnn")).compile_config()
