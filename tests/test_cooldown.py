"""--cooldown: wait before each cell until the GPU is back within 2 °C of its idle temperature, or the cap."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from cnnbench.config import Measurement, RunConfig, UsageError
from cnnbench.execution.cooldown import AUTO_CAP_S, Cooldown, CooldownSpec, forget_idle_reference, idle_reference, parse_cooldown
from cnnbench.meters import MeterSession
from cnnbench.spec.catalog import resolve_network
from cnnbench.plugins import PluginHost
from cnnbench.execution.runner import Cell, run_grid
from cnnbench.testing import FakeGpu, fake_pynvml

H200 = dict(name="NVIDIA H200", uuid="GPU-8a3f6c2e-1b4d-4e5f-9a7b-0c1d2e3f4a5b", pci_bus_id="00000000:17:00.0")


@pytest.fixture(autouse=True)
def fresh_reference():
    forget_idle_reference()
    yield
    forget_idle_reference()


def test_parse():
    assert parse_cooldown(None) is None and parse_cooldown("0") is None
    assert parse_cooldown("auto") == CooldownSpec("auto", AUTO_CAP_S)
    assert parse_cooldown("45") == CooldownSpec("seconds", 45.0)
    for bad in ("soon", "-3", "nan", "inf", "1e9", ""):
        with pytest.raises(UsageError, match="--cooldown takes auto or a number of seconds from 0 to 3600"):
            parse_cooldown(bad)


@pytest.mark.parametrize("command", [["run", "--framework", "torch"], ["compare"], ["layers", "--framework", "torch"]])
def test_a_bad_value_is_a_one_line_usage_error(command):
    proc = subprocess.run([sys.executable, "-m", "cnnbench", *command, "--cooldown", "later", "--meters", "none"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "cnnbench: error: --cooldown takes auto or a number of seconds from 0 to 3600, not 'later'"]


def test_it_waits_until_the_gpu_is_within_2_degrees_of_idle():
    gpu = FakeGpu(**H200, temperature_c=38.0)
    temps = lambda: {"gpu0": gpu.temperature()}  # noqa: E731
    waiter = Cooldown(CooldownSpec("seconds", 5.0), temps, poll_s=0.01)
    assert waiter.idle_c == {"gpu0": 38.0}
    gpu.cool(70.0, 38.0, 0.4)  # the previous cell left it at 70 °C
    record = waiter.wait()
    assert record["reached"] is True and record["start_c"]["gpu0"] >= 65
    assert record["end_c"]["gpu0"] <= 40.0
    # 70 -> 40 °C takes 30/32 of the 0.4 s cooling
    assert 0.3 <= record["waited_s"] < 2.0


def test_the_cap_ends_the_wait_and_says_so():
    gpu = FakeGpu(**H200, temperature_c=38.0)
    waiter = Cooldown(CooldownSpec("seconds", 0.2), lambda: {"gpu0": gpu.temperature()}, poll_s=0.01)
    gpu.cool(80.0, 38.0, 60.0)
    record = waiter.wait()
    assert record["reached"] is False and 0.2 <= record["waited_s"] < 1.0
    assert record["reason"].startswith("cap reached with gpu0 at 80 °C (idle 38 °C)")


def test_the_idle_temperature_is_the_coolest_seen_at_a_grids_start():
    assert idle_reference({"gpu0": 41.0}) == {"gpu0": 41.0}
    assert idle_reference({"gpu0": 66.0}) == {"gpu0": 41.0}  # a later setting of a sweep starts hot
    assert idle_reference({"gpu0": 39.0, "gpu1": 50.0}) == {"gpu0": 39.0, "gpu1": 50.0}


def test_without_a_gpu_auto_waits_nothing_and_says_why_once_and_seconds_is_a_pause():
    said, slept = [], []
    waiter = Cooldown(CooldownSpec("auto", AUTO_CAP_S), None, said.append, sleep=slept.append)
    records = [waiter.wait(), waiter.wait()]
    assert said == ["cnnbench: --cooldown auto waits nothing: no GPU temperature can be read here (no GPU meter)"]
    assert slept == [] and all(r["reached"] is None and r["waited_s"] < 0.1 for r in records)
    said.clear()
    Cooldown(CooldownSpec("seconds", 7.0), None, said.append, sleep=slept.append).wait()
    assert slept == [7.0] and "pauses 7 s before each cell" in said[0]


def test_the_grid_records_the_wait_and_the_conditions_of_each_cell(fake_site, monkeypatch, tmp_path):
    for var in ("CNNBENCH_HWMON_ROOT", "CNNBENCH_THERMAL_ROOT", "CNNBENCH_CPU_ROOT"):
        monkeypatch.setenv(var, str(tmp_path / "none"))
    gpu = FakeGpu(**H200, temperature_c=36.0)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpu))
    host = PluginHost(default_plugins=("cnnbench.meters.builtin",))
    idle_reference({"gpu0": 36.0})  # an earlier grid of this process saw the GPU idle
    gpu.cool(60.0, 36.0, 0.5)
    cell = Cell(RunConfig(framework="fake", network="lenet", batch_size=4), resolve_network("lenet"))
    with MeterSession.open(["nvml"], host) as meters:
        results = list(run_grid([cell, cell], Measurement(warmup=1, min_time=0.02, repeats=2), host, timeout=120,
                                meters=meters, cooldown=CooldownSpec("seconds", 10.0)))
    first, second = results
    assert first.status == "ok" and first.provenance["cooldown"]["reached"] is True
    assert first.timings["cooldown_s"] == first.provenance["cooldown"]["waited_s"] >= 0.3
    assert second.timings["cooldown_s"] < 0.3
    assert [c["window"] for c in first.conditions] == [1, 2]
