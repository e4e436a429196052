"""Choose a measured energy meter for a device, and say why the others cannot be used.

``auto`` prefers measurement over estimates: on a Jetson (INA3221 rails present) the sysfs
rails, then jetson-stats; on ``cpu`` RAPL; on a GPU device (``gpu``, ``cuda``, ``tensorrt``)
NVML first, then RAPL. ``rapl``, ``nvml`` or ``jetson`` (sysfs rails, else jtop) ask for that
meter only. ``estimate`` (``model`` is its older name) and ``none`` select no meter. When no
meter is usable the caller falls back to
:class:`~graphopt.backends.energy.estimate.TimePowerEstimator` and prints the reasons, e.g.
``energy: estimate:time-x-power (rapl: permission denied reading ...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from .base import EnergyMeter
from .jetson import JetsonMeter
from .jtop import JtopMeter
from .nvml import NvmlMeter
from .rapl import RaplMeter

__all__ = ["PREFERENCES", "probe_meters", "select_meter", "unavailable_reasons"]

logger = logging.getLogger(__name__)

PREFERENCES = ("auto", "rapl", "nvml", "jetson", "estimate", "model", "none")
NO_METER = ("estimate", "model", "none")
_GPU_DEVICES = ("gpu", "cuda", "tensorrt")

MeterFactory = Callable[[], EnergyMeter]
_FACTORIES: dict[str, MeterFactory] = {
    "rapl": RaplMeter, "nvml": NvmlMeter, "jetson": JetsonMeter, "jtop": JtopMeter,
}


def probe_meters(
    preference: str = "auto",
    *,
    device: str = "cpu",
    factories: Mapping[str, MeterFactory] | None = None,
) -> tuple[EnergyMeter | None, list[str]]:
    """The first usable meter in preference order (or None) and why earlier ones were not.

    ``factories`` replaces the meter constructors by name (tests, or a non-default powercap
    root / GPU index).
    """
    made = {**_FACTORIES, **(factories or {})}
    reasons: list[str] = []
    for name in _candidates(preference, device):
        meter = made[name]()
        ok, why = meter.available()
        if ok:
            logger.info("energy meter: %s (%s)", name, why)
            return meter, reasons
        logger.info("energy meter %s unavailable: %s", name, why)
        reasons.append(f"{name}: {why}")
    if preference in NO_METER:
        reasons.append(f"measurement not requested (--energy {preference})")
    return None, reasons


def select_meter(preference: str = "auto", *, device: str = "cpu") -> EnergyMeter | None:
    """A usable measured meter for ``device``, or None (then use the model estimate)."""
    return probe_meters(preference, device=device)[0]


def unavailable_reasons(preference: str = "auto", *, device: str = "cpu") -> list[str]:
    """Why each measured meter considered for ``device`` cannot be used (empty if one can)."""
    return probe_meters(preference, device=device)[1]


def _candidates(preference: str, device: str) -> list[str]:
    if preference not in PREFERENCES:
        raise ValueError(f"unknown energy preference {preference!r}; expected one of {PREFERENCES}")
    if preference in ("rapl", "nvml"):
        return [preference]
    if preference == "jetson":
        return ["jetson", "jtop"]
    if preference in NO_METER:
        return []
    jetson = ["jetson", "jtop"] if _on_jetson() else []
    return jetson + (["nvml", "rapl"] if device.lower() in _GPU_DEVICES else ["rapl"])


def _on_jetson() -> bool:
    from .jetson import TEGRA_MARKER

    return TEGRA_MARKER.exists()
