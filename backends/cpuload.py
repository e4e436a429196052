"""Other processes on the CPU: how many cores they kept busy while we measured.

A measurement shares the machine. Linux's ``/proc/stat`` counts busy CPU time of the whole
machine (user, nice, system, irq, softirq and steal, the last being time a hypervisor gave to
other guests); subtracting this process's own CPU time (``time.process_time``: every thread,
the runtime's worker threads included) over the same wall-clock period leaves the cores that
*others* kept busy. Resolution is one clock tick (``SC_CLK_TCK``, usually 10 ms) per core, so
periods shorter than about 0.2 s give coarse readings.

:func:`contended` says whether a reading means our threads had to share cores: others used
more than the cores this process left idle (at least :data:`BACKGROUND_LOAD_WARNING`), so a
neighbour that fits on a core we do not use is not contention, one that spills onto ours is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "BACKGROUND_LOAD_WARNING",
    "CpuClocks",
    "cpu_clocks",
    "other_cores_busy",
    "own_cores_busy",
    "mean_other_cores_busy",
    "contended",
]

BACKGROUND_LOAD_WARNING = 0.25
"""Cores kept busy by other processes above which a measurement is flagged."""

CpuClocks = tuple[float, float, float]
"""(wall seconds, machine-wide busy CPU seconds, this process's CPU seconds)."""


def cpu_clocks() -> CpuClocks | None:
    """A reading for :func:`other_cores_busy`; ``None`` where /proc/stat does not exist."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return time.perf_counter(), busy, time.process_time()


def other_cores_busy(before: CpuClocks | None, after: CpuClocks | None) -> float | None:
    """Average number of cores that other processes kept busy between two readings."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    other = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, other / (after[0] - before[0]))


def own_cores_busy(before: CpuClocks | None, after: CpuClocks | None) -> float | None:
    """Average number of cores this process kept busy between two readings."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return max(0.0, (after[2] - before[2]) / (after[0] - before[0]))


def mean_other_cores_busy(
    periods: Sequence[tuple[CpuClocks | None, CpuClocks | None]],
) -> float | None:
    """:func:`other_cores_busy` over several (before, after) periods, weighted by length."""
    values = [(other_cores_busy(b, a), a[0] - b[0]) for b, a in periods
              if b is not None and a is not None]
    values = [(v, w) for v, w in values if v is not None]
    if not values:
        return None
    return sum(v * w for v, w in values) / sum(w for _, w in values)


def contended(other: float | None, own: float | None, *, cores: int | None = None,
              threshold: float = BACKGROUND_LOAD_WARNING) -> bool:
    """Whether others used more than the cores we left idle (and more than ``threshold``).

    ``cores`` defaults to every CPU of the machine (``os.cpu_count()``), since /proc/stat
    counts them all. Unknown readings (``None``) are never contention.
    """
    if other is None:
        return False
    total = cores if cores is not None else (os.cpu_count() or 1)
    idle = max(0.0, total - (own or 0.0))
    return other > max(threshold, idle - threshold)
