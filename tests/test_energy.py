"""Energy per cell: windows integrated per domain, idle subtracted, totals and the CPU's share."""

from __future__ import annotations

import json
import time

import pytest

from cnnbench.meters.energy import attach_energy
from cnnbench.meters import MeterSession
from cnnbench.plugins import PluginHost
from cnnbench.results.record import Result
from cnnbench.testing import CounterDriver, PowercapTree
from cnnbench.testing.proc import FakeProc

FAKE_HOST = ("cnnbench.meters.builtin", "cnnbench.testing")


@pytest.fixture
def quiet(monkeypatch):
    """A machine quiet enough for an idle baseline to be trusted, whatever this one is doing (the check
    itself is tested in test_meters_trust.py); the environment reaches the CLI's subprocesses too."""
    with FakeProc(cpus=4, busy_cpus=0.05, load1=0.1) as proc:
        monkeypatch.setenv("CNNBENCH_PROC_ROOT", str(proc.root))
        yield proc


def ok_result(windows, batch=8, device="cuda") -> Result:
    return Result("torch", "lenet", batch, device, "fp32", "vendor", None, "ok", windows=windows)


def timed_windows(n=2, seconds=0.25, iterations=10):
    windows = []
    for index in range(n):
        start = time.monotonic()
        time.sleep(seconds)
        windows.append({"index": index, "start": start, "end": time.monotonic(), "iterations": iterations})
    return windows


def test_gpu_run_totals_idle_and_cpu_share(quiet):
    host = PluginHost(default_plugins=FAKE_HOST, entry_points=False)
    domains = {"cpu_package0": ("cpu_package", 40.0), "cpu_core0": ("core", 25.0), "dram0": ("dram", 6.0),
               "gpu0": ("gpu", 200.0), "gpu1": ("gpu", 50.0)}
    with MeterSession.open(["fake"], host, settings={"fake": {"domains": domains}}) as session:
        session.idle(0.2)
        result = ok_result(timed_windows())
        attach_energy(result, session, "gpu0")
    images = 2 * 10 * 8
    seconds = sum(w["end"] - w["start"] for w in result.windows)
    assert "gpu1" not in result.energy  # a GPU the cell did not run on
    for domain, watts in (("cpu_package0", 40.0), ("dram0", 6.0), ("gpu0", 200.0), ("cpu_core0", 25.0)):
        entry = result.energy[domain]
        assert entry["power_w"] == pytest.approx(watts, rel=0.02)
        assert entry["energy_per_image_j"] == pytest.approx(watts * seconds / images, rel=0.02)
        assert entry["idle_power_w"] == pytest.approx(watts, rel=0.02)
        # constant power: nothing above idle
        assert abs(entry["dynamic_energy_per_image_j"]) < 0.02 * entry["energy_per_image_j"]
    total = result.energy_total
    # core is inside the package: not added again
    assert total["domains"] == ["cpu_package0", "dram0", "gpu0"]
    assert total["power_w"] == pytest.approx(246.0, rel=0.02)
    assert total["cpu_share"] == pytest.approx(46 / 246, rel=0.02)
    # per window: the same total, each window's joules over its own images
    for window, joules_per_image in zip(result.windows, result.energy_per_image_j_windows, strict=True):
        seconds_w = window["end"] - window["start"]
        assert joules_per_image == pytest.approx(246.0 * seconds_w / (window["iterations"] * 8), rel=0.03)
    assert sum(result.energy_per_image_j_windows) / 2 == pytest.approx(total["energy_per_image_j"], rel=0.01)


def test_cpu_run_has_no_cpu_share_and_no_gpu():
    host = PluginHost(default_plugins=FAKE_HOST, entry_points=False)
    domains = {"cpu_package0": ("cpu_package", 40.0), "dram0": ("dram", 6.0), "gpu0": ("gpu", 200.0)}
    with MeterSession.open(["fake"], host, settings={"fake": {"domains": domains}}) as session:
        result = ok_result(timed_windows(1), device="cpu")
        attach_energy(result, session, None)
    assert set(result.energy) == {"cpu_package0", "dram0"}
    assert result.energy_total["cpu_share"] is None
    assert result.energy_total["dynamic_energy_per_image_j"] is None  # no idle measured


def test_end_to_end_rapl_tree_at_40_w_package_and_6_w_dram(cli):
    """The issue's check: a real run, the meter reading a powercap tree driven at known watts."""
    with PowercapTree.intel(watts={"package": 40.0, "dram": 6.0}) as tree, CounterDriver(tree):
        proc = cli("run", "--framework", "torch", "--network", "lenet", "--device", "cpu", "--meters", "rapl",
                   "--idle", "0", "--batch-size", "8", "--min-time", "0.3", "--repeats", "3", "--json",
                   env={"CNNBENCH_POWERCAP_ROOT": str(tree.root)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (result,) = doc["results"]
    energy = result["energy"]
    assert energy["cpu_package0"]["power_w"] == pytest.approx(40.0, rel=0.05)
    assert energy["dram0"]["power_w"] == pytest.approx(6.0, rel=0.05)
    assert energy["cpu_package0"]["method"] == "counter"
    images = sum(w["iterations"] for w in result["windows"]) * 8
    seconds = sum(w["end"] - w["start"] for w in result["windows"])
    assert energy["dram0"]["energy_per_image_j"] == pytest.approx(6.0 * seconds / images, rel=0.05)
    assert result["energy_total"]["power_w"] == pytest.approx(46.0, rel=0.05)
    assert result["energy_unavailable"] is None
    assert doc["meters"]["domains"]["cpu_package0"]["kind"] == "cpu_package"


def test_table_with_energy_and_idle(cli, quiet):
    with PowercapTree.intel(watts={"package": 40.0, "dram": 6.0}) as tree, CounterDriver(tree):
        proc = cli("run", "--framework", "torch", "--network", "lenet", "--device", "cpu", "--meters", "rapl",
                   "--idle", "0.3", "--batch-size", "8", "--min-time", "0.2", "--repeats", "2",
                   env={"CNNBENCH_POWERCAP_ROOT": str(tree.root)})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for head in ("J/image", "W", "method", "above idle J/image", "by domain J/image"):
        assert head in out
    assert "counter" in out and "cpu_package0" in out and "dram0" in out


def test_no_meter_here_says_why(cli):
    env = {"CNNBENCH_POWERCAP_ROOT": "/nonexistent/powercap"}
    proc = cli("run", "--framework", "torch", "--network", "lenet", "--device", "cpu", "--batch-size", "2",
               "--warmup", "0", "--iterations", "1", "--repeats", "1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["energy"] == {} and result["energy_total"] is None
    assert "rapl: no powercap tree at /nonexistent/powercap" in result["energy_unavailable"]
    listed = cli("list", env=env).stdout
    assert "rapl: not readable: no powercap tree at /nonexistent/powercap" in listed


def test_a_named_meter_that_cannot_be_read_stops_before_the_grid(cli):
    proc = cli("run", "--framework", "torch", "--network", "lenet", "--meters", "rapl",
               env={"CNNBENCH_POWERCAP_ROOT": "/nonexistent/powercap"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cnnbench: error: meter 'rapl' cannot be read here: no powercap tree at /nonexistent")
    assert "fix:" in lines[0]


def test_unknown_meter_is_a_usage_error(cli):
    proc = cli("run", "--framework", "torch", "--network", "lenet", "--meters", "wattmeter")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("cnnbench: error: unknown meter 'wattmeter'; valid choices: auto, none, nvml, "
                                   "pyrapl, rapl")


def test_a_gpu_cell_without_the_gpus_energy_says_its_total_is_partial():
    """RAPL readable, no GPU meter: the CPU's joules are real, but the total must not pass for the cell's."""
    from cnnbench.results.report import results_table

    host = PluginHost(default_plugins=FAKE_HOST, entry_points=False)
    domains = {"cpu_package0": ("cpu_package", 40.0), "dram0": ("dram", 6.0)}
    with MeterSession.open(["fake"], host, settings={"fake": {"domains": domains}}) as session:
        result = ok_result(timed_windows(1), device="cuda")
        attach_energy(result, session, None)
    assert result.energy_total["missing"] == "the GPU: no GPU meter"
    table = results_table([result])
    assert "[1] without the GPU: no GPU meter" in table
    line = next(row for row in table.splitlines() if row.startswith("torch"))
    assert " [1]" in line.split("ok")[0]
    # a GPU meter that reads some GPU, but not the worker's
    domains["gpu3"] = ("gpu", 100.0)
    with MeterSession.open(["fake"], host, settings={"fake": {"domains": domains}}) as session:
        result = ok_result(timed_windows(1), device="cuda")
        attach_energy(result, session, None)
    assert "could not be matched to a metered one (gpu3)" in result.energy_total["missing"]
    # a CPU cell is whole without a GPU
    with MeterSession.open(["fake"], host, settings={"fake": {"domains": domains}}) as session:
        result = ok_result(timed_windows(1), device="cpu")
        attach_energy(result, session, None)
    assert "missing" not in result.energy_total


NO_ENERGY = ("nvml: nvidia-ml-py is not installed (its module is pynvml); fix: pip install 'cnnbench[nvml]'; "
             "rapl: no powercap tree at /sys/class/powercap; fix: sudo modprobe intel_rapl_msr")


def _no_energy_table() -> str:
    from cnnbench.results.report import results_table

    r = Result("torch", "lenet", 2, "cpu", "fp32", "vendor", 1, "ok", windows=[{"time_per_iter_ms": 10.0}],
               time_per_iter_ms=10.0, images_per_s=200.0, energy_unavailable=NO_ENERGY)
    return results_table([r])


def test_tables_leave_out_the_reasons_of_meters_that_cannot_apply_here(monkeypatch):
    """Issue 21: without an NVIDIA GPU, NVML's install hint under every table is noise; the record keeps it."""
    import cnnbench.system.nvidia as nvidia
    from cnnbench.meters import rapl

    monkeypatch.setattr(nvidia, "nvidia_gpu_present", lambda: False)
    monkeypatch.setattr(rapl, "x86_linux", lambda: True)
    table = _no_energy_table()
    assert "nvml" not in table and "rapl: no powercap tree at /sys/class/powercap; fix: sudo modprobe" in table
    monkeypatch.setattr(nvidia, "nvidia_gpu_present", lambda: True)
    assert "nvml: nvidia-ml-py is not installed (its module is pynvml); fix: pip" in _no_energy_table()


def test_where_no_meter_applies_the_table_says_so(monkeypatch):
    import cnnbench.system.nvidia as nvidia
    from cnnbench.meters import rapl

    monkeypatch.setattr(nvidia, "nvidia_gpu_present", lambda: False)
    monkeypatch.setattr(rapl, "x86_linux", lambda: False)
    monkeypatch.delenv("CNNBENCH_POWERCAP_ROOT", raising=False)
    table = _no_energy_table()
    assert "nvml" not in table and "rapl" not in table
    assert "no energy meter applies to this machine ('cnnbench list' says why each is unavailable)" in table
