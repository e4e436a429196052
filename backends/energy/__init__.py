"""Energy per inference: measured by RAPL (CPU) or NVML (NVIDIA GPU), else modelled.

Every reading carries its ``source`` (``rapl``, ``nvml`` or ``model``) and a note on how it was
obtained, so a modelled figure is never mistaken for a measured one.
"""

from __future__ import annotations

from .base import EnergyMeter, EnergyReading, IdleBaseline, Source, measure_energy
from .model import HOROWITZ_45NM, EnergyTable, ModelEnergyEstimator
from .nvml import NvmlMeter
from .rapl import RaplMeter
from .select import PREFERENCES, probe_meters, select_meter, unavailable_reasons

__all__ = [
    "EnergyMeter",
    "EnergyReading",
    "EnergyTable",
    "HOROWITZ_45NM",
    "IdleBaseline",
    "ModelEnergyEstimator",
    "NvmlMeter",
    "PREFERENCES",
    "RaplMeter",
    "Source",
    "probe_meters",
    "select_meter",
    "measure_energy",
    "unavailable_reasons",
]
