"""DVFS state of the CPUs in use: governor and current/min/max frequency from Linux cpufreq.

Read from ``/sys/devices/system/cpu/cpu<N>/cpufreq/`` (``scaling_governor``,
``scaling_cur_freq``, ``scaling_min_freq``, ``scaling_max_freq``, ``scaling_driver``; kHz).
Where cpufreq is absent (most virtual machines: the hypervisor owns frequency) or unreadable,
each CPU is recorded as ``"unknown"`` with the reason, never guessed. :func:`governor_warning`
says when a known governor is not ``performance``: frequency then moves with load during timing
(``ondemand``/``schedutil`` ramp up after the first calls, ``powersave`` caps the clock).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CPU_ROOT", "UNKNOWN", "cpus_in_use", "dvfs_state", "governor_warning"]

CPU_ROOT = Path("/sys/devices/system/cpu")
UNKNOWN = "unknown"
_FREQS = {"cur_mhz": "scaling_cur_freq", "min_mhz": "scaling_min_freq",
          "max_mhz": "scaling_max_freq"}


def cpus_in_use() -> list[int]:
    """Logical CPUs this process may run on (its affinity), else every CPU."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def dvfs_state(cpus: Iterable[int] | None = None, *, root: Path | None = None) -> dict:
    """``{"cpus": {N: {...}}, "governors": [...], "status": "known"|"partial"|"unknown"}``.

    Each CPU entry has ``governor``, ``driver`` and ``cur_mhz``/``min_mhz``/``max_mhz``, or
    ``governor="unknown"`` and ``reason``. Never raises.
    """
    base = CPU_ROOT if root is None else root
    entries = {str(cpu): _one(base / f"cpu{cpu}" / "cpufreq")
               for cpu in (cpus_in_use() if cpus is None else cpus)}
    known = [e for e in entries.values() if e["governor"] != UNKNOWN]
    status = "known" if len(known) == len(entries) else "partial" if known else UNKNOWN
    state = {
        "status": status,
        "governors": sorted({e["governor"] for e in known}),
        "cpus": entries,
    }
    if status == UNKNOWN and entries:
        state["reason"] = next(iter(entries.values()))["reason"]
    return state


def governor_warning(state: dict) -> str | None:
    """A warning when a known governor of the CPUs in use is not ``performance``."""
    others = [g for g in state.get("governors", []) if g != "performance"]
    if not others:
        return None
    return (f"CPU frequency governor {'/'.join(others)} (not performance) during timing: the"
            " clock moves with load, so latency and energy depend on what ran before")


def _one(folder: Path) -> dict:
    if not folder.is_dir():
        return {"governor": UNKNOWN,
                "reason": f"{folder} absent: no cpufreq driver exposed (usual in virtual"
                          " machines, where the hypervisor sets the frequency)"}
    try:
        entry: dict = {"governor": _read(folder / "scaling_governor")}
    except OSError as exc:
        return {"governor": UNKNOWN, "reason": f"{folder}/scaling_governor: {exc}"}
    entry["driver"] = _optional(folder / "scaling_driver")
    for key, name in _FREQS.items():
        khz = _optional(folder / name)
        entry[key] = round(int(khz) / 1e3, 1) if khz and khz.isdigit() else UNKNOWN
    return entry


def _read(path: Path) -> str:
    return path.read_text().strip()


def _optional(path: Path) -> str | None:
    try:
        return _read(path)
    except OSError:
        return None
