"""The machine and software a measurement ran on, recorded beside every result.

:func:`capture_environment` never raises and never imports a runtime: library versions come
from package metadata, CPU details from ``/proc/cpuinfo`` and ``/sys``, GPU details from NVML
when ``pynvml`` is installed. An item that cannot be read is recorded as ``None`` and its
reason is listed under ``"unavailable"`` (keyed by the item's dotted path, e.g.
``"cpu.scaling_governor"``).

DVFS: ``cpu.dvfs`` holds the governor and current/min/max frequency of every CPU this process
may run on (:func:`graphopt.backends.cpufreq.dvfs_state`), ``"unknown"`` with the reason where
cpufreq is not readable. On a Jetson, ``jetson`` holds the power mode (nvpmodel) and GPU/EMC
clocks (:func:`graphopt.backends.energy.jetson.jetson_state`); elsewhere it is ``None``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .cpufreq import dvfs_state
from .energy.jetson import jetson_state
from .energy.nvml import nvml_devices

__all__ = ["capture_environment", "CPU_FLAGS_OF_INTEREST", "LIBRARIES"]

logger = logging.getLogger(__name__)

CPU_FLAGS_OF_INTEREST = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "hypervisor",
)
"""CPU flags that decide which kernels runtimes pick (``hypervisor``: a virtual machine)."""

LIBRARIES: dict[str, tuple[str, ...]] = {
    "graphopt": ("graphopt",),
    "numpy": ("numpy",),
    "onnx": ("onnx",),
    "onnx-ir": ("onnx-ir", "onnx_ir"),
    "onnxscript": ("onnxscript",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "openvino": ("openvino",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    "nvidia-ml-py": ("nvidia-ml-py",),
}
"""Reported library -> distribution names that provide it, first installed one wins."""

NOT_INSTALLED = "not installed"

CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


def capture_environment(extra: Mapping | None = None) -> dict:
    """A JSON-ready description of this machine, OS, Python, libraries and GPUs, plus ``extra``."""
    unavailable: dict[str, str] = {}

    def attempt(key: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # recorded, never raised: see module docstring
            unavailable[key] = f"{type(exc).__name__}: {exc}"
            logger.debug("environment item %s unavailable: %s", key, exc)
            return None

    cpuinfo = attempt("cpu.model", _cpuinfo_first_processor)
    env: dict[str, Any] = {
        "cpu": {
            "model": _cpu_model(cpuinfo),
            "flags": _cpu_flags(cpuinfo),
            "logical_cores_available": attempt("cpu.logical_cores_available",
                                               lambda: len(os.sched_getaffinity(0))),
            "logical_cores_total": os.cpu_count(),
            "scaling_governor": attempt("cpu.scaling_governor", _governor),
            "dvfs": dvfs_state(),
        },
        "memory_total_bytes": attempt("memory_total_bytes", _memory_total),
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "version": platform.version(),
            "machine": platform.machine(),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "libraries": {name: _version(dists) for name, dists in LIBRARIES.items()},
    }
    if cpuinfo is None or not cpuinfo:
        env["cpu"]["model"] = platform.processor() or None
        env["cpu"]["flags"] = None
        unavailable.setdefault("cpu.flags", f"{CPUINFO} not readable")
    gpus, gpu_reason = nvml_devices()
    env["gpus"] = gpus
    if gpus is None:
        unavailable["gpus"] = gpu_reason
    env["jetson"] = attempt("jetson", jetson_state)
    if env["jetson"] is None:
        unavailable.setdefault("jetson", "not a Jetson (no /etc/nv_tegra_release, no nvpmodel"
                                         " status)")
    env["extra"] = dict(extra) if extra else {}
    env["unavailable"] = unavailable
    return env


def _cpuinfo_first_processor() -> dict[str, str]:
    """Key/value pairs of the first processor block of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in CPUINFO.read_text().splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _cpu_model(cpuinfo: Mapping[str, str] | None) -> str | None:
    if not cpuinfo:
        return None
    # x86 says "model name"; some ARM kernels only give "Hardware" or "CPU part".
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        if key in cpuinfo:
            return cpuinfo[key]
    return None


def _cpu_flags(cpuinfo: Mapping[str, str] | None) -> dict[str, bool] | None:
    if not cpuinfo:
        return None
    present = set((cpuinfo.get("flags") or cpuinfo.get("Features") or "").split())
    return {flag: flag in present for flag in CPU_FLAGS_OF_INTEREST}


def _governor() -> str:
    try:
        return GOVERNOR.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{GOVERNOR} absent: no cpufreq driver exposed (usual in virtual machines)"
        ) from None


def _memory_total() -> int:
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _version(distributions: tuple[str, ...]) -> str:
    for dist in distributions:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if dist == distributions[0] else f"{version} ({dist})"
    return NOT_INSTALLED
