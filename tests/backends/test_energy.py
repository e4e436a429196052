"""Energy meters: RAPL on a fake powercap tree, NVML through a fake pynvml, the model estimate."""

from __future__ import annotations

import dataclasses
import sys
import time
import types
from pathlib import Path

import pytest

from graphopt.backends.energy import (
    HOROWITZ_45NM,
    EnergyReading,
    ModelEnergyEstimator,
    NvmlMeter,
    RaplMeter,
    measure_energy,
    probe_meters,
    select_meter,
)
from graphopt.backends.energy.model import priced_macs
from graphopt.cost import ModelCost, NodeCost

RESOLUTION = 2.0**-14
BIG_RANGE = 262_143_328_850


class FakeClock:
    """Seconds that move only when the test (or the fake sleep) says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class PowercapTree:
    """A fake /sys/class/powercap: two-socket-style zones plus ones the meter must ignore."""

    def __init__(self, root: Path, *, max_range: int = BIG_RANGE) -> None:
        self.root = root
        self.zones = {
            "intel-rapl:0": "package-0",
            "intel-rapl:0:0": "core",
            "intel-rapl:0:1": "dram",
            "intel-rapl:1": "psys",
            "intel-rapl-mmio:0": "package-0",
        }
        for zone, name in self.zones.items():
            path = root / zone
            path.mkdir(parents=True)
            (path / "name").write_text(name + "\n")
            (path / "max_energy_range_uj").write_text(f"{max_range}\n")
            (path / "energy_uj").write_text("0\n")

    def set(self, zone: str, microjoules: int) -> None:
        (self.root / zone / "energy_uj").write_text(f"{microjoules}\n")

    def add(self, zone: str, microjoules: int) -> None:
        current = int((self.root / zone / "energy_uj").read_text())
        self.set(zone, current + microjoules)

    def spend(self, package_uj: int, dram_uj: int) -> None:
        self.add("intel-rapl:0", package_uj)
        self.add("intel-rapl:0:0", package_uj // 2)  # core: inside package, never summed
        self.add("intel-rapl:0:1", dram_uj)
        self.add("intel-rapl:1", 10 * package_uj)  # psys: never summed
        self.add("intel-rapl-mmio:0", package_uj)


@pytest.fixture
def tree(tmp_path: Path) -> PowercapTree:
    return PowercapTree(tmp_path / "powercap")


def test_rapl_reads_package_and_dram_only(tree):
    clock = FakeClock()
    meter = RaplMeter(tree.root, clock=clock)
    ok, why = meter.available()
    assert ok, why
    assert [z.domain for z in meter.zones()] == ["package-0", "dram-0"]
    tree.spend(1_000_000, 200_000)
    meter.start()
    tree.spend(20_000_000, 2_000_000)  # 20 J package, 2 J DRAM
    clock.now += 2.0
    reading = meter.stop(inferences=100)
    assert reading.source == "rapl"
    assert reading.joules_per_inference == pytest.approx(0.22)
    assert reading.domains == pytest.approx({"package-0": 0.2, "dram-0": 0.02})
    assert reading.window_seconds == pytest.approx(2.0)
    # Two reads per domain, each off by one ~1 ms update: 2 x (10 W + 1 W) x 1 ms per window.
    assert reading.uncertainty_joules == pytest.approx(2 * (0.010 + 0.001) / 100)
    assert "no idle baseline" in reading.note
    assert reading.to_dict()["domains"] == reading.domains


def test_rapl_wraparound_uses_max_energy_range(tmp_path):
    tree = PowercapTree(tmp_path / "powercap", max_range=1_000_000_000)
    clock = FakeClock()
    meter = RaplMeter(tree.root, clock=clock)
    tree.set("intel-rapl:0", 999_000_000)
    tree.set("intel-rapl:0:1", 10)
    meter.start()
    tree.set("intel-rapl:0", 4_000_000)  # wrapped: 1 J to the top, then 4 J
    tree.set("intel-rapl:0:1", 1_000_010)
    clock.now += 1.0
    reading = meter.stop(inferences=1)
    assert reading.domains["package-0"] == pytest.approx(5.0)
    assert reading.joules_per_inference == pytest.approx(6.0)


def test_rapl_permission_denied_explains_cve(tree):
    def root_only(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    ok, why = RaplMeter(tree.root, reader=root_only).available()
    assert not ok
    assert "permission denied" in why and "CVE-2020-8694" in why
    assert "intel-rapl:0" in why


def test_rapl_without_zones_is_unavailable(tmp_path):
    ok, why = RaplMeter(tmp_path / "no-powercap").available()
    assert not ok and "no RAPL zones" in why


def test_rapl_short_window_is_flagged_not_zero(tree):
    clock = FakeClock()
    meter = RaplMeter(tree.root, clock=clock)
    meter.start()
    tree.spend(500_000, 0)
    clock.now += 0.02  # 20 ms < 100 ms
    reading = meter.stop(inferences=10)
    assert reading.joules_per_inference is None and reading.uncertainty_joules is None
    assert "shorter than" in reading.note and "20.0 ms" in reading.note


def test_rapl_too_little_energy_is_flagged(tree):
    clock = FakeClock()
    meter = RaplMeter(tree.root, clock=clock)
    meter.start()
    tree.spend(10_000, 0)  # 10 mJ < 1000 counter units of 61 uJ
    clock.now += 0.5
    reading = meter.stop(inferences=10)
    assert reading.joules_per_inference is None
    assert "counter units" in reading.note


def test_rapl_idle_baseline_is_subtracted_with_its_spread(tree):
    clock = FakeClock()
    idle_watts = iter([4.0, 6.0, 4.0, 6.0, 5.0])

    def idle_sleep(seconds: float) -> None:
        clock.now += seconds
        tree.spend(int(next(idle_watts) * seconds * 1e6), 0)

    meter = RaplMeter(tree.root, clock=clock, sleep=idle_sleep)
    baseline = meter.idle_baseline(seconds=1.0, repeats=5)
    assert baseline.watts["package-0"] == pytest.approx(5.0)
    assert baseline.watts_std["package-0"] == pytest.approx(1.0)  # sample std of 4,6,4,6,5
    assert baseline.watts["dram-0"] == 0.0
    meter.start()
    tree.spend(30_000_000, 0)  # 30 J over 2 s, 10 J of it idle
    clock.now += 2.0
    reading = meter.stop(inferences=4)
    assert reading.joules_per_inference == pytest.approx(20.0 / 4)
    counter = 2 * (15.0 * 1e-3 + RESOLUTION)  # package at 15 W; DRAM idle at resolution
    assert reading.uncertainty_joules == pytest.approx((counter + 1.0 * 2.0) / 4)
    assert "net of idle baseline 5.00 W" in reading.note


@pytest.mark.parametrize(
    ("seconds", "repeats", "planned"),
    [(0.25, 5, (0.25, 2)), (0.05, 5, (0.2, 2)), (1.0, 5, (1.0, 5))],
)
def test_idle_baseline_windows_never_shorter_than_the_minimum(tree, seconds, repeats, planned):
    clock = FakeClock()
    windows: list[float] = []

    def idle_sleep(duration: float) -> None:
        windows.append(duration)
        clock.now += duration
        tree.spend(int(5.0 * duration * 1e6), 0)

    meter = RaplMeter(tree.root, clock=clock, sleep=idle_sleep)
    baseline = meter.idle_baseline(seconds, repeats=repeats)
    assert (baseline.seconds, baseline.repeats) == pytest.approx(planned)
    assert len(windows) == planned[1] and min(windows) >= 0.1 - 1e-12
    assert baseline.watts["package-0"] == pytest.approx(5.0)


def test_stop_without_start_is_an_error(tree):
    with pytest.raises(RuntimeError):
        RaplMeter(tree.root).stop(1)


class FakeNvml(types.ModuleType):
    """The slice of pynvml the meter uses, with call accounting."""

    class NVMLError(Exception):
        pass

    def __init__(self, *, counter: bool = True, watts: float = 200.0) -> None:
        super().__init__("pynvml")
        self.counter = counter
        self.energy_mj = 5_000_000
        self.milliwatts = int(watts * 1e3)
        self.inits = self.shutdowns = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetName(self, handle: str) -> str:
        return "NVIDIA T4"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.counter:
            raise self.NVMLError("Not Supported")
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return self.milliwatts


def test_nvml_energy_counter_path(monkeypatch):
    fake = FakeNvml(counter=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    clock = FakeClock()
    meter = NvmlMeter(0, clock=clock)
    ok, why = meter.available()
    assert ok and "counter" in why and "NVIDIA T4" in why
    meter.start()
    fake.energy_mj += 150_000  # 150 J
    clock.now += 1.5
    reading = meter.stop(inferences=300)
    assert reading.source == "nvml"
    assert reading.joules_per_inference == pytest.approx(0.5)
    assert reading.domains == pytest.approx({"gpu-0": 0.5})
    # 100 W average, each read up to one 100 ms counter update stale.
    assert reading.uncertainty_joules == pytest.approx(2 * 100.0 * 0.1 / 300)
    assert "total-energy counter" in reading.note
    assert fake.inits == fake.shutdowns == 2


def test_nvml_falls_back_to_power_sampling(monkeypatch):
    fake = FakeNvml(counter=False, watts=200.0)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = NvmlMeter(0, sample_interval=0.005, min_window_seconds=0.05)
    ok, why = meter.available()
    assert ok and "power" in why
    meter.start()
    time.sleep(0.12)
    reading = meter.stop(inferences=10)
    assert meter.mode == "power"
    # Constant 200 W integrated by the trapezoid rule over the sampled span.
    assert reading.joules_per_inference == pytest.approx(200.0 * reading.window_seconds / 10,
                                                         rel=0.03)
    assert "sampled every 5 ms" in reading.note
    assert fake.inits == fake.shutdowns == 2


def test_nvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    ok, why = NvmlMeter().available()
    assert not ok and "nvidia-ml-py" in why


def test_nvml_init_failure_is_a_reason(monkeypatch):
    fake = FakeNvml()

    def no_driver() -> None:
        raise FakeNvml.NVMLError("Driver Not Loaded")

    fake.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    ok, why = NvmlMeter().available()
    assert not ok and "Driver Not Loaded" in why


TINY = ModelCost(nodes=1, params=100, macs=1000, weight_bytes=400, activation_bytes=100,
                 per_node=())


def test_model_estimate_matches_the_table_by_hand_at_45nm():
    reading = ModelEnergyEstimator(process_nm=45.0).estimate(TINY, "fp32")
    compute = 1000 * (3.7 + 0.9) * 1e-12  # 1000 MACs x (mult + add)
    weights = 400 * (640 / 4) * 1e-12  # DRAM, 160 pJ/byte
    activations = 100 * 2 * (5 / 4) * 1e-12  # written and read once via SRAM, 1.25 pJ/byte
    assert reading.domains == pytest.approx(
        {"compute": compute, "weights": weights, "activations": activations}
    )
    assert reading.joules_per_inference == pytest.approx(compute + weights + activations)
    assert reading.source == "model:compute-bound" and reading.uncertainty_joules is None
    assert "not measured" in reading.note and "Horowitz" in reading.note
    assert "lower bound" in reading.note


def test_model_estimate_scales_logic_to_the_node_but_not_dram():
    at7 = ModelEnergyEstimator().estimate(TINY, "int8", batch_size=4)
    scale = 7 / 45
    assert at7.domains["compute"] == pytest.approx(1000 * (0.2 + 0.03) * 1e-12 * scale)
    assert at7.domains["weights"] == pytest.approx(400 * 160e-12 / 4)  # shared by the batch
    assert at7.domains["activations"] == pytest.approx(100 * 2 * 1.25e-12 * scale)
    assert at7.inferences == 4
    assert "7 nm" in at7.note


def test_bf16_is_priced_as_fp16():
    estimator = ModelEnergyEstimator(process_nm=45.0)
    bf16 = estimator.estimate(TINY, "bf16")
    assert bf16.domains["compute"] == pytest.approx(1000 * (1.1 + 0.4) * 1e-12)
    fp16 = estimator.estimate(TINY, "fp16")
    assert bf16.domains == fp16.domains
    assert bf16.joules_per_inference == fp16.joules_per_inference
    assert "priced as fp16" in bf16.note
    assert HOROWITZ_45NM.mult_pj["fp16"] == 1.1


def test_model_estimate_rejects_unknown_precision():
    with pytest.raises(ValueError, match="unknown precision"):
        ModelEnergyEstimator().estimate(TINY, "fp8")


def _node(precision: str, arithmetic: str, macs: int) -> NodeCost:
    return NodeCost("n", "Conv", 0, macs, 0, 0, "", precision, arithmetic)


# 600 MACs on int8 QDQ, 300 weight-only (float arithmetic), 100 float: a mixed graph.
MIXED = ModelCost(nodes=3, params=100, macs=1000, weight_bytes=400, activation_bytes=100,
                  per_node=(_node("int8", "int8", 600), _node("int8-weights", "fp32", 300),
                            _node("fp32", "fp32", 100)), precision="mixed")
INT8_MAC, FP32_MAC, FP16_MAC = 0.2 + 0.03, 3.7 + 0.9, 1.1 + 0.4  # pJ at 45 nm


def test_each_node_is_priced_at_its_own_precision():
    estimator = ModelEnergyEstimator(process_nm=45.0)
    reading = estimator.estimate(MIXED)
    assert reading.domains["compute"] == pytest.approx((600 * INT8_MAC + 400 * FP32_MAC) * 1e-12)
    assert "MACs 600 at int8, 400 at fp32 (each node at its own precision)" in reading.note
    for same in ("fp32", "mixed", "int8-weights"):
        assert estimator.estimate(MIXED, same).domains == reading.domains
    assert (estimator.estimate(MIXED, "int8").domains["compute"]
            < reading.domains["compute"]
            < estimator.estimate(TINY, "fp32").domains["compute"])


def test_runtime_lowering_keeps_int8_nodes_and_int8_prices_all():
    estimator = ModelEnergyEstimator(process_nm=45.0)
    bf16 = estimator.estimate(MIXED, "bf16")
    assert bf16.domains["compute"] == pytest.approx((600 * INT8_MAC + 400 * FP16_MAC) * 1e-12)
    assert "400 at bf16 priced as fp16" in bf16.note and "lowered to bf16" in bf16.note
    int8 = estimator.estimate(MIXED, "int8")
    assert int8.domains["compute"] == pytest.approx(1000 * INT8_MAC * 1e-12)
    assert "1,000 at int8 (every MAC run in int8)" in int8.note


def test_macs_no_node_accounts_for_count_as_fp32():
    partial = dataclasses.replace(MIXED, macs=1500)
    assert priced_macs(partial) == {"int8": 600, "fp32": 900}
    assert priced_macs(partial, "fp16") == {"int8": 600, "fp16": 900}


def test_benchmark_bound_lowers_only_when_the_runtime_ran_another_precision():
    from graphopt.backends.benchmark import energy_per_inference as energy

    fp16_graph = ModelCost(nodes=2, params=0, macs=1000, weight_bytes=0, activation_bytes=0,
                           per_node=(_node("fp16", "fp16", 900), _node("fp32", "fp32", 100)),
                           precision="fp16")

    def bound(cost, precision):
        return energy("model", "cpu", cost, precision, 1, (None, []), None, 1, None)[1]

    assert "900 at fp16, 100 at fp32" in bound(fp16_graph, "fp16").note  # the graph's own
    assert "1,000 at bf16" in bound(fp16_graph, "bf16").note  # OpenVINO's bf16 hint
    assert "600 at int8, 400 at fp32" in bound(MIXED, "mixed").note
    assert "600 at int8, 400 at fp32" in bound(MIXED, "unknown").note
    assert priced_macs(fp16_graph) == {"fp16": 900, "fp32": 100}


def test_select_prefers_a_usable_rapl(tree):
    meter, reasons = probe_meters("auto", factories={"rapl": lambda: RaplMeter(tree.root)})
    assert isinstance(meter, RaplMeter) and reasons == []


def test_select_gives_reasons_when_nothing_is_usable(tree, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)

    def denied(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return path.read_text()

    factories = {"rapl": lambda: RaplMeter(tree.root, reader=denied)}
    meter, reasons = probe_meters("auto", device="cuda", factories=factories)
    assert meter is None
    assert reasons[0].startswith("nvml: nvidia-ml-py")
    assert reasons[1].startswith("rapl: permission denied")


def test_select_model_and_none_choose_no_meter():
    assert probe_meters("model") == (None, ["measurement not requested (--energy model)"])
    assert select_meter("none") is None
    with pytest.raises(ValueError):
        select_meter("watts-up")


def test_reading_is_a_plain_record():
    reading = EnergyReading(1.0, 0.1, "rapl", {"package-0": 1.0}, 2.0, 10, "x")
    assert reading.to_dict() == {
        "joules_per_inference": 1.0, "uncertainty_joules": 0.1, "source": "rapl",
        "domains": {"package-0": 1.0}, "window_seconds": 2.0, "inferences": 10, "note": "x",
        "power_watts": None, "power_origin": None, "breakdown": {},
    }


def test_measure_energy_runs_calls_for_the_window(tree):
    clock = FakeClock()
    meter = RaplMeter(tree.root, clock=clock)

    def call() -> None:  # one batch: 10 ms, 0.5 J package
        clock.now += 0.01
        tree.spend(500_000, 0)

    reading = measure_energy(meter, call, seconds=1.0, batch_size=2)
    assert reading.inferences == 200  # 100 calls of 2
    assert reading.joules_per_inference == pytest.approx(0.25)
    with pytest.raises(ValueError, match="minimum window"):
        measure_energy(meter, call, seconds=0.01)


def test_power_sampler_integrates_by_trapezoid_within_the_window():
    from graphopt.backends.energy.nvml import _PowerSampler, _trapezoid

    assert _trapezoid([0.0, 1.0, 3.0], [0.0, 10.0, 20.0]) == pytest.approx(5.0 + 30.0)
    clock = FakeClock()
    watts = iter([100.0, 300.0])
    sampler = _PowerSampler(lambda: next(watts), clock, interval=3600.0)
    sampler.start()
    clock.now += 2.0
    assert sampler.stop() == pytest.approx((100.0 + 300.0) / 2 * 2.0)


def test_time_x_power_estimate_by_hand():
    from graphopt.backends.energy import CpuPower, TimePowerEstimator

    power = CpuPower(watts_per_cpu=5.0, idle_share=0.2, origin="test table")
    reading = TimePowerEstimator(power=power).estimate(
        busy_seconds=3.0, wall_seconds=2.0, inferences=100, cpus_in_use=2)
    # 3 CPU-s busy at 5 W, 1 CPU-s waiting at 1 W, over 100 inferences.
    assert reading.domains == pytest.approx({"cpu-active": 0.15, "cpu-idle": 0.01})
    assert reading.joules_per_inference == pytest.approx(0.16)
    assert reading.source == "estimate:time-x-power"
    assert reading.power_watts == 5.0 and reading.power_origin == "test table"
    assert reading.uncertainty_joules is None
    assert "not measured" in reading.note and "test table" in reading.note
    with pytest.raises(ValueError):
        TimePowerEstimator(power=power).estimate(busy_seconds=1.0, wall_seconds=1.0,
                                                 inferences=0, cpus_in_use=1)


def test_estimate_ranks_the_slower_run_as_costlier_unlike_the_bound():
    from graphopt.backends.energy import TimePowerEstimator, cpu_power

    estimator = TimePowerEstimator(power=cpu_power(None))
    fp32 = estimator.estimate(busy_seconds=2.0, wall_seconds=1.0, inferences=40, cpus_in_use=2)
    int8 = estimator.estimate(busy_seconds=2.0, wall_seconds=1.0, inferences=20, cpus_in_use=2)
    assert int8.joules_per_inference == pytest.approx(2 * fp32.joules_per_inference)
    bound = ModelEnergyEstimator()
    assert (bound.estimate(TINY, "int8").joules_per_inference
            < bound.estimate(TINY, "fp32").joules_per_inference)  # the bound says the opposite


def test_cpu_power_from_our_table_codecarbon_csv_or_a_labelled_default(tmp_path):
    from graphopt.backends.energy import DEFAULT_WATTS_PER_CPU, cpu_power

    ours = cpu_power("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", codecarbon_csv=False)
    assert ours.watts_per_cpu == pytest.approx(150.0 / 40)
    assert ours.tdp_watts == 150.0 and "graphopt table" in ours.origin
    table = tmp_path / "cpu_power.csv"
    table.write_text("Name,TDP\nIntel Xeon Gold 6248,165\nIntel Xeon Gold 6130,125\n")
    carbon = cpu_power("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", codecarbon_csv=table)
    assert carbon.watts_per_cpu == pytest.approx(165.0 / 40)
    assert "codecarbon" in carbon.origin
    # codecarbon knows the TDP but not the CPU count: our count, else the default
    assert cpu_power("Intel Xeon Gold 6130", codecarbon_csv=table).watts_per_cpu == \
        pytest.approx(125 / 32)
    masked = cpu_power("Intel(R) Xeon(R) Processor", codecarbon_csv=table)
    assert masked.watts_per_cpu == DEFAULT_WATTS_PER_CPU and masked.tdp_watts is None
    assert "default" in masked.origin and "no TDP known" in masked.origin
    assert "unnamed CPU" in cpu_power(None, codecarbon_csv=False).origin


def test_benchmark_energy_falls_back_to_the_estimate_with_the_bound_beside():
    from graphopt.backends.benchmark import busy_seconds
    from graphopt.backends.benchmark import energy_per_inference as energy

    busy = busy_seconds([((0.0, 0.0, 0.0), (2.0, 0.0, 3.0))], inferences=60)
    assert busy == (3.0, 2.0, 60)
    reasons = ["rapl: no RAPL zones"]
    reading, bound, why = energy("auto", "cpu", TINY, "fp32", 1, (None, reasons), busy, 2,
                                 "Intel(R) Xeon(R) Processor")
    assert reading.source == "estimate:time-x-power" and reading.power_watts == 4.0
    assert bound.source == "model:compute-bound"
    assert why == reasons
    measured = EnergyReading(0.5, 0.01, "rapl", {"package-0": 0.5}, 2.0, 60)
    reading, bound, _ = energy("auto", "cpu", TINY, "fp32", 1, (measured, []), busy, 2, None)
    assert reading is measured and bound.source == "model:compute-bound"
    assert energy("none", "cpu", TINY, "fp32", 1, (None, []), busy, 2, None)[:2] == (None, None)
    _, _, why = energy("model", "cuda", TINY, "fp32", 1, (None, []), busy, 2, None)
    assert "host CPU only" in why[-1]
