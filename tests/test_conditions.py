"""Heat and clocks per timed window (cnnbench.meters.conditions): GPU temperature, clocks, power limit and
throttle reasons from a fake NVML; CPU temperature and frequency from fake sysfs trees."""

from __future__ import annotations

import sys
import time

import pytest

from cnnbench.meters import MeterSession
from cnnbench.meters.conditions import ConditionsMonitor, CpuSensors, attach_conditions
from cnnbench.plugins import PluginHost
from cnnbench.results.record import Result
from cnnbench.testing import FakeGpu, fake_pynvml
from cnnbench.testing.nvml import SW_POWER_CAP, SW_THERMAL_SLOWDOWN

H200 = dict(name="NVIDIA H200", uuid="GPU-8a3f6c2e-1b4d-4e5f-9a7b-0c1d2e3f4a5b", pci_bus_id="00000000:17:00.0")


@pytest.fixture
def host():
    return PluginHost(default_plugins=("cnnbench.meters.builtin",), entry_points=False)


@pytest.fixture
def no_cpu_sensors(tmp_path, monkeypatch):
    for var in ("CNNBENCH_HWMON_ROOT", "CNNBENCH_THERMAL_ROOT", "CNNBENCH_CPU_ROOT"):
        monkeypatch.setenv(var, str(tmp_path / "empty"))


def result_with(windows, device="cuda:0") -> Result:
    result = Result(framework="torch", network="alexnet", batch_size=8, device=device, precision="fp32",
                    kernels="vendor", threads=None, status="ok")
    result.windows = [{"start": a, "end": b, "iterations": 3} for a, b in windows]
    return result


def window(seconds=0.12):
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


@pytest.mark.parametrize("new_api", [True, False])
def test_each_window_records_heat_and_clocks_and_a_throttled_one_is_a_warning(monkeypatch, host, no_cpu_sensors,
                                                                              new_api):
    gpu = FakeGpu(**H200, temperature_c=61.0, power_limit_w=700.0, clocks_event_api=new_api)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpu))
    session = MeterSession.open(["nvml"], host)
    monitor = ConditionsMonitor(session.gpu_conditions, period=0.02).start()
    first = window()
    gpu.clocks_event_reasons = SW_THERMAL_SLOWDOWN | SW_POWER_CAP
    gpu.temperature_c = 84.0
    gpu.clocks_mhz = {"sm": 1410, "mem": 3201, "graphics": 1410}
    second = window()
    gpu.clocks_event_reasons = 0
    gpu.temperature_c = 70.0
    gpu.clocks_mhz = {"sm": 1980, "mem": 3201, "graphics": 1980}
    third = window()
    monitor.stop()
    session.close()
    result = result_with([first, second, third])
    attach_conditions(result, monitor, "gpu0")
    assert [c["window"] for c in result.conditions] == [1, 2, 3]
    calm, hot = result.conditions[0]["gpu0"], result.conditions[1]["gpu0"]
    assert calm["temperature_c"] == {"min": 61.0, "median": 61.0, "max": 61.0}
    assert calm["sm_clock_mhz"]["min"] == 1980 and calm["mem_clock_mhz"]["max"] == 3201
    assert calm["power_limit_w"]["max"] == 700.0 and calm["throttled"] == []
    assert hot["temperature_c"]["max"] == 84.0 and hot["sm_clock_mhz"]["min"] == 1410
    assert hot["throttled"] == ["sw power cap", "sw thermal slowdown"]
    assert result.conditions[0]["samples"] >= 2
    assert result.warnings == [
        "gpu0: window 2 of 3 throttled: sw power cap, sw thermal slowdown (up to 84 °C, SM clock down to 1410 MHz)"
    ]


def test_windows_throttled_alike_share_one_warning_and_a_cpu_cell_has_no_gpu_record(monkeypatch, host,
                                                                                  no_cpu_sensors):
    gpu = FakeGpu(**H200, clocks_event_reasons=SW_POWER_CAP)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpu))
    session = MeterSession.open(["nvml"], host)
    monitor = ConditionsMonitor(session.gpu_conditions, period=0.02).start()
    windows = [window(0.06), window(0.06)]
    monitor.stop()
    session.close()
    result = result_with(windows)
    attach_conditions(result, monitor, "gpu0")
    assert result.warnings == ["gpu0: windows 1, 2 of 2 throttled: sw power cap (up to 35 °C, SM clock down to 1980 MHz)"]
    cpu_cell = result_with(windows, device="cpu")
    attach_conditions(cpu_cell, monitor, None, ["gpu0"])
    assert all("gpu0" not in c for c in cpu_cell.conditions) and cpu_cell.warnings == []
    unmatched = result_with(windows)  # a CUDA cell whose GPU was not matched: every metered GPU
    attach_conditions(unmatched, monitor, None, ["gpu0"])
    assert all("gpu0" in c for c in unmatched.conditions)


def test_a_window_shorter_than_the_period_takes_the_nearest_reading(monkeypatch, host, no_cpu_sensors):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(FakeGpu(**H200, temperature_c=50.0)))
    session = MeterSession.open(["nvml"], host)
    monitor = ConditionsMonitor(session.gpu_conditions, period=10.0).start()  # one reading, at start
    short = window(0.01)
    monitor.stop()
    session.close()
    summary = monitor.window(*short, ["gpu0"])
    assert summary["samples"] == 0 and summary["gpu0"]["temperature_c"]["max"] == 50.0


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cpu_temperature_from_hwmon_and_frequency_from_cpufreq(tmp_path, monkeypatch):
    hwmon, cpu = tmp_path / "hwmon", tmp_path / "cpu"
    write(hwmon / "hwmon0" / "name", "nvme\n")
    write(hwmon / "hwmon0" / "temp1_input", "80000\n")  # a disk: not the CPU
    write(hwmon / "hwmon1" / "name", "coretemp\n")
    write(hwmon / "hwmon1" / "temp1_input", "55000\n")
    write(hwmon / "hwmon1" / "temp2_input", "61000\n")
    write(cpu / "cpu0" / "cpufreq" / "scaling_cur_freq", "2400000\n")
    write(cpu / "cpu1" / "cpufreq" / "scaling_cur_freq", "1800000\n")
    monkeypatch.setenv("CNNBENCH_HWMON_ROOT", str(hwmon))
    monkeypatch.setenv("CNNBENCH_THERMAL_ROOT", str(tmp_path / "none"))
    monkeypatch.setenv("CNNBENCH_CPU_ROOT", str(cpu))
    assert CpuSensors().read() == {"temperature_c": 61.0, "frequency_mhz": 2100.0}
    monitor = ConditionsMonitor(None, period=0.02).start()
    span = window(0.06)
    monitor.stop()
    summary = monitor.window(*span, [])
    assert summary["cpu"]["temperature_c"]["max"] == 61.0 and summary["cpu"]["frequency_mhz"]["median"] == 2100.0


def test_cpu_temperature_falls_back_to_the_package_thermal_zone(tmp_path, monkeypatch):
    thermal = tmp_path / "thermal"
    write(thermal / "thermal_zone0" / "type", "acpitz\n")
    write(thermal / "thermal_zone0" / "temp", "27800\n")
    write(thermal / "thermal_zone1" / "type", "x86_pkg_temp\n")
    write(thermal / "thermal_zone1" / "temp", "47000\n")
    monkeypatch.setenv("CNNBENCH_HWMON_ROOT", str(tmp_path / "none"))
    monkeypatch.setenv("CNNBENCH_THERMAL_ROOT", str(thermal))
    monkeypatch.setenv("CNNBENCH_CPU_ROOT", str(tmp_path / "none"))
    assert CpuSensors().read() == {"temperature_c": 47.0, "frequency_mhz": None}


def test_a_machine_without_sensors_records_no_cpu_values(no_cpu_sensors):
    monitor = ConditionsMonitor(None, period=0.02).start()
    span = window(0.05)
    monitor.stop()
    assert "cpu" not in monitor.window(*span, []) and CpuSensors().read() == {"temperature_c": None, "frequency_mhz": None}
