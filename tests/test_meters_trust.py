"""Meters that cannot be fooled: a RAPL counter restart is not a wrap, a failed read is not a value, packages go
by their names, a masked tree is called masked, and an idle baseline counts only when the machine was idle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from cnnbench.meters.energy import attach_energy
from cnnbench.meters import DomainInfo, MeterSession, Reading
from cnnbench.meters.rapl import DEFAULT_POWER_BOUND_W, RaplMeter
from cnnbench.plugins import PluginHost
from cnnbench.results.record import Result
from cnnbench.testing import CounterDriver, PowercapTree
from cnnbench.testing.powercap import masked
from cnnbench.testing.proc import FakeProc

#: The counter driver writes every 2 ms from a Python thread: a window's figure is within a few % of the truth.
TOLERANCE = 0.05


@pytest.fixture
def host():
    return PluginHost(default_plugins=("cnnbench.meters.builtin", "cnnbench.testing"), entry_points=False)


@pytest.fixture
def tree(monkeypatch):
    made = []

    def build(layout: str = "intel", **kwargs) -> PowercapTree:
        t = getattr(PowercapTree, layout)(**kwargs)
        made.append(t)
        monkeypatch.setenv("CNNBENCH_POWERCAP_ROOT", str(t.root))
        return t

    yield build
    for t in made:
        t.cleanup()


@pytest.fixture
def quiet(monkeypatch):
    """A machine as quiet as an idle baseline needs, whatever this one is doing."""
    with FakeProc(cpus=4, busy_cpus=0.05, load1=0.1) as proc:
        monkeypatch.setenv("CNNBENCH_PROC_ROOT", str(proc.root))
        yield proc


def assert_truth(joules, driver: CounterDriver, domain: str, start: float, end: float) -> None:
    truth = driver.joules(domain, start, end)
    if joules != pytest.approx(truth, rel=TOLERANCE) and driver.longest_pause(start, end) > 0.05:
        # the simulated counter is a thread's writes: on a stalled machine it falls behind the truth
        pytest.skip("the machine stalled: the simulated counter fell behind")
    assert joules == pytest.approx(truth, rel=TOLERANCE), domain


def cpu_result(windows) -> Result:
    return Result("caffe", "lenet", 8, "cpu", "fp32", "vendor", None, "ok", windows=windows)


def windows_of(edges) -> list[dict]:
    return [{"index": i, "start": a, "end": b, "iterations": 10} for i, (a, b) in enumerate(edges)]


# -- 1. a restart is not a wrap ---------------------------------------------------------------------------


def test_a_counter_restart_is_an_error_for_its_window_never_a_wrap(tree, host):
    t = tree(core=False, uncore=False, watts={"package": 40.0, "dram": 6.0})
    with CounterDriver(t) as driver, MeterSession.open("rapl", host) as session:
        time.sleep(0.4)
        driver.restart("cpu_package0")
        time.sleep(0.4)
        session.stop()
    rapl = session.meters["rapl"]
    (a, b), = rapl.restart_intervals("cpu_package0")
    assert rapl.wraps("cpu_package0") == 0
    first, last = session._samplers["rapl"].series["cpu_package0"].times[0], b + 0.3
    edges = [(first + 0.05, a - 0.01), (a - 0.1, b + 0.1), (b + 0.01, last)]
    result = cpu_result(windows_of(edges))
    before, across, after = (session.energy(s, e) for s, e in edges)
    # across the restart: no figure, and the reason says what happened and what a wrap would have meant
    assert across["cpu_package0"].joules is None and across["cpu_package0"].power_w is None
    assert "counter restart" in across["cpu_package0"].error
    assert f"above this zone's plausible {DEFAULT_POWER_BOUND_W:g} W" in across["cpu_package0"].error
    # the windows on either side, and DRAM throughout, are the truth
    for readings, (s, e) in ((before, edges[0]), (after, edges[2])):
        assert_truth(readings["cpu_package0"].joules, driver, "cpu_package0", s, e)
    assert_truth(across["dram0"].joules, driver, "dram0", *edges[1])
    # the cell: the package has no figure, the total says it lacks it, and the warning names the window
    attach_energy(result, session, None)
    assert result.energy["cpu_package0"]["power_w"] is None
    assert "counter restart" in result.energy["cpu_package0"]["error"]
    assert result.energy_total["domains"] == ["dram0"]
    assert result.energy_total["missing"] == "cpu_package0 (counter restart)"
    (warning,) = [w for w in result.warnings if w.startswith("cpu_package0:")]
    assert warning.startswith("cpu_package0: no figure: counter restart") and warning.endswith("(window 2 of 3)")


def test_the_bound_comes_from_the_zones_declared_max_power(tree):
    t = tree(sockets=0)
    t.add_zone("intel-rapl:0", "package-0", max_energy_range_uj=100_000_000, domain="cpu_package0",
               max_power_w=(65.0, 120.0))  # PL1's thermal spec power, PL2's maximum
    meter = RaplMeter({})
    meter.open()
    (zone,) = meter.inventory()["zones"]
    assert zone["power_bound_w"] == 240.0 and "120 W" in zone["power_bound_source"]

    clock = [100.0]

    def step(previous_j: float, current_j: float, seconds: float = 0.1):
        clock[0] += 10.0
        t.write_energy("cpu_package0", int(previous_j * 1e6))
        meter.sample(clock[0])
        t.write_energy("cpu_package0", int(current_j * 1e6))
        return meter.sample(clock[0] + seconds)["cpu_package0"]

    wrap = step(90.0, 5.0)  # 15 J in 0.1 s: 150 W, within 240 W
    assert wrap.error is None and meter.wraps("cpu_package0") == 1
    restart = step(90.0, 40.0)  # 50 J in 0.1 s: 500 W, a wrap only below a default 1000 W bound
    assert restart.error and "500 W, above this zone's plausible 240 W" in restart.error
    assert meter.wraps("cpu_package0") == 1
    # without a declared maximum the kind's default applies, and the same step is a wrap
    undeclared = RaplMeter({})
    t.zone("cpu_package0").dir.joinpath("constraint_0_max_power_uw").unlink()
    t.zone("cpu_package0").dir.joinpath("constraint_1_max_power_uw").unlink()
    undeclared.open()
    assert undeclared.inventory()["zones"][0]["power_bound_w"] == DEFAULT_POWER_BOUND_W
    meter = undeclared
    assert step(90.0, 40.0).error is None and meter.wraps("cpu_package0") == 1


# -- 2. a failed read is not a value ----------------------------------------------------------------------


def test_a_read_that_fails_mid_run_is_an_error_for_the_windows_it_touches(tree, host):
    t = tree(core=False, uncore=False, watts={"package": 40.0, "dram": 6.0})
    with CounterDriver(t) as driver, MeterSession.open("rapl", host) as session:
        time.sleep(0.3)
        gone = time.monotonic()
        t.vanish("dram0")
        time.sleep(0.3)
        t.reappear("dram0")
        back = time.monotonic()
        time.sleep(0.4)
        session.stop()
    series = session._samplers["rapl"].series["dram0"]
    (event,) = [e for e in series.events if e[2] == "error"]
    assert "could not read" in event[3] and "ENOENT" in event[3]
    across = session.energy(gone - 0.1, back + 0.02)["dram0"]
    assert across.joules is None and "could not read" in across.error
    later = back + 0.1, back + 0.35
    reading = session.energy(*later)["dram0"]
    assert reading.ok
    assert_truth(reading.joules, driver, "dram0", *later)
    # the package, read all along, is untouched
    assert session.energy(gone - 0.1, back + 0.02)["cpu_package0"].ok


def test_a_zone_that_stops_answering_for_good_says_why_in_every_later_window(tree, host):
    t = tree(core=False, uncore=False)
    with CounterDriver(t), MeterSession.open("rapl", host) as session:
        time.sleep(0.2)
        t.vanish("dram0")
        time.sleep(0.05)
        start = time.monotonic()
        time.sleep(0.2)
        end = time.monotonic()
        readings = session.energy(start, end)
    assert readings["dram0"].joules is None and "could not read" in readings["dram0"].error
    assert readings["cpu_package0"].ok


# -- 3. packages by their names ----------------------------------------------------------------------------


def test_packages_go_by_their_name_files_not_their_folder_numbers(tree, host):
    t = tree(sockets=0)
    # intel-rapl:0 is psys, intel-rapl:1 is package 1, intel-rapl:2 is package 0 (whose DRAM is :2:0)
    t.add_zone("intel-rapl:0", "psys", watts=90.0, domain="psys0")
    t.add_zone("intel-rapl:1", "package-1", watts=55.0, domain="cpu_package1")
    t.add_zone("intel-rapl:1:0", "dram", watts=9.0, domain="dram1")
    t.add_zone("intel-rapl:2", "package-0", watts=30.0, domain="cpu_package0")
    t.add_zone("intel-rapl:2:0", "dram", watts=4.0, domain="dram0")
    session = MeterSession.open("rapl", host)
    assert sorted(session.domains) == ["cpu_package0", "cpu_package1", "dram0", "dram1"]  # psys kept apart
    assert session.domains["cpu_package0"].source == str(t.root / "intel-rapl:2")
    assert session.domains["dram1"].device == "package-1/dram"
    with CounterDriver(t) as driver, MeterSession.open("rapl:psys", host) as session:
        time.sleep(0.1)
        start = time.monotonic()
        time.sleep(0.3)
        end = time.monotonic()
        readings = session.energy(start, end)
    result = cpu_result(windows_of([(start, end)]))
    attach_energy(result, session, None)
    assert result.energy_total["domains"] == ["cpu_package0", "cpu_package1", "dram0", "dram1"]  # never psys
    # each domain reads its own zone's watts (30, 55, 4, 9, 90), whatever the folder order
    for domain in ("cpu_package0", "cpu_package1", "dram0", "dram1", "psys0"):
        assert_truth(readings[domain].joules, driver, domain, start, end)


# -- 4. a masked tree ---------------------------------------------------------------------------------------


def test_a_masked_tree_says_masked_with_the_container_fix(tmp_path, host, monkeypatch, cli):
    root = masked(tmp_path)
    monkeypatch.setenv("CNNBENCH_POWERCAP_ROOT", str(root))
    why = MeterSession.open("rapl", host).unavailable["rapl"]
    assert why.startswith(f"no RAPL zones in {root}: the powercap tree is masked")
    assert "intel-rapl:0" in why and "systempaths=unconfined" in why and "CNNBENCH_POWERCAP_ROOT=/host/powercap" in why
    assert "modprobe" not in why
    listed = cli("list", env={"CNNBENCH_POWERCAP_ROOT": str(root)})
    line = next(ln for ln in listed.stdout.splitlines() if ln.strip().startswith("rapl:"))
    assert "the powercap tree is masked" in line and "systempaths=unconfined" in line and "modprobe" not in line


def test_an_empty_tree_is_masked_in_a_container_and_missing_a_driver_elsewhere(tmp_path):
    (tmp_path / "powercap").mkdir()
    root = str(tmp_path / "powercap")
    with pytest.raises(Exception) as in_container:
        RaplMeter({"root": root, "container": "/.dockerenv exists"}).open()
    assert "empty inside this container (/.dockerenv exists)" in in_container.value.reason
    assert "systempaths=unconfined" in in_container.value.fix and "modprobe" not in in_container.value.fix
    with pytest.raises(Exception) as bare_metal:
        RaplMeter({"root": root, "container": ""}).open()
    assert "container" not in bare_metal.value.reason and "modprobe intel_rapl_msr" in bare_metal.value.fix


# -- 5. the idle baseline ----------------------------------------------------------------------------------


def fake_session(host, watts=40.0):
    return MeterSession.open(["fake"], host, settings={"fake": {"domains": {"cpu_package0": ("cpu_package", watts)}}})


def test_a_quiet_baseline_is_trusted_and_records_its_spread(host, quiet):
    with fake_session(host) as session:
        idle = session.idle(0.5)
    baseline = session.idle_baseline
    assert idle == {"cpu_package0": pytest.approx(40.0, rel=1e-3)}
    assert baseline["trusted"] is True and baseline["reason"] is None and baseline["windows"] == 5
    entry = baseline["domains"]["cpu_package0"]
    assert len(entry["windows_w"]) == 5 and entry["cv"] == pytest.approx(0.0, abs=1e-3)  # constant watts
    assert baseline["load"]["cpus"] == 4 and baseline["load"]["others_busy_cpus"] < 0.5


@pytest.mark.parametrize("busy, load1, why", [
    (3.0, 0.1, "other processes kept"),
    (0.0, 6.0, "the load average was 6.00 on 4 CPUs"),
])
def test_a_busy_baseline_is_not_used_and_every_cell_says_why(host, monkeypatch, busy, load1, why):
    with FakeProc(cpus=4, busy_cpus=busy, load1=load1) as proc, fake_session(host) as session:
        monkeypatch.setenv("CNNBENCH_PROC_ROOT", str(proc.root))
        assert session.idle(0.3) == {}
        start = time.monotonic()
        time.sleep(0.2)
        result = cpu_result(windows_of([(start, time.monotonic())]))
        attach_energy(result, session, None)
    assert session.idle_baseline["trusted"] is False and why in session.idle_baseline["reason"]
    assert session.idle_power == {}
    assert session.idle_baseline["domains"]["cpu_package0"]["power_w"] == pytest.approx(40.0, rel=1e-3)  # kept
    entry = result.energy["cpu_package0"]
    assert entry["power_w"] == pytest.approx(40.0, rel=0.02)
    assert entry["idle_power_w"] is None and entry["dynamic_energy_per_image_j"] is None
    assert result.energy_total["dynamic_energy_per_image_j"] is None
    assert any(w.startswith("idle baseline not used, so no above-idle energy: ") and why in w for w in result.warnings)


def test_a_baseline_on_a_really_loaded_machine_is_not_trusted(host, monkeypatch):
    """A busy child on every CPU, read through the real /proc: no mocked number."""
    monkeypatch.delenv("CNNBENCH_PROC_ROOT", raising=False)
    children = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        with fake_session(host) as session:
            session.idle(1.0)
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()
    baseline = session.idle_baseline
    assert baseline["trusted"] is False and "other processes kept" in baseline["reason"]
    assert baseline["load"]["others_busy_cpus"] > 0.5
    assert session.idle_power == {}


def test_a_baseline_whose_load_cannot_be_read_is_not_trusted(host, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNBENCH_PROC_ROOT", str(tmp_path / "no-proc"))
    with fake_session(host) as session:
        assert session.idle(0.2) == {}
    assert "the machine's load cannot be read" in session.idle_baseline["reason"]


def test_an_unsteady_baseline_warns_on_the_cells_that_use_it(tree, host, quiet):
    t = tree(core=False, uncore=False, dram=False, watts={"package": 10.0})
    with CounterDriver(t) as driver, MeterSession.open("rapl", host) as session:
        timer = threading.Timer(0.5, driver.set_watts, ("cpu_package0", 30.0))
        timer.start()
        session.idle(1.0)
        timer.join()
        start = time.monotonic()
        time.sleep(0.2)
        result = cpu_result(windows_of([(start, time.monotonic())]))
        attach_energy(result, session, None)
    cv = session.idle_baseline["domains"]["cpu_package0"]["cv"]
    assert cv > 0.3  # 10 W then 30 W
    assert result.energy["cpu_package0"]["dynamic_energy_per_image_j"] is not None  # trusted: used
    assert any(w.startswith("cpu_package0: the idle baseline varied by") for w in result.warnings)


# -- 6. every meter warning reaches the result -----------------------------------------------------------


class StubSession:
    """Readings chosen per window, for the one thing under test: how attach_energy passes them on."""

    def __init__(self, readings: dict[str, list[Reading]]):
        self._readings = readings
        self.domains = {d: DomainInfo("stub", "gpu" if d.startswith("gpu") else "cpu_package", d) for d in readings}
        self.idle_power: dict = {}
        self.idle_baseline = None
        self.calls = 0

    def energy(self, start, end):
        index = self.calls
        self.calls += 1
        return {d: parts[index] for d, parts in self._readings.items()}


def test_every_reading_warning_and_error_is_a_cell_warning_once_with_its_windows():
    short = "window shorter than the counter's update period ({} ms < ~100 ms)"
    readings = {
        "cpu_package0": [Reading(1.0, 0.1, "counter", ("counter and power integration disagree by 6.1 %",)),
                         Reading(1.0, 0.1, "counter"),
                         Reading(1.0, 0.1, "counter", ("counter and power integration disagree by 7.4 %",))],
        "gpu0": [Reading(5.0, 0.05, "counter", (short.format("52.0"),)),
                 Reading(5.0, 0.05, "counter", (short.format("48.3"),)),
                 Reading(None, 0.05, "counter", (short.format("50.1"),), "gpu0 was lost")],
    }
    result = Result("torch", "lenet", 8, "cuda", "fp32", "vendor", None, "ok",
                    windows=windows_of([(0.0, 0.1), (0.2, 0.3), (0.4, 0.5)]))
    attach_energy(result, StubSession(readings), "gpu0")
    assert result.warnings == [
        "cpu_package0: counter and power integration disagree by 6.1 % (windows 1, 3 of 3)",
        "gpu0: window shorter than the counter's update period (52.0 ms < ~100 ms) (all 3 windows)",
        "gpu0: no figure: gpu0 was lost (window 3 of 3)",
    ]
    assert result.status == "error"  # a lost GPU still fails the cell


# -- 7. the check, through the command line ----------------------------------------------------


def test_a_counter_restart_through_the_cli_gives_no_figure_above_the_bound(cli):
    """40 W into a powercap tree whose package counter restarts from 0 every 0.25 s during a real run: before
    this check existed each restart read as a 262 kJ wrap, tens of kilowatts per window with status ok."""
    with PowercapTree.intel(watts={"package": 40.0, "dram": 6.0}) as t, \
            CounterDriver(t, restart_every={"cpu_package0": 0.25}) as driver:
        proc = cli("run", "--framework", "caffe", "--network", "lenet", "--device", "cpu", "--meters", "rapl",
                   "--idle", "0", "--batch-size", "8", "--warmup", "1", "--min-time", "0.3", "--repeats", "3",
                   "--json", env={"CNNBENCH_POWERCAP_ROOT": str(t.root)})
    assert proc.returncode == 0, proc.stderr
    assert len(driver.restart_times("cpu_package0")) >= 4
    (result,) = json.loads(proc.stdout)["results"]
    assert result["status"] == "ok", result["reason"]
    package = result["energy"]["cpu_package0"]
    assert package["power_w"] is None and package["energy_per_image_j"] is None
    assert package["error"].startswith("counter restart: ") and "above this zone's plausible 1000 W" in package["error"]
    for domain, entry in result["energy"].items():
        assert entry["power_w"] is None or entry["power_w"] <= DEFAULT_POWER_BOUND_W, domain
    assert result["energy"]["dram0"]["power_w"] == pytest.approx(6.0, rel=TOLERANCE)
    assert result["energy_total"]["power_w"] <= DEFAULT_POWER_BOUND_W
    assert result["energy_total"]["missing"] == "cpu_package0 (counter restart)"
    assert any(w.startswith("cpu_package0: no figure: counter restart") for w in result["warnings"])
