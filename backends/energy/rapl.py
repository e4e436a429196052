"""CPU energy from Intel/AMD RAPL counters through the Linux powercap interface.

Zones live under ``/sys/class/powercap/intel-rapl:<pkg>`` (name ``package-<pkg>``) with
sub-zones ``intel-rapl:<pkg>:<n>`` (``core``, ``uncore``, ``dram``). Only the package zones and
``dram`` are read and summed: ``core`` and ``uncore`` are already inside ``package``, and
``psys`` (whole platform, client parts) would count everything twice.

Each zone's ``energy_uj`` is a cumulative counter in microjoules that wraps at
``max_energy_range_uj``; a negative difference is corrected by adding that range once (a window
must therefore be shorter than one wrap period, minutes at full load).

Why a reading may be impossible:

- No ``intel-rapl:*`` zones: no powercap driver (most virtual machines, containers without
  ``/sys``, the ``intel_rapl_common`` module not loaded, unsupported CPU).
- ``energy_uj`` not readable: since November 2020 (CVE-2020-8694, the "Platypus" power
  side channel) the kernel makes it readable by root only. Run as root, or grant read access
  (``sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj`` until reboot, or a udev rule).

Resolution: the hardware counts in energy status units (typically 2^-14 J = 61 uJ on Intel,
2^-16 J on AMD) and updates about every millisecond. A window is reported only when it lasts at
least ``min_window_seconds`` (default 100 ms = ~100 updates) and its energy is at least
``min_counts`` (default 1000) resolution units; otherwise the reading says why, rather than 0.
The uncertainty bound per window is, for each domain, two reads each off by at most one update
(``2 x max(resolution, power x update period)``), plus the idle baseline's spread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .base import EnergyMeter

__all__ = ["RaplMeter", "RaplZone", "DEFAULT_POWERCAP_ROOT"]

logger = logging.getLogger(__name__)

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
DEFAULT_RESOLUTION_J = 2.0**-14
UPDATE_PERIOD_S = 1e-3
MIN_WINDOW_S = 0.1
MIN_COUNTS = 1000

_ZONE_DIR = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")

PERMISSION_HINT = (
    "energy_uj is readable by root only since November 2020 (CVE-2020-8694); run as root or "
    "`sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj`"
)

Reader = Callable[[Path], str]


@dataclass(frozen=True)
class RaplZone:
    """One counted domain: ``domain`` is ``package-<pkg>`` or ``dram-<pkg>``."""

    domain: str
    path: Path
    max_range_uj: int


def _read_text(path: Path) -> str:
    return path.read_text()


class RaplMeter(EnergyMeter):
    """Energy of the CPU packages and DRAM from powercap RAPL counters."""

    source = "rapl"

    def __init__(
        self,
        root: str | Path = DEFAULT_POWERCAP_ROOT,
        *,
        reader: Reader = _read_text,
        resolution_j: float = DEFAULT_RESOLUTION_J,
        min_window_seconds: float = MIN_WINDOW_S,
        min_counts: int = MIN_COUNTS,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.resolution_j = resolution_j
        self.min_window_seconds = min_window_seconds
        self.min_counts = min_counts
        self._reader = reader
        self._zones: list[RaplZone] | None = None
        self._start_uj: dict[str, int] = {}

    def zones(self) -> list[RaplZone]:
        """Package and DRAM zones under ``root`` (discovered once)."""
        if self._zones is None:
            self._zones = self._discover()
        return self._zones

    def available(self) -> tuple[bool, str]:
        try:
            zones = self.zones()
        except OSError as exc:
            return False, f"RAPL zones under {self.root} unreadable: {exc}"
        if not zones:
            return False, (
                f"no RAPL zones under {self.root} (no powercap driver: virtual machine, "
                "container without /sys, intel_rapl_common not loaded, or unsupported CPU)"
            )
        for zone in zones:
            try:
                self._counter(zone)
            except PermissionError:
                return False, f"permission denied reading {zone.path}/energy_uj: {PERMISSION_HINT}"
            except (OSError, ValueError) as exc:
                return False, f"cannot read {zone.path}/energy_uj: {exc}"
        return True, "RAPL domains " + ", ".join(z.domain for z in zones)

    def _discover(self) -> list[RaplZone]:
        if not self.root.is_dir():
            return []
        zones = []
        for path in sorted(self.root.iterdir(), key=lambda p: _zone_sort_key(p.name)):
            match = _ZONE_DIR.match(path.name)
            if match is None:
                continue
            name = self._reader(path / "name").strip()
            domain = _domain(name, package=match.group(1), sub=match.group(2))
            if domain is None:
                continue
            max_range = int(self._reader(path / "max_energy_range_uj").strip())
            zones.append(RaplZone(domain, path, max_range))
        return zones

    def _counter(self, zone: RaplZone) -> int:
        return int(self._reader(zone.path / "energy_uj").strip())

    def _begin(self) -> None:
        self._start_uj = {zone.domain: self._counter(zone) for zone in self.zones()}

    def _end(self) -> dict[str, float]:
        joules = {}
        for zone in self.zones():
            delta = self._counter(zone) - self._start_uj[zone.domain]
            if delta < 0:
                delta += zone.max_range_uj
            joules[zone.domain] = delta / 1e6
        return joules

    def _method(self) -> str:
        return "RAPL powercap counters " + "+".join(z.domain for z in self.zones())

    def _too_short(self, domains_j: Mapping[str, float], window: float) -> str | None:
        reason = super()._too_short(domains_j, window)
        if reason is not None:
            return reason
        needed = self.min_counts * self.resolution_j
        total = sum(domains_j.values())
        if total < needed:
            return (
                f"window energy {total * 1e3:.3f} mJ is below {self.min_counts} counter units "
                f"({needed * 1e3:.1f} mJ); run more inferences"
            )
        return None

    def _read_uncertainty(self, domains_j: Mapping[str, float], window: float) -> float:
        stale = (j / window * UPDATE_PERIOD_S for j in domains_j.values())
        return 2.0 * sum(max(self.resolution_j, e) for e in stale)


def _domain(name: str, *, package: str, sub: str | None) -> str | None:
    if sub is None and name.startswith("package"):
        return f"package-{package}"
    if name == "dram":
        return f"dram-{package}"
    return None


def _zone_sort_key(name: str) -> tuple[int, ...]:
    match = _ZONE_DIR.match(name)
    if match is None:
        return (1 << 30,)
    return tuple(int(g) if g is not None else -1 for g in match.groups())
