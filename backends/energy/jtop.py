"""NVIDIA Jetson energy through jetson-stats (``jtop``), when it is installed.

``jtop`` is imported lazily. It talks to the ``jtop.service`` daemon over ``/run/jtop.sock``
(no root needed, unlike some sysfs files). Its documented Python API:
``with jtop(interval=s) as jetson: jetson.ok(); jetson.power`` where ``power`` is
``{"rail": {NAME: {"volt": mV, "curr": mA, "power": mW, ...}}, "tot": {"power": mW,
"name": ...}}``; ``jetson.nvpmodel`` (the power mode, ``str()`` gives its name),
``jetson.cpu["cpu"][i]["freq"]`` and ``jetson.gpu[NAME]["freq"]`` (``cur``/``min``/``max``
in kHz), ``jetson.memory["EMC"]["cur"]`` (kHz).

The meter samples ``power["tot"]`` (the module input, ``VDD_IN`` on Orin) as the counted
domain and keeps the other rails in the reading's ``breakdown``, on a background thread at
``sample_interval`` (jtop refreshes every ``interval``, so samples between updates repeat
a value; the uncertainty adds one refresh interval of power at each edge).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from .base import EnergyMeter
from .sampling import RailSampler

__all__ = ["JtopMeter", "load_jtop", "jtop_state"]

logger = logging.getLogger(__name__)

NOT_INSTALLED = "jetson-stats (jtop) not installed; `pip install jetson-stats` on the Jetson"
JTOP_INTERVAL_S = 0.1
MIN_WINDOW_S = 1.0
MIN_SAMPLES = 5
TOTAL = "tot"


def load_jtop() -> ModuleType:
    """Import ``jtop`` (raises ``ImportError`` when jetson-stats is not installed)."""
    return importlib.import_module("jtop")


class JtopMeter(EnergyMeter):
    """Energy of a Jetson module from jetson-stats' power readings."""

    source = "jetson"

    def __init__(
        self,
        *,
        interval: float = JTOP_INTERVAL_S,
        min_window_seconds: float = MIN_WINDOW_S,
        min_samples: int = MIN_SAMPLES,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.interval = interval
        self.min_window_seconds = min_window_seconds
        self.min_samples = min_samples
        self._jetson: Any = None
        self._sampler: RailSampler | None = None
        self._samples = 0
        self._breakdown: dict[str, float] = {}
        self.total_name = "VDD_IN"

    def available(self) -> tuple[bool, str]:
        try:
            module = load_jtop()
        except ImportError:
            return False, NOT_INSTALLED
        try:
            with module.jtop(interval=self.interval) as jetson:
                if not jetson.ok():
                    return False, "jtop connected but reported no data"
                power = jetson.power
        except Exception as exc:  # jtop raises JtopException when the service is down
            return False, f"jtop service not reachable: {exc}"
        if not power or TOTAL not in power:
            return False, "jtop reports no power rails on this board"
        self.total_name = power[TOTAL].get("name", self.total_name)
        return True, "jetson-stats rails " + ", ".join([self.total_name, *power.get("rail", {})])

    def _open(self) -> Any:
        if self._jetson is None:
            self._jetson = load_jtop().jtop(interval=self.interval)
            self._jetson.start()
        return self._jetson

    def _read_rails(self) -> dict[str, float]:
        power = self._open().power
        watts = {TOTAL: power[TOTAL]["power"] / 1e3}
        for name, rail in power.get("rail", {}).items():
            watts[name] = rail["power"] / 1e3
        return watts

    def _begin(self) -> None:
        self._open()
        self._sampler = RailSampler(self._read_rails, self._clock, self.interval, name="jtop")
        self._sampler.start()

    def _end(self) -> dict[str, float]:
        if self._sampler is None:
            raise RuntimeError("jtop window ended without a start")
        joules = self._sampler.stop()
        self._samples = self._sampler.samples
        self._sampler = None
        self._breakdown = {r: j for r, j in joules.items() if r != TOTAL}
        return {self.total_name: joules.get(TOTAL, 0.0)}

    def _breakdown_joules(self) -> dict[str, float]:
        return dict(self._breakdown)

    def _too_short(self, domains_j: Mapping[str, float], window: float) -> str | None:
        reason = super()._too_short(domains_j, window)
        if reason is None and self._samples < self.min_samples:
            reason = (f"only {self._samples} jtop power samples (< {self.min_samples}) in the"
                      " window; run more inferences")
        return reason

    def _read_uncertainty(self, domains_j: Mapping[str, float], window: float) -> float:
        return 2.0 * sum(domains_j.values()) / window * self.interval

    def _method(self) -> str:
        return (f"jetson-stats (jtop) power of {self.total_name} sampled every"
                f" {self.interval * 1e3:.0f} ms, trapezoid rule")

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if self._jetson is not None:
            try:
                self._jetson.close()
            finally:
                self._jetson = None


def jtop_state(jetson: Any) -> dict:
    """Power mode and CPU/GPU/EMC clocks (MHz) from an open ``jtop`` object. Never raises."""

    def attempt(fn) -> Any:
        try:
            return fn()
        except Exception as exc:
            return {"cur_mhz": "unknown", "reason": f"jtop: {type(exc).__name__}: {exc}"}

    def mhz(freq: Mapping) -> dict:
        return {f"{k}_mhz": freq[k] / 1e3 for k in ("cur", "min", "max") if k in freq}

    return {
        "power_mode": attempt(lambda: {"name": str(jetson.nvpmodel), "source": "jtop"}),
        "cpu_clocks": attempt(lambda: [mhz(c["freq"]) for c in jetson.cpu["cpu"]]),
        "gpu_clock": attempt(lambda: {name: mhz(g["freq"]) for name, g in jetson.gpu.items()}),
        "emc_clock": attempt(lambda: mhz(jetson.memory["EMC"])),
    }
