"""Other processes on the CPU: readings, averages and the contention rule."""

from __future__ import annotations

import pytest

from graphopt.backends.cpuload import (
    contended,
    cpu_clocks,
    mean_other_cores_busy,
    other_cores_busy,
    own_cores_busy,
)


def test_other_cores_busy_subtracts_this_process():
    before = cpu_clocks()
    sum(range(200_000))  # this process's own work is not background load
    reading = other_cores_busy(before, cpu_clocks())
    assert reading is None or reading >= 0.0
    assert other_cores_busy(None, before) is None
    # 3 busy CPU seconds machine-wide, 1 of them ours, over 2 s: 1 core kept busy by others.
    assert other_cores_busy((2.0, 10.0, 1.0), (4.0, 13.0, 2.0)) == 1.0
    assert own_cores_busy((2.0, 10.0, 1.0), (4.0, 13.0, 2.0)) == 0.5
    assert other_cores_busy((2.0, 10.0, 1.0), (2.0, 13.0, 2.0)) is None  # no time passed


def test_mean_is_weighted_by_period_length():
    periods = [((0.0, 0.0, 0.0), (1.0, 1.0, 0.0)),  # 1 s at 1 core
               ((1.0, 1.0, 0.0), (4.0, 1.0, 0.0)),  # 3 s at 0 cores
               (None, (4.0, 1.0, 0.0))]              # unreadable: ignored
    assert mean_other_cores_busy(periods) == pytest.approx(0.25)
    assert mean_other_cores_busy([(None, None)]) is None


@pytest.mark.parametrize(
    ("other", "own", "expected"),
    [
        (0.1, 2.0, False),   # we use both cores, others next to nothing
        (0.4, 2.0, True),    # we use both cores, others take 0.4 of them
        (0.7, 1.0, False),   # one thread: a neighbour fits on the idle core
        (0.9, 1.0, True),    # ... and spills onto ours
        (1.5, 0.0, False),   # nothing of ours runs: others may use what we leave idle
        (1.9, 0.0, True),
        (None, 2.0, False),  # unknown is not contention
    ],
)
def test_contention_means_others_spill_onto_our_cores(other, own, expected):
    assert contended(other, own, cores=2) is expected
