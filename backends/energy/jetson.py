"""NVIDIA Jetson energy from the on-board INA3221 power monitors, read through sysfs.

Two documented layouts (NVIDIA Jetson Linux Developer Guide, "Power monitoring" / "Jetson
power estimation"; the kernel's ``Documentation/hwmon/ina3221.rst``), searched under
``root`` (default ``/sys/bus/i2c/drivers``):

- **hwmon** (Orin series, and Xavier on Jetson Linux 35+):
  ``ina3221/<bus>-<addr>/hwmon/hwmon<N>/in<C>_label`` (rail name, e.g. ``VDD_IN``,
  ``VDD_CPU_GPU_CV``, ``VDD_SOC`` on Orin NX/Nano; ``VDD_GPU_SOC``, ``VDD_CPU_CV``,
  ``VIN_SYS_5V0`` on AGX Orin), ``in<C>_input`` (bus voltage, mV) and ``curr<C>_input``
  (current, mA); power is computed as V x I.
- **iio** (Xavier and Nano on Jetson Linux 32, driver ``ina3221x``):
  ``ina3221x/<bus>-<addr>/iio:device<N>/rail_name_<C>`` with ``in_power<C>_input`` (mW), or
  ``in_voltage<C>_input`` (mV) and ``in_current<C>_input`` (mA) when the power file is absent.
  Rails: ``GPU``, ``CPU``, ``SOC``, ``CV``, ``VDDRQ``, ``SYS5V`` (AGX Xavier); ``VDD_IN``,
  ``VDD_CPU_GPU_CV``, ``VDD_SOC`` (Xavier NX); ``POM_5V_IN``, ``POM_5V_GPU``, ``POM_5V_CPU``
  (Nano).

Which rails are counted: the module input rail (``VDD_IN``, ``POM_5V_IN``, ``VIN_SYS_5V0``
where present, see :data:`TOTAL_RAILS`) already contains the others, so it alone is the total
and the other rails go to the reading's ``breakdown`` (gross: the idle baseline is subtracted
from the counted total only); boards without an input rail (AGX
Xavier) sum every rail. A rail whose files are missing is skipped and named in the note;
an unreadable file (permission) makes the meter unavailable with the path.

The rails are sampled every ``sample_interval`` seconds (default 20 ms) in a background
thread and integrated by the trapezoid rule; a window shorter than ``min_window_seconds``
(default 0.5 s) or with fewer than ``min_samples`` samples is not reported. Uncertainty: the
edges (2 x power x interval) plus the INA3221's gain error of 0.5% of full scale (datasheet,
taken here as 1% of the energy for the shunt and ADC together).

:func:`jetson_state` records the power mode (nvpmodel) and CPU/GPU/EMC clocks with every
result, each ``"unknown"`` with a reason where not readable.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from .base import EnergyMeter
from .sampling import RailSampler

__all__ = [
    "DEFAULT_I2C_ROOT",
    "JetsonMeter",
    "JetsonRail",
    "TOTAL_RAILS",
    "discover_rails",
    "jetson_state",
]

logger = logging.getLogger(__name__)

DEFAULT_I2C_ROOT = "/sys/bus/i2c/drivers"
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0")
SAMPLE_INTERVAL_S = 0.02
MIN_WINDOW_S = 0.5
MIN_SAMPLES = 10
GAIN_ERROR = 0.01

Reader = Callable[[Path], str]


def _read_text(path: Path) -> str:
    return path.read_text()


@dataclasses.dataclass(frozen=True)
class JetsonRail:
    """One INA3221 channel: its files, in ``layout`` ``hwmon`` or ``iio``."""

    name: str
    layout: str
    power: Path | None  # mW (iio only)
    voltage: Path | None  # mV
    current: Path | None  # mA

    def watts(self, reader: Reader) -> float:
        if self.power is not None:
            return float(reader(self.power).strip()) / 1e3
        assert self.voltage is not None and self.current is not None
        return float(reader(self.voltage).strip()) * float(reader(self.current).strip()) / 1e6


def discover_rails(root: Path, reader: Reader = _read_text) -> tuple[list[JetsonRail], list[str]]:
    """(rails with every file present, names or channels of rails with files missing)."""
    rails: list[JetsonRail] = []
    missing: list[str] = []
    for folder in sorted(root.glob("ina3221/*/hwmon/hwmon*")):
        for label in sorted(folder.glob("in*_label")):
            channel = re.fullmatch(r"in([1-3])_label", label.name)
            if channel is None:
                continue  # in7_label names the shunt-voltage sum, not a rail
            c = channel.group(1)
            name = reader(label).strip()
            voltage, current = folder / f"in{c}_input", folder / f"curr{c}_input"
            if voltage.exists() and current.exists():
                rails.append(JetsonRail(name, "hwmon", None, voltage, current))
            else:
                missing.append(name)
    for folder in sorted(root.glob("ina3221x/*/iio:device*")):
        for label in sorted(folder.glob("rail_name_*")):
            c = label.name.rsplit("_", 1)[-1]
            name = reader(label).strip()
            power = folder / f"in_power{c}_input"
            voltage, current = folder / f"in_voltage{c}_input", folder / f"in_current{c}_input"
            if power.exists():
                rails.append(JetsonRail(name, "iio", power, None, None))
            elif voltage.exists() and current.exists():
                rails.append(JetsonRail(name, "iio", None, voltage, current))
            else:
                missing.append(name)
    return rails, missing


class JetsonMeter(EnergyMeter):
    """Energy of a Jetson module from its INA3221 rails (sysfs hwmon or iio)."""

    source = "jetson"

    def __init__(
        self,
        root: str | Path = DEFAULT_I2C_ROOT,
        *,
        reader: Reader = _read_text,
        sample_interval: float = SAMPLE_INTERVAL_S,
        min_window_seconds: float = MIN_WINDOW_S,
        min_samples: int = MIN_SAMPLES,
        total_rails: tuple[str, ...] = TOTAL_RAILS,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.sample_interval = sample_interval
        self.min_window_seconds = min_window_seconds
        self.min_samples = min_samples
        self.total_rails = total_rails
        self._reader = reader
        self._rails: list[JetsonRail] | None = None
        self.missing: list[str] = []
        self._sampler: RailSampler | None = None
        self._breakdown: dict[str, float] = {}

    def rails(self) -> list[JetsonRail]:
        if self._rails is None:
            self._rails, self.missing = discover_rails(self.root, self._reader)
        return self._rails

    @property
    def total_rail(self) -> str | None:
        names = {r.name for r in self.rails()}
        return next((t for t in self.total_rails if t in names), None)

    def available(self) -> tuple[bool, str]:
        try:
            rails = self.rails()
        except PermissionError as exc:
            return False, f"permission denied reading the INA3221 rails under {self.root}: {exc}"
        except OSError as exc:
            return False, f"INA3221 rails under {self.root} unreadable: {exc}"
        if not rails:
            why = f"; rails with missing files: {', '.join(self.missing)}" if self.missing else ""
            return False, (f"no INA3221 rails under {self.root} (not a Jetson, or the ina3221"
                           f" driver is not bound){why}")
        for rail in rails:
            try:
                rail.watts(self._reader)
            except PermissionError:
                path = rail.power or rail.current
                return False, (f"permission denied reading {path}: run as root or grant read"
                               " access to the INA3221 sysfs files")
            except (OSError, ValueError) as exc:
                return False, f"cannot read rail {rail.name}: {exc}"
        return True, "INA3221 rails " + ", ".join(r.name for r in rails)

    def _read_rails(self) -> dict[str, float]:
        return {rail.name: rail.watts(self._reader) for rail in self.rails()}

    def _begin(self) -> None:
        self._sampler = RailSampler(self._read_rails, self._clock, self.sample_interval,
                                    name="jetson")
        self._sampler.start()

    def _end(self) -> dict[str, float]:
        if self._sampler is None:
            raise RuntimeError("Jetson window ended without a start")
        joules = self._sampler.stop()
        self._samples = self._sampler.samples
        self._sampler = None
        total = self.total_rail
        if total is None:
            self._breakdown = {}
            return joules
        self._breakdown = {r: j for r, j in joules.items() if r != total}
        return {total: joules[total]}

    def _breakdown_joules(self) -> dict[str, float]:
        return dict(self._breakdown)

    def _too_short(self, domains_j: Mapping[str, float], window: float) -> str | None:
        reason = super()._too_short(domains_j, window)
        if reason is not None:
            return reason
        samples = getattr(self, "_samples", 0)
        if samples < self.min_samples:
            return (f"only {samples} power samples (< {self.min_samples}) in the window;"
                    " run more inferences")
        return None

    def _read_uncertainty(self, domains_j: Mapping[str, float], window: float) -> float:
        joules = sum(domains_j.values())
        return 2.0 * joules / window * self.sample_interval + GAIN_ERROR * joules

    def _method(self) -> str:
        rails = self.rails()
        layout = rails[0].layout if rails else "sysfs"
        total = self.total_rail
        counted = total if total else "+".join(r.name for r in rails)
        note = (f"Jetson INA3221 ({layout}) rail {counted} sampled every"
                f" {self.sample_interval * 1e3:.0f} ms, trapezoid rule")
        if self.missing:
            note += f"; rails missing and not read: {', '.join(self.missing)}"
        return note

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None


NVPMODEL_STATUS = Path("/var/lib/nvpmodel/status")
NVPMODEL_CONF = Path("/etc/nvpmodel.conf")
DEVFREQ_ROOT = Path("/sys/class/devfreq")
GPU_DEVFREQ = ("ga10b", "gv11b", "gp10b", "gb10b", "gpu")
EMC_RATE = (Path("/sys/kernel/debug/bpmp/debug/clk/emc/rate"),
            Path("/sys/kernel/debug/clk/emc/clk_rate"))
TEGRA_MARKER = Path("/etc/nv_tegra_release")


def jetson_state(
    *,
    status: Path | None = None,
    conf: Path | None = None,
    devfreq: Path | None = None,
    emc: tuple[Path, ...] | None = None,
    marker: Path | None = None,
    run: Callable[[list[str]], str] | None = None,
) -> dict | None:
    """Power mode and GPU/EMC clocks of a Jetson, or None when this is not one. Never raises.

    CPU clocks come from cpufreq (:mod:`graphopt.backends.cpufreq`), recorded for every result.
    """
    marker = TEGRA_MARKER if marker is None else marker
    status = NVPMODEL_STATUS if status is None else status
    if not marker.exists() and not status.exists():
        return None
    return {
        "power_mode": _power_mode(status, NVPMODEL_CONF if conf is None else conf, run),
        "gpu_clock": _gpu_clock(DEVFREQ_ROOT if devfreq is None else devfreq),
        "emc_clock": _emc_clock(EMC_RATE if emc is None else emc),
    }


def _power_mode(status: Path, conf: Path, run: Callable[[list[str]], str] | None) -> dict:
    try:
        match = re.search(r"pmode:(\d+)", status.read_text())
        if match is None:
            raise ValueError(f"{status}: no pmode")
        mode_id = int(match.group(1))
        names = dict(re.findall(r"POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>",
                                conf.read_text())) if conf.exists() else {}
        return {"id": mode_id, "name": names.get(str(mode_id), "unknown"),
                "source": str(status)}
    except (OSError, ValueError) as exc:
        file_error = str(exc)
    runner = run or _run_nvpmodel
    try:
        out = runner(["nvpmodel", "-q"])
        match = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", out)
        if match:
            return {"id": int(match.group(2)), "name": match.group(1), "source": "nvpmodel -q"}
        return {"id": "unknown", "reason": f"{file_error}; nvpmodel -q gave {out.strip()!r}"}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"id": "unknown", "reason": f"{file_error}; nvpmodel -q: {exc}"}


def _run_nvpmodel(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        raise FileNotFoundError(f"{cmd[0]} not on PATH")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True).stdout


def _gpu_clock(root: Path) -> dict:
    try:
        devices = sorted(root.iterdir()) if root.is_dir() else []
    except OSError as exc:
        return {"cur_mhz": "unknown", "reason": f"{root}: {exc}"}
    for device in devices:
        if any(key in device.name for key in GPU_DEVFREQ):
            try:
                return {"device": device.name,
                        **{f"{k}_mhz": int((device / f"{k}_freq").read_text()) / 1e6
                           for k in ("cur", "min", "max")}}
            except (OSError, ValueError) as exc:
                return {"cur_mhz": "unknown", "reason": f"{device}: {exc}"}
    return {"cur_mhz": "unknown", "reason": f"no GPU devfreq device under {root}"}


def _emc_clock(paths: tuple[Path, ...]) -> dict:
    reasons = []
    for path in paths:
        try:
            return {"cur_mhz": int(path.read_text()) / 1e6, "source": str(path)}
        except (OSError, ValueError) as exc:
            reasons.append(f"{path}: {exc}")
    return {"cur_mhz": "unknown", "reason": "; ".join(reasons) + " (debugfs, root only)"}
