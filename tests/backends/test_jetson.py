"""Jetson energy: INA3221 rails on fake Orin (hwmon) and Xavier (iio) sysfs trees, a fake jtop.

The trees follow the documented layouts (kernel ``Documentation/hwmon/ina3221.rst`` for
hwmon, the ``ina3221x`` iio driver of Jetson Linux 32 for Xavier); nothing here ran on a
Jetson.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from graphopt.backends.energy import JetsonMeter, JtopMeter, jetson_state, probe_meters
from graphopt.backends.energy.jetson import discover_rails
from graphopt.backends.energy.jtop import jtop_state

FAST = {"sample_interval": 0.005, "min_window_seconds": 0.05, "min_samples": 3}


def orin_tree(root: Path, *, vdd_in_ma: int = 1200) -> Path:
    """Orin NX/Nano: one INA3221 at 1-0040, hwmon, rails VDD_IN, VDD_CPU_GPU_CV, VDD_SOC."""
    hwmon = root / "ina3221" / "1-0040" / "hwmon" / "hwmon3"
    hwmon.mkdir(parents=True)
    for channel, (label, millivolts, milliamps) in enumerate(
        [("VDD_IN", 5000, vdd_in_ma), ("VDD_CPU_GPU_CV", 5000, 400), ("VDD_SOC", 5000, 300)],
        start=1,
    ):
        (hwmon / f"in{channel}_label").write_text(label + "\n")
        (hwmon / f"in{channel}_input").write_text(f"{millivolts}\n")
        (hwmon / f"curr{channel}_input").write_text(f"{milliamps}\n")
        (hwmon / f"in{channel + 3}_input").write_text("1234\n")  # shunt voltage, uV: not a rail
    (hwmon / "in7_label").write_text("sum of shunt voltages\n")  # newer kernels: not a rail
    (hwmon / "in7_input").write_text("3000\n")
    return hwmon


def xavier_tree(root: Path) -> None:
    """AGX Xavier on Jetson Linux 32: two ina3221x iio devices, power in mW, no input rail."""
    rails = {"1-0040/iio:device0": [("GPU", 2000), ("CPU", 1500), ("SOC", 1000)],
             "1-0041/iio:device1": [("CV", 0), ("VDDRQ", 300), ("SYS5V", 1200)]}
    for folder, channels in rails.items():
        device = root / "ina3221x" / folder
        device.mkdir(parents=True)
        for index, (name, milliwatts) in enumerate(channels):
            (device / f"rail_name_{index}").write_text(name + "\n")
            (device / f"in_power{index}_input").write_text(f"{milliwatts}\n")
            (device / f"in_voltage{index}_input").write_text("19000\n")
            (device / f"in_current{index}_input").write_text(f"{milliwatts * 1000 // 19000}\n")


def test_orin_counts_vdd_in_and_keeps_subrails_in_the_breakdown(tmp_path):
    orin_tree(tmp_path)
    meter = JetsonMeter(tmp_path, **FAST)
    ok, why = meter.available()
    assert ok, why
    assert why == "INA3221 rails VDD_IN, VDD_CPU_GPU_CV, VDD_SOC"  # in7 is not a rail
    meter.start()
    time.sleep(0.1)
    reading = meter.stop(inferences=10)
    assert reading.source == "jetson"
    # VDD_IN = 5 V x 1.2 A = 6 W, constant: the trapezoid gives 6 W x the sampled span.
    assert reading.domains == pytest.approx({"VDD_IN": 6.0 * reading.window_seconds / 10},
                                            rel=0.05)
    assert set(reading.breakdown) == {"VDD_CPU_GPU_CV", "VDD_SOC"}
    assert reading.breakdown["VDD_CPU_GPU_CV"] == pytest.approx(
        2.0 * reading.window_seconds / 10, rel=0.05)
    assert reading.joules_per_inference == pytest.approx(sum(reading.domains.values()))
    assert "hwmon" in reading.note and "VDD_IN" in reading.note
    assert reading.uncertainty_joules > 0


def test_xavier_iio_sums_every_rail_without_an_input_rail(tmp_path):
    xavier_tree(tmp_path)
    meter = JetsonMeter(tmp_path, **FAST)
    assert meter.available()[0]
    assert meter.total_rail is None
    meter.start()
    time.sleep(0.1)
    reading = meter.stop(inferences=1)
    assert set(reading.domains) == {"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"}
    assert reading.joules_per_inference == pytest.approx(6.0 * reading.window_seconds, rel=0.05)
    assert reading.domains["GPU"] == pytest.approx(2.0 * reading.window_seconds, rel=0.05)
    assert reading.breakdown == {}
    assert "iio" in reading.note


def test_xavier_without_power_files_uses_voltage_times_current(tmp_path):
    xavier_tree(tmp_path)
    for path in tmp_path.rglob("in_power*_input"):
        path.unlink()
    rails, missing = discover_rails(tmp_path)
    assert missing == [] and all(r.power is None for r in rails)
    gpu = next(r for r in rails if r.name == "GPU")
    assert gpu.watts(lambda p: p.read_text()) == pytest.approx(19.0 * (2000 // 19) / 1e3)


def test_missing_rail_is_skipped_and_named(tmp_path):
    hwmon = orin_tree(tmp_path)
    (hwmon / "curr3_input").unlink()
    meter = JetsonMeter(tmp_path, **FAST)
    ok, why = meter.available()
    assert ok and "VDD_SOC" not in why
    assert meter.missing == ["VDD_SOC"]
    meter.start()
    time.sleep(0.08)
    reading = meter.stop(inferences=1)
    assert reading.joules_per_inference is not None
    assert "rails missing and not read: VDD_SOC" in reading.note


def test_permission_denied_makes_the_meter_unavailable_with_the_path(tmp_path):
    orin_tree(tmp_path)

    def root_only(path: Path) -> str:
        if path.name.startswith("curr"):
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    ok, why = JetsonMeter(tmp_path, reader=root_only).available()
    assert not ok
    assert "permission denied" in why and "curr1_input" in why


def test_no_rails_is_unavailable(tmp_path):
    ok, why = JetsonMeter(tmp_path / "no-i2c").available()
    assert not ok and "no INA3221 rails" in why


def test_too_short_window_is_flagged(tmp_path):
    orin_tree(tmp_path)
    meter = JetsonMeter(tmp_path, sample_interval=0.005)  # default 0.5 s minimum
    meter.start()
    time.sleep(0.05)
    reading = meter.stop(inferences=5)
    assert reading.joules_per_inference is None and reading.uncertainty_joules is None
    assert "shorter than the jetson minimum" in reading.note


def test_too_few_samples_is_flagged(tmp_path):
    orin_tree(tmp_path)
    meter = JetsonMeter(tmp_path, sample_interval=3600.0, min_window_seconds=0.01,
                        min_samples=10)
    meter.start()
    time.sleep(0.03)
    reading = meter.stop(inferences=5)
    assert reading.joules_per_inference is None
    assert "only 2 power samples" in reading.note


def test_idle_baseline_is_subtracted(tmp_path):
    hwmon = orin_tree(tmp_path, vdd_in_ma=1000)  # idle: 5 W
    meter = JetsonMeter(tmp_path, **FAST)
    baseline = meter.idle_baseline(0.1, repeats=2)
    assert baseline.watts["VDD_IN"] == pytest.approx(5.0, rel=0.01)
    (hwmon / "curr1_input").write_text("1600\n")  # running: 8 W
    meter.start()
    time.sleep(0.1)
    reading = meter.stop(inferences=1)
    assert reading.joules_per_inference == pytest.approx(3.0 * reading.window_seconds, rel=0.1)
    assert "net of idle baseline 5.0" in reading.note


def test_auto_tries_the_jetson_meters_on_a_jetson(tmp_path, monkeypatch):
    from graphopt.backends.energy import select

    orin_tree(tmp_path)
    monkeypatch.setattr(select, "_on_jetson", lambda: True)
    meter, reasons = probe_meters("auto", factories={"jetson": lambda: JetsonMeter(tmp_path)})
    assert isinstance(meter, JetsonMeter) and reasons == []
    monkeypatch.setitem(sys.modules, "jtop", None)
    meter, reasons = probe_meters("jetson", factories={
        "jetson": lambda: JetsonMeter(tmp_path / "none")})
    assert meter is None
    assert reasons[0].startswith("jetson: no INA3221") and "jetson-stats" in reasons[1]


def test_jetson_state_reads_power_mode_and_clocks(tmp_path):
    status = tmp_path / "status"
    status.write_text("pmode:0002 fmode:quiet\n")
    conf = tmp_path / "nvpmodel.conf"
    conf.write_text("< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n"
                    "< POWER_MODEL ID=2 NAME=15W >\n")
    gpu = tmp_path / "devfreq" / "17000000.ga10b"
    gpu.mkdir(parents=True)
    for name, hz in (("cur", 306000000), ("min", 306000000), ("max", 918000000)):
        (gpu / f"{name}_freq").write_text(f"{hz}\n")
    emc = tmp_path / "emc_rate"
    emc.write_text("2133000000\n")
    state = jetson_state(status=status, conf=conf, devfreq=tmp_path / "devfreq", emc=(emc,),
                         marker=tmp_path / "nv_tegra_release")
    assert state["power_mode"] == {"id": 2, "name": "15W", "source": str(status)}
    assert state["gpu_clock"] == {"device": "17000000.ga10b", "cur_mhz": 306.0,
                                  "min_mhz": 306.0, "max_mhz": 918.0}
    assert state["emc_clock"]["cur_mhz"] == 2133.0


def test_jetson_state_unknowns_carry_reasons(tmp_path):
    marker = tmp_path / "nv_tegra_release"
    marker.write_text("# R35 (release), REVISION: 4.1\n")

    def no_nvpmodel(cmd: list[str]) -> str:
        raise FileNotFoundError("nvpmodel not on PATH")

    state = jetson_state(status=tmp_path / "status", conf=tmp_path / "conf",
                         devfreq=tmp_path / "devfreq", emc=(tmp_path / "emc",), marker=marker,
                         run=no_nvpmodel)
    assert state["power_mode"]["id"] == "unknown"
    assert "nvpmodel not on PATH" in state["power_mode"]["reason"]
    assert state["gpu_clock"]["cur_mhz"] == "unknown" and "no GPU devfreq" in \
        state["gpu_clock"]["reason"]
    assert state["emc_clock"]["cur_mhz"] == "unknown" and "root only" in \
        state["emc_clock"]["reason"]
    state = jetson_state(status=tmp_path / "status", marker=marker,
                         run=lambda cmd: "NV Power Mode: MAXN\n0\n", devfreq=tmp_path,
                         emc=())
    assert state["power_mode"] == {"id": 0, "name": "MAXN", "source": "nvpmodel -q"}


def test_not_a_jetson_has_no_state(tmp_path):
    assert jetson_state(status=tmp_path / "s", marker=tmp_path / "m") is None


class FakeJtop:
    """jetson-stats' ``jtop`` client: context manager, ok(), power/nvpmodel/cpu/gpu/memory."""

    instances: list[FakeJtop] = []

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.started = self.closed = False
        self.power = {
            "rail": {"VDD_CPU_GPU_CV": {"volt": 5000, "curr": 400, "power": 2000},
                     "VDD_SOC": {"volt": 5000, "curr": 300, "power": 1500}},
            "tot": {"volt": 5000, "curr": 1200, "power": 6000, "name": "VDD_IN"},
        }
        self.nvpmodel = "MAXN"
        self.cpu = {"cpu": [{"freq": {"cur": 1190400, "min": 729600, "max": 2201600}}]}
        self.gpu = {"ga10b": {"freq": {"cur": 306000, "min": 306000, "max": 1300500}}}
        self.memory = {"EMC": {"cur": 2133000, "min": 204000, "max": 3199000}}
        FakeJtop.instances.append(self)

    def __enter__(self) -> FakeJtop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def ok(self) -> bool:
        return self.started


@pytest.fixture
def fake_jtop(monkeypatch):
    module = types.ModuleType("jtop")
    module.jtop = FakeJtop
    FakeJtop.instances = []
    monkeypatch.setitem(sys.modules, "jtop", module)
    return module


def test_jtop_meter_integrates_the_total_and_keeps_rails(fake_jtop):
    meter = JtopMeter(interval=0.005, min_window_seconds=0.05, min_samples=3)
    ok, why = meter.available()
    assert ok and why == "jetson-stats rails VDD_IN, VDD_CPU_GPU_CV, VDD_SOC"
    meter.start()
    time.sleep(0.1)
    reading = meter.stop(inferences=2)
    meter.close()
    assert reading.source == "jetson"
    assert reading.domains == pytest.approx({"VDD_IN": 6.0 * reading.window_seconds / 2},
                                            rel=0.05)
    assert reading.breakdown["VDD_SOC"] == pytest.approx(1.5 * reading.window_seconds / 2,
                                                         rel=0.05)
    assert "jetson-stats" in reading.note
    assert all(j.closed for j in FakeJtop.instances)


def test_jtop_not_installed_or_service_down(monkeypatch, fake_jtop):
    def down(interval: float = 0.5):
        raise RuntimeError("The jtop.service is not active")

    fake_jtop.jtop = down
    ok, why = JtopMeter().available()
    assert not ok and "jtop.service is not active" in why
    monkeypatch.setitem(sys.modules, "jtop", None)
    ok, why = JtopMeter().available()
    assert not ok and "jetson-stats" in why


def test_jtop_short_window_is_flagged(fake_jtop):
    meter = JtopMeter(interval=0.005)  # 1 s minimum
    meter.start()
    time.sleep(0.02)
    reading = meter.stop(inferences=1)
    meter.close()
    assert reading.joules_per_inference is None and "shorter than" in reading.note


def test_jtop_state_records_mode_and_clocks(fake_jtop):
    state = jtop_state(FakeJtop())
    assert state["power_mode"] == {"name": "MAXN", "source": "jtop"}
    assert state["cpu_clocks"] == [{"cur_mhz": 1190.4, "min_mhz": 729.6, "max_mhz": 2201.6}]
    assert state["gpu_clock"]["ga10b"]["max_mhz"] == 1300.5
    assert state["emc_clock"]["cur_mhz"] == 2133.0
    broken = FakeJtop()
    broken.memory = {}
    assert jtop_state(broken)["emc_clock"]["cur_mhz"] == "unknown"
