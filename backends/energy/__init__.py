"""Energy per inference: measured (RAPL, NVML, Jetson INA3221 rails), else estimated.

Every reading carries its ``source`` and a note on how it was obtained: ``rapl``, ``nvml`` and
``jetson`` are measured; ``estimate:time-x-power`` is measured busy time x the modelled power of
the CPUs in use (the fallback headline); ``model:compute-bound`` is the analytical lower bound
on compute and data movement, shown beside the headline, never as it.
"""

from __future__ import annotations

from .base import MEASURED_SOURCES, EnergyMeter, EnergyReading, IdleBaseline, Source, measure_energy
from .cpu_power import DEFAULT_WATTS_PER_CPU, CpuPower, cpu_power
from .estimate import TimePowerEstimator
from .jetson import JetsonMeter, jetson_state
from .jtop import JtopMeter
from .model import HOROWITZ_45NM, EnergyTable, ModelEnergyEstimator
from .nvml import NvmlMeter
from .rapl import RaplMeter
from .select import PREFERENCES, probe_meters, select_meter, unavailable_reasons

__all__ = [
    "CpuPower",
    "DEFAULT_WATTS_PER_CPU",
    "EnergyMeter",
    "EnergyReading",
    "EnergyTable",
    "HOROWITZ_45NM",
    "IdleBaseline",
    "JetsonMeter",
    "JtopMeter",
    "MEASURED_SOURCES",
    "ModelEnergyEstimator",
    "NvmlMeter",
    "PREFERENCES",
    "RaplMeter",
    "Source",
    "TimePowerEstimator",
    "cpu_power",
    "jetson_state",
    "probe_meters",
    "select_meter",
    "measure_energy",
    "unavailable_reasons",
]
