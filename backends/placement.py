"""Thread placement: binding a runtime's intra-op threads to cores (Linux).

Left to the scheduler, a runtime's threads move between cores and share them with whatever
else runs; a parallel operator waits for its slowest thread, so one preempted thread delays
the whole call. Pinning gives each intra-op thread a core of its own:

- onnxruntime runs part of every parallel region on the *calling* thread and places only its
  pool threads (``session.intra_op_thread_affinities``: 1-based logical processor ids, one
  entry per pool thread, ``;`` between threads). :func:`ort_pool_affinities` builds that
  string for cores ``cores[1:threads]``; the caller is pinned to ``cores[0]`` with
  :func:`pin_caller` (``os.sched_setaffinity`` on the calling thread only).
- OpenVINO pins its own stream threads with ``ENABLE_CPU_PINNING``
  (``ov::hint::enable_cpu_pinning``); its runner only sets that property.

:func:`pin_caller` is reference counted, so several runners of one process (a paired
measurement keeps them all alive) can each hold the pin; the thread's previous affinity comes
back when the last one releases it.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["available_cores", "ort_pool_affinities", "pin_caller", "unpin_caller"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_held = {"count": 0, "tid": None, "saved": None, "core": None}


def available_cores() -> list[int]:
    """The cores this process may run on, in order (all CPUs where affinity is unknown);
    while :func:`pin_caller` holds the calling thread, the cores it had before."""
    if not hasattr(os, "sched_getaffinity"):
        return list(range(os.cpu_count() or 1))
    with _lock:
        saved = _held["saved"]
    return sorted(saved if saved is not None else os.sched_getaffinity(0))


def ort_pool_affinities(threads: int, cores: list[int] | None = None) -> str:
    """``session.intra_op_thread_affinities`` for ``threads`` intra-op threads: pool thread k
    (1..threads-1) on ``cores[k]``; the caller (not ORT's to place) takes ``cores[0]``.
    Raises ``ValueError`` when there are fewer cores than threads."""
    cores = available_cores() if cores is None else cores
    if threads < 1:
        raise ValueError(f"pinning needs an explicit thread count >= 1, got {threads}")
    if threads > len(cores):
        raise ValueError(f"cannot pin {threads} threads to {len(cores)} cores ({cores})")
    return ";".join(str(core + 1) for core in cores[1:threads])


def pin_caller(core: int) -> None:
    """Bind the calling thread to ``core`` until the matching :func:`unpin_caller`."""
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("thread pinning needs os.sched_setaffinity (Linux)")
    tid = threading.get_native_id()
    with _lock:
        if _held["count"] == 0:
            _held.update(tid=tid, saved=os.sched_getaffinity(0), core=core)
            os.sched_setaffinity(0, {core})
        elif _held["core"] != core or _held["tid"] != tid:
            logger.warning("calling thread already pinned to core %s; keeping it", _held["core"])
        _held["count"] += 1


def unpin_caller() -> None:
    """Release one :func:`pin_caller`; the last release restores the previous affinity."""
    with _lock:
        if _held["count"] == 0:
            return
        _held["count"] -= 1
        if _held["count"] == 0:
            try:
                os.sched_setaffinity(_held["tid"], _held["saved"])
            except OSError as exc:  # the thread is gone: nothing left to restore
                logger.debug("could not restore the caller's affinity: %s", exc)
            _held.update(tid=None, saved=None, core=None)
