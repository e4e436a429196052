"""NVIDIA GPU energy through NVML (``pynvml``, from the ``nvidia-ml-py`` package).

``pynvml`` is imported lazily, on first use, so graphopt imports on machines without a GPU.
Each measurement window calls ``nvmlInit`` at ``start()`` and ``nvmlShutdown`` at ``stop()``.

Two methods, chosen per device:

- **counter** (Volta and newer): ``nvmlDeviceGetTotalEnergyConsumption``, the board's energy
  since the driver loaded, in millijoules; the window's energy is the difference of two reads.
  The counter updates every 20-100 ms, so each read may be one update stale: the uncertainty
  bound is ``2 x max(1 mJ, power x counter_update_seconds)``.
- **power** (fallback when the counter is not supported): a background thread samples
  ``nvmlDeviceGetPowerUsage`` (milliwatts) every ``sample_interval`` seconds and the samples are
  integrated with the trapezoid rule. The bound adds ``2 x power x sample_interval`` for the
  edges and NVIDIA's stated +-5 W power-reading accuracy times the window.

Windows shorter than ``min_window_seconds`` (default 1 s, ten slow counter updates) are not
reported.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Literal

from .base import EnergyMeter
from .sampling import PowerSampler as _PowerSampler
from .sampling import trapezoid as _trapezoid  # noqa: F401 - kept importable from here

__all__ = ["NvmlMeter", "load_pynvml", "nvml_devices"]

logger = logging.getLogger(__name__)

MIN_WINDOW_S = 1.0
COUNTER_UPDATE_S = 0.1
SAMPLE_INTERVAL_S = 0.02
POWER_ACCURACY_W = 5.0
NOT_INSTALLED = "nvidia-ml-py (pynvml) not installed; install the `gpu` extra"

Mode = Literal["counter", "power"]


def load_pynvml() -> ModuleType:
    """Import ``pynvml`` (raises ``ImportError`` when nvidia-ml-py is not installed)."""
    return importlib.import_module("pynvml")


class NvmlMeter(EnergyMeter):
    """Energy of one NVIDIA GPU board, by energy counter or by sampled power."""

    source = "nvml"

    def __init__(
        self,
        device_index: int = 0,
        *,
        sample_interval: float = SAMPLE_INTERVAL_S,
        min_window_seconds: float = MIN_WINDOW_S,
        counter_update_seconds: float = COUNTER_UPDATE_S,
        power_accuracy_watts: float = POWER_ACCURACY_W,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.device_index = device_index
        self.sample_interval = sample_interval
        self.min_window_seconds = min_window_seconds
        self.counter_update_seconds = counter_update_seconds
        self.power_accuracy_watts = power_accuracy_watts
        self.mode: Mode | None = None
        self._nvml: ModuleType | None = None
        self._handle: Any = None
        self._start_mj = 0
        self._sampler: _PowerSampler | None = None

    @property
    def domain(self) -> str:
        return f"gpu-{self.device_index}"

    def available(self) -> tuple[bool, str]:
        try:
            nvml = load_pynvml()
        except ImportError:
            return False, NOT_INSTALLED
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return False, f"NVML initialisation failed: {exc}"
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(self.device_index)
            self.mode = _probe_mode(nvml, handle)
            name = _text(nvml.nvmlDeviceGetName(handle))
        except nvml.NVMLError as exc:
            return False, f"NVML device {self.device_index}: {exc}"
        finally:
            nvml.nvmlShutdown()
        if self.mode is None:
            return False, f"NVML device {self.device_index} reports neither energy nor power"
        return True, f"NVML {self.mode} on {name}"

    def _begin(self) -> None:
        nvml = load_pynvml()
        nvml.nvmlInit()
        self._nvml = nvml
        self._handle = nvml.nvmlDeviceGetHandleByIndex(self.device_index)
        if self.mode is None:
            self.mode = _probe_mode(nvml, self._handle)
        if self.mode == "counter":
            self._start_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            return
        self._sampler = _PowerSampler(self._read_watts, self._clock, self.sample_interval,
                                      name="nvml")
        self._sampler.start()

    def _end(self) -> dict[str, float]:
        nvml = self._nvml
        if nvml is None:
            raise RuntimeError("NVML window ended without a start")
        try:
            if self.mode == "counter":
                end_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                joules = (end_mj - self._start_mj) / 1e3
            else:
                assert self._sampler is not None
                joules = self._sampler.stop()
                self._sampler = None
        finally:
            nvml.nvmlShutdown()
            self._nvml = None
        return {self.domain: joules}

    def _read_watts(self) -> float:
        assert self._nvml is not None
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3

    def _read_uncertainty(self, domains_j: Mapping[str, float], window: float) -> float:
        watts = sum(domains_j.values()) / window
        if self.mode == "counter":
            return 2.0 * max(1e-3, watts * self.counter_update_seconds)
        edges = 2.0 * watts * self.sample_interval
        return edges + self.power_accuracy_watts * window

    def _method(self) -> str:
        if self.mode == "counter":
            return f"NVML total-energy counter of {self.domain}"
        return (
            f"NVML power of {self.domain} sampled every {self.sample_interval * 1e3:.0f} ms, "
            "trapezoid rule"
        )

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None


def _probe_mode(nvml: ModuleType, handle: Any) -> Mode | None:
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return "counter"
    except nvml.NVMLError as exc:
        logger.info("NVML energy counter unsupported (%s); sampling power instead", exc)
    try:
        nvml.nvmlDeviceGetPowerUsage(handle)
        return "power"
    except nvml.NVMLError as exc:
        logger.info("NVML power reading unsupported: %s", exc)
    return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_devices() -> tuple[list[dict] | None, str]:
    """Name, SM clocks and power limit of each GPU, or (None, reason). Never raises."""
    try:
        nvml = load_pynvml()
    except ImportError:
        return None, NOT_INSTALLED
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError or a broken driver install
        return None, f"NVML initialisation failed: {exc}"
    try:
        driver = _attempt(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        devices = [
            _describe_device(nvml, nvml.nvmlDeviceGetHandleByIndex(i), driver)
            for i in range(nvml.nvmlDeviceGetCount())
        ]
        return devices, f"{len(devices)} NVIDIA device(s)"
    except Exception as exc:
        return None, f"NVML query failed: {exc}"
    finally:
        _attempt(nvml.nvmlShutdown)


def _describe_device(nvml: ModuleType, handle: Any, driver: str | None) -> dict:
    sm = getattr(nvml, "NVML_CLOCK_SM", 1)
    limit_mw = _attempt(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    return {
        "name": _attempt(lambda: _text(nvml.nvmlDeviceGetName(handle))),
        "driver": driver,
        "sm_clock_mhz": _attempt(lambda: nvml.nvmlDeviceGetClockInfo(handle, sm)),
        "sm_clock_max_mhz": _attempt(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, sm)),
        "power_limit_w": limit_mw / 1e3 if limit_mw is not None else None,
        "energy_counter": _probe_mode(nvml, handle) == "counter",
    }


def _attempt(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        logger.debug("NVML query failed: %s", exc)
        return None
