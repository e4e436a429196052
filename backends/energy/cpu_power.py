"""Modelled power of one busy logical CPU, from the CPU model's TDP, for the time-based estimate.

Method (the one codecarbon uses, per CPU instead of per machine): a CPU package under a
sustained full load draws about its TDP (Intel defines TDP as the average power at base
frequency under an Intel-defined high-complexity workload; codecarbon's ``cpu_load`` mode
prices a load of ``x`` as ``x * TDP``). Spread over the package's logical CPUs, one busy logical
CPU costs ``TDP / logical CPUs``; a logical CPU in use but waiting costs
:data:`IDLE_SHARE` of that.

Where the TDP comes from, first match wins, and the origin is stated in every reading:

1. codecarbon's CPU table (``codecarbon/data/hardware/cpu_power.csv``, columns ``Name,TDP``),
   read as a CSV file when the optional ``codecarbon`` package is installed (it is never
   imported: only its data file is read);
2. :data:`TDP_TABLE`, a small table of our own, each row with its source (vendor spec pages);
3. otherwise :data:`DEFAULT_WATTS_PER_CPU` per logical CPU, labelled as a default. Virtual
   machines often hide the model (``Intel(R) Xeon(R) Processor``), so this is common there.

Sources of the constants:

- :data:`DEFAULT_WATTS_PER_CPU` = 4.0 W: Cloud Carbon Footprint's maximum watts per vCPU for
  Intel Xeon servers (about 4.0 W Cascade Lake, 4.3 W Skylake, from SPECpower results);
  codecarbon's own unknown-CPU default (85 W) over a 20-thread part gives 4.25 W.
- :data:`IDLE_SHARE` = 0.15: Cloud Carbon Footprint's minimum over maximum watts per vCPU for
  the same Intel Xeon generations (about 0.65 / 4.3 W).

This is an estimate from time and a nominal power, not a measurement: it ignores frequency,
instruction mix (AVX-512 draws more) and uncore/DRAM power, so it carries no uncertainty.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import logging
import re
from pathlib import Path

__all__ = [
    "CpuPower",
    "DEFAULT_WATTS_PER_CPU",
    "IDLE_SHARE",
    "TDP_TABLE",
    "TdpEntry",
    "codecarbon_table",
    "cpu_power",
]

logger = logging.getLogger(__name__)

DEFAULT_WATTS_PER_CPU = 4.0
IDLE_SHARE = 0.15


@dataclasses.dataclass(frozen=True)
class TdpEntry:
    """A CPU model (a substring of the model name, compared without case, ``(R)``, ``CPU``,
    ``@ clock``), its TDP and logical CPUs."""

    pattern: str
    tdp_watts: float
    logical_cpus: int
    source: str


TDP_TABLE: tuple[TdpEntry, ...] = (
    TdpEntry("Xeon(R) CPU E5-2620 v3", 85.0, 12, "Intel ARK: 6 cores, 12 threads, 85 W"),
    TdpEntry("Xeon(R) Gold 6130", 125.0, 32, "Intel ARK: 16 cores, 32 threads, 125 W"),
    TdpEntry("Xeon(R) Gold 6248", 150.0, 40, "Intel ARK: 20 cores, 40 threads, 150 W"),
    TdpEntry("Xeon(R) Platinum 8280", 205.0, 56, "Intel ARK: 28 cores, 56 threads, 205 W"),
    TdpEntry("AMD EPYC 7742", 225.0, 128, "AMD spec: 64 cores, 128 threads, 225 W"),
    TdpEntry("AMD EPYC 7763", 280.0, 128, "AMD spec: 64 cores, 128 threads, 280 W"),
)
"""Our own rows; extend with the vendor's spec page as the source."""


@dataclasses.dataclass(frozen=True)
class CpuPower:
    """Watts of one busy logical CPU, the idle share, and where the figure came from."""

    watts_per_cpu: float
    idle_share: float
    origin: str
    tdp_watts: float | None = None
    logical_cpus: int | None = None

    @property
    def idle_watts_per_cpu(self) -> float:
        return self.watts_per_cpu * self.idle_share


def codecarbon_table() -> Path | None:
    """codecarbon's ``cpu_power.csv`` when the package is installed (not imported), else None."""
    try:
        spec = importlib.util.find_spec("codecarbon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "hardware" / "cpu_power.csv"
        if path.is_file():
            return path
    return None


def cpu_power(
    model: str | None,
    *,
    logical_cpus: int | None = None,
    table: tuple[TdpEntry, ...] = TDP_TABLE,
    codecarbon_csv: Path | None | bool = True,
    default_watts_per_cpu: float = DEFAULT_WATTS_PER_CPU,
    idle_share: float = IDLE_SHARE,
) -> CpuPower:
    """Power of one busy logical CPU of ``model`` (the ``/proc/cpuinfo`` model name).

    ``logical_cpus`` is the package's logical CPU count used with a codecarbon TDP (its table
    has no core counts; default: our table's count, else unknown and the default is used).
    ``codecarbon_csv`` is a path, ``True`` (find the installed package's table) or ``False``.
    """
    name = (model or "").strip()
    if name:
        entry = _our_entry(name, table)
        if codecarbon_csv is not False:
            path = codecarbon_table() if codecarbon_csv is True else codecarbon_csv
            tdp = _codecarbon_tdp(name, path) if path is not None else None
            cpus = logical_cpus or (entry.logical_cpus if entry else None)
            if tdp is not None and cpus:
                return CpuPower(tdp / cpus, idle_share,
                                f"TDP {tdp:g} W over {cpus} logical CPUs of {name!r}"
                                f" (codecarbon cpu_power.csv)", tdp, cpus)
        if entry is not None:
            cpus = logical_cpus or entry.logical_cpus
            return CpuPower(entry.tdp_watts / cpus, idle_share,
                            f"TDP {entry.tdp_watts:g} W over {cpus} logical CPUs of {name!r}"
                            f" ({entry.source}; graphopt table)", entry.tdp_watts, cpus)
    shown = repr(name) if name else "an unnamed CPU"
    return CpuPower(default_watts_per_cpu, idle_share,
                    f"default {default_watts_per_cpu:g} W per busy logical CPU: no TDP known for"
                    f" {shown} (Cloud Carbon Footprint's Intel Xeon maximum per vCPU)")


def _our_entry(name: str, table: tuple[TdpEntry, ...]) -> TdpEntry | None:
    wanted = _normalise(name)
    return next((e for e in table if _normalise(e.pattern) in wanted), None)


_NOISE = re.compile(r"\((?:r|tm)\)|\bcpu\b|@.*$|\bprocessor\b|\d+-core", re.IGNORECASE)


def _normalise(name: str) -> str:
    return " ".join(_NOISE.sub(" ", name).lower().split())


def _codecarbon_tdp(name: str, path: Path) -> float | None:
    """TDP of ``name`` in codecarbon's table: an exact match after normalising, else None."""
    wanted = _normalise(name)
    if not wanted or wanted in ("intel xeon", "amd epyc"):
        return None  # a masked model name: any row would be a guess
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if _normalise(row.get("Name", "")) == wanted:
                    return float(row["TDP"])
    except (OSError, ValueError, KeyError) as exc:
        logger.info("codecarbon CPU table %s unreadable: %s", path, exc)
    return None
