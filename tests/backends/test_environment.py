"""Environment capture: content, never raising on unreadable items, no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from graphopt.backends import environment
from graphopt.backends.environment import CPU_FLAGS_OF_INTEREST, capture_environment


def test_captures_machine_software_and_extra():
    env = capture_environment({"threads": 2, "backend": "ort"})
    json.dumps(env)  # JSON-ready
    assert env["extra"] == {"threads": 2, "backend": "ort"}
    assert env["libraries"]["numpy"] == np.__version__
    assert env["libraries"]["graphopt"] == "0.1.0"
    assert all(isinstance(v, str) and v for v in env["libraries"].values())
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["memory_total_bytes"] > 0
    assert env["cpu"]["logical_cores_available"] >= 1


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="Linux /proc only")
def test_cpu_model_and_flags_from_proc_cpuinfo():
    cpu = capture_environment()["cpu"]
    assert cpu["model"]
    assert set(cpu["flags"]) == set(CPU_FLAGS_OF_INTEREST)


def test_parses_a_fake_cpuinfo_and_governor(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n"
        "flags\t\t: fpu avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    governor = tmp_path / "scaling_governor"
    governor.write_text("performance\n")
    monkeypatch.setattr(environment, "CPUINFO", cpuinfo)
    monkeypatch.setattr(environment, "GOVERNOR", governor)
    cpu = capture_environment()["cpu"]
    assert cpu["model"] == "Intel(R) Xeon(R) Platinum 8488C"
    assert cpu["flags"]["amx_int8"] and cpu["flags"]["avx512_vnni"]
    assert not cpu["flags"]["avx512_bf16"] and not cpu["flags"]["hypervisor"]
    assert cpu["scaling_governor"] == "performance"


def test_unreadable_items_are_none_with_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "CPUINFO", tmp_path / "missing-cpuinfo")
    monkeypatch.setattr(environment, "GOVERNOR", tmp_path / "missing-governor")

    def no_affinity(pid: int) -> set[int]:
        raise OSError("sched_getaffinity not permitted")

    monkeypatch.setattr(environment.os, "sched_getaffinity", no_affinity)
    env = capture_environment()
    assert env["cpu"]["flags"] is None
    assert env["cpu"]["scaling_governor"] is None
    assert env["cpu"]["logical_cores_available"] is None
    reasons = env["unavailable"]
    assert "cpu.flags" in reasons and "cpu.model" in reasons
    assert "no cpufreq driver" in reasons["cpu.scaling_governor"]
    assert "not permitted" in reasons["cpu.logical_cores_available"]


def test_missing_library_reported_as_not_installed(monkeypatch):
    monkeypatch.setitem(environment.LIBRARIES, "nonexistent", ("graphopt-no-such-dist",))
    assert capture_environment()["libraries"]["nonexistent"] == "not installed"


def test_no_gpu_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    env = capture_environment()
    assert env["gpus"] is None
    assert "nvidia-ml-py" in env["unavailable"]["gpus"]


def test_gpu_described_through_nvml(monkeypatch):
    class NVMLError(Exception):
        pass

    calls = {"init": 0, "shutdown": 0}
    fake = types.ModuleType("pynvml")
    fake.NVMLError = NVMLError
    fake.NVML_CLOCK_SM = 1
    fake.nvmlInit = lambda: calls.__setitem__("init", calls["init"] + 1)
    fake.nvmlShutdown = lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1)
    fake.nvmlSystemGetDriverVersion = lambda: "580.1"
    fake.nvmlDeviceGetCount = lambda: 1
    fake.nvmlDeviceGetHandleByIndex = lambda i: f"handle{i}"
    fake.nvmlDeviceGetName = lambda h: b"NVIDIA A10G"
    fake.nvmlDeviceGetClockInfo = lambda h, clock: 1710
    fake.nvmlDeviceGetMaxClockInfo = lambda h, clock: 1710

    def no_limit(handle: str) -> int:
        raise NVMLError("Not Supported")

    fake.nvmlDeviceGetEnforcedPowerLimit = no_limit
    fake.nvmlDeviceGetTotalEnergyConsumption = lambda h: 123
    fake.nvmlDeviceGetPowerUsage = lambda h: 60_000
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = capture_environment()["gpus"]
    assert gpus == [{
        "name": "NVIDIA A10G", "driver": "580.1", "sm_clock_mhz": 1710,
        "sm_clock_max_mhz": 1710, "power_limit_w": None, "energy_counter": True,
    }]
    assert calls == {"init": 1, "shutdown": 1}


def test_does_not_import_runtimes():
    code = (
        "import sys\n"
        "from graphopt.backends.environment import capture_environment\n"
        "capture_environment()\n"
        "print(sorted(m for m in ('onnxruntime', 'openvino', 'tensorrt', 'torch', 'pycuda')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _cpufreq(root: Path, cpu: int, governor: str, cur: int = 2_400_000) -> None:
    folder = root / f"cpu{cpu}" / "cpufreq"
    folder.mkdir(parents=True)
    (folder / "scaling_governor").write_text(governor + "\n")
    (folder / "scaling_driver").write_text("intel_pstate\n")
    (folder / "scaling_cur_freq").write_text(f"{cur}\n")
    (folder / "scaling_min_freq").write_text("800000\n")
    (folder / "scaling_max_freq").write_text("3500000\n")


def test_dvfs_state_reads_governor_and_frequencies_and_warns_off_performance(tmp_path):
    from graphopt.backends.cpufreq import dvfs_state, governor_warning

    _cpufreq(tmp_path, 0, "performance")
    _cpufreq(tmp_path, 1, "powersave", cur=1_200_000)
    state = dvfs_state([0, 1], root=tmp_path)
    assert state["status"] == "known" and state["governors"] == ["performance", "powersave"]
    assert state["cpus"]["1"] == {"governor": "powersave", "driver": "intel_pstate",
                                  "cur_mhz": 1200.0, "min_mhz": 800.0, "max_mhz": 3500.0}
    assert "powersave" in governor_warning(state)
    assert governor_warning(dvfs_state([0], root=tmp_path)) is None


def test_dvfs_state_unknown_with_the_reason(tmp_path):
    from graphopt.backends.cpufreq import dvfs_state, governor_warning

    _cpufreq(tmp_path, 0, "schedutil")
    state = dvfs_state([0, 1], root=tmp_path)
    assert state["status"] == "partial"
    assert state["cpus"]["1"]["governor"] == "unknown"
    assert "no cpufreq driver" in state["cpus"]["1"]["reason"]
    none = dvfs_state([3], root=tmp_path)
    assert none["status"] == "unknown" and "cpu3/cpufreq absent" in none["reason"]
    assert governor_warning(none) is None


def test_environment_records_dvfs_of_the_cores_in_use(monkeypatch, tmp_path):
    from graphopt.backends import cpufreq

    monkeypatch.setattr(cpufreq, "CPU_ROOT", tmp_path)
    monkeypatch.setattr(cpufreq, "cpus_in_use", lambda: [0])
    _cpufreq(tmp_path, 0, "ondemand")
    env = capture_environment()
    json.dumps(env)
    assert env["cpu"]["dvfs"]["cpus"] == {"0": {
        "governor": "ondemand", "driver": "intel_pstate", "cur_mhz": 2400.0,
        "min_mhz": 800.0, "max_mhz": 3500.0}}
    assert "jetson" in env
    if env["jetson"] is None:
        assert "not a Jetson" in env["unavailable"]["jetson"]
