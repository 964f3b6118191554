"""The rapl meter on powercap trees built by cnnbench.testing, with counters driven in real time at known
watts: wraparound (one, two, at the window edges, only DRAM), unreadable files, sockets, dies, psys, AMD.
Also the pyrapl meter, as far as it can be tested without pyRAPL."""

from __future__ import annotations

import os
import sys
import time
import types

import pytest

from cnnbench.meters import MeterSession
from cnnbench.meters.rapl import RaplMeter, discover
from cnnbench.plugins import PluginHost
from cnnbench.testing import CounterDriver, PowercapTree, unreadable

#: Measured against the known truth. The driver's counters are a staircase refreshed every 2 ms from a
#: Python thread, so an edge can be a few ms stale; over 0.3 s windows that stays well inside 5 %.
TOLERANCE = 0.05
#: A pause between the counter driver's writes (every 2 ms) longer than this is a stall of the machine.
STALL_S = 0.05


@pytest.fixture
def host():
    return PluginHost(default_plugins=("cnnbench.meters.builtin",), entry_points=False)


@pytest.fixture
def trees(monkeypatch):
    """Build trees on tmpfs; the last one built is the one $CNNBENCH_POWERCAP_ROOT points at."""
    made = []

    def build(layout: str = "intel", **kwargs) -> PowercapTree:
        tree = getattr(PowercapTree, layout)(**kwargs)
        made.append(tree)
        monkeypatch.setenv("CNNBENCH_POWERCAP_ROOT", str(tree.root))
        return tree

    yield build
    for tree in made:
        tree.cleanup()


def measure(session: MeterSession, seconds: float = 0.3, settle: float = 0.08):
    """Sample for ``settle`` s, then a window of ``seconds``: (start, end, readings)."""
    time.sleep(settle)
    start = time.monotonic()
    time.sleep(seconds)
    end = time.monotonic()
    return start, end, session.energy(start, end)


def assert_truth(readings, driver: CounterDriver, start: float, end: float, domains=None):
    for domain in domains or readings:
        reading = readings[domain]
        assert reading.ok, (domain, reading)
        assert reading.method == "counter"
        truth = driver.joules(domain, start, end)
        if reading.joules != pytest.approx(truth, rel=TOLERANCE):
            pause = driver.longest_pause(start, end)
            if pause > STALL_S:
                # The simulated counter is a thread's writes: when the (virtual) machine stalls it falls
                # behind, and the truth it was meant to show is not what the meter could read.
                pytest.skip(f"the machine stalled: the simulated counter was not written for {pause * 1e3:.0f} ms")
        assert reading.joules == pytest.approx(truth, rel=TOLERANCE), domain
        assert reading.power_w == pytest.approx(driver.watts(domain), rel=TOLERANCE), domain


# -- layout ---------------------------------------------------------------------------------------


def test_flat_and_nested_views_are_counted_once_and_subsystem_links_not_followed(trees):
    tree = trees(sockets=2, mmio=True)
    zones = discover(str(tree.root))
    assert sorted(z.zone_id for z in zones) == sorted(tree.zones)
    # the flat alias is the path users know
    assert zones[1].path == str(tree.root / zones[1].zone_id)


def test_zones_are_named_by_their_name_files_not_by_index(trees, host):
    tree = trees(core=False, uncore=False, dram=False)
    # a server-like order: dram first, core last
    tree.add_zone("intel-rapl:0:0", "dram", watts=6.0, domain="dram0")
    tree.add_zone("intel-rapl:0:1", "core", watts=20.0, domain="cpu_core0")
    session = MeterSession.open(["rapl"], host)
    assert {d: (i.kind, i.device) for d, i in session.domains.items()} == {
        "cpu_package0": ("cpu_package", "package-0"),
        "dram0": ("dram", "package-0/dram"),
        "cpu_core0": ("core", "package-0/core"),
    }
    assert session.domains["dram0"].source == str(tree.root / "intel-rapl:0:0")


def test_mmio_alias_of_the_package_is_counted_once(trees, host):
    trees(mmio=True)
    session = MeterSession.open("rapl", host)
    assert list(session.domains).count("cpu_package0") == 1
    assert session.domains["cpu_package0"].source.endswith("/intel-rapl:0")
    zones = {z["zone"]: z for z in session.inventory()["rapl"]["zones"]}
    assert zones["intel-rapl-mmio:0"]["status"].startswith("alias of intel-rapl:0")


def test_default_period_and_the_wrap_bound(trees, host):
    trees()
    assert MeterSession.open("rapl", host).periods() == {"rapl": 0.05}
    trees(max_energy_range_uj=4_000_000)  # 4 J: 20 ms at 200 W, so a read every 5 ms
    session = MeterSession.open("rapl", host, settings={"rapl": {"power_bound_w": 200}})
    assert session.periods()["rapl"] == pytest.approx(0.005)
    trees(max_energy_range_uj=1000)  # 1 mJ: no sampler can follow it, and the user is told
    session = MeterSession.open("rapl", host)
    assert session.periods()["rapl"] == 0.001 and "may miss wraps" in session.notes[0]


# -- wraparound -----------------------------------------------------------------------------------


def wrap_session(host, bound_w: float, **kwargs) -> MeterSession:
    return MeterSession.open(["rapl"], host, settings={"rapl": {"power_bound_w": bound_w}}, **kwargs)


def test_one_wrap(trees, host):
    tree = trees(core=False, uncore=False, max_energy_range_uj=12_000_000)  # 12 J
    tree.zone("cpu_package0").energy_uj = 6_000_000  # 40 W: wraps 0.15 s and 0.45 s after the driver starts
    with CounterDriver(tree, {"dram0": 0.5}) as driver, wrap_session(host, 100) as session:
        start, end, readings = measure(session, 0.25, 0.02)
    rapl = session.meters["rapl"]
    assert [(a, b) for a, b in rapl.wrap_intervals("cpu_package0") if start < b and a < end]
    assert rapl.wraps("dram0") == 0
    assert_truth(readings, driver, start, end)


def test_two_wraps_in_one_window(trees, host):
    tree = trees(core=False, uncore=False, dram=False, max_energy_range_uj=5_000_000)  # 5 J: a wrap every 125 ms
    with CounterDriver(tree) as driver, wrap_session(host, 100) as session:
        start, end, readings = measure(session, 0.35, 0.05)
    rapl = session.meters["rapl"]
    inside = [(a, b) for a, b in rapl.wrap_intervals("cpu_package0") if start < a and b < end]
    assert len(inside) >= 2
    assert_truth(readings, driver, start, end)


def test_window_edges_inside_the_sample_intervals_that_wrapped(trees, host):
    tree = trees(core=False, uncore=False, dram=False, max_energy_range_uj=6_000_000)  # a wrap every 150 ms
    with CounterDriver(tree) as driver, wrap_session(host, 120) as session:  # a read every 12.5 ms
        time.sleep(0.45)
        session.stop()
    wraps = session.meters["rapl"].wrap_intervals("cpu_package0")
    assert len(wraps) >= 2
    (a0, b0), (a1, b1) = wraps[0], wraps[-1]
    start, end = (a0 + b0) / 2, (a1 + b1) / 2  # both edges between the two reads around a wrap
    readings = session.energy(start, end)
    assert_truth(readings, driver, start, end)


def test_only_dram_wraps(trees, host):
    tree = trees(core=False, uncore=False)
    tree.zone("dram0").energy_uj = 1_000_000
    tree.set_max_energy_range("dram0", 1_500_000)  # 1.5 J at 6 W: a wrap every 250 ms
    with CounterDriver(tree) as driver, wrap_session(host, 24) as session:
        start, end, readings = measure(session, 0.35, 0.05)
    rapl = session.meters["rapl"]
    assert rapl.wraps("dram0") >= 1 and rapl.wraps("cpu_package0") == 0
    assert_truth(readings, driver, start, end)


def test_a_gap_longer_than_the_wrap_time_is_flagged(trees, host):
    trees(core=False, uncore=False, dram=False, max_energy_range_uj=10_000_000)
    meter = RaplMeter({"power_bound_w": 100})  # 10 J at 100 W: wraps can hide in any 100 ms gap
    meter.open()
    now = time.monotonic()
    assert meter.sample(now)["cpu_package0"].warning is None
    assert meter.sample(now + 0.05)["cpu_package0"].warning is None
    late = meter.sample(now + 0.5)["cpu_package0"]
    assert late.energy_j is not None and "wraps may have been missed" in late.warning


# -- unreadable files -----------------------------------------------------------------------------


def test_unreadable_max_energy_range_makes_that_domain_unavailable(trees, host):
    tree = trees(core=False, uncore=False)
    with unreadable(tree.zone("dram0").range_path), CounterDriver(tree) as driver:
        session = MeterSession.open("rapl", host)
        with session:
            start, end, readings = measure(session, 0.25)
    assert "dram0" not in session.domains and "dram0" not in readings
    why = session.unavailable["rapl:dram0"]
    assert why.startswith(f"permission denied: {tree.flat_path('dram0')}/max_energy_range_uj")
    assert_truth(readings, driver, start, end, ["cpu_package0"])


def test_garbage_max_energy_range_is_not_guessed(trees, host):
    tree = trees(core=False, uncore=False)
    tree.zone("dram0").range_path.write_text("n/a\n")
    session = MeterSession.open("rapl", host)
    assert list(session.domains) == ["cpu_package0"]
    assert "wraparound cannot be corrected" in session.unavailable["rapl:dram0"]


def test_permission_denied_names_the_exact_fix_and_is_never_zero(trees, host):
    tree = trees(core=False, uncore=False)
    energy = tree.flat_path("dram0") / "energy_uj"
    with unreadable(energy), CounterDriver(tree) as driver:
        session = MeterSession.open("auto", host)
        with session:
            start, end, readings = measure(session, 0.25)
    assert "dram0" not in readings
    why = session.unavailable["rapl:dram0"]
    assert why.startswith(f"permission denied: {energy} is readable by root only (since the 2020 PLATYPUS fix")
    assert f"fix: sudo chmod a+r {energy} (until reboot)" in why
    assert 'SUBSYSTEM=="powercap", KERNEL=="intel-rapl:*", RUN+="/bin/chmod a+r /sys%p/energy_uj"' in why
    assert_truth(readings, driver, start, end, ["cpu_package0"])


def test_every_zone_denied_makes_the_meter_unavailable_with_one_fix(trees, host):
    tree = trees(sockets=2)
    paths = [z.energy_path for z in tree.zones.values()]
    with unreadable(*paths):
        session = MeterSession.open("rapl", host)
        probe = {p["name"]: p for p in MeterSession.probe_all(host)}["rapl"]
    assert session.domains == {} and session.energy(0.0, 1.0) == {}
    assert session.unavailable["rapl"].startswith("permission denied: energy_uj is readable by root only")
    assert f"sudo chmod a+r {tree.root}/intel-rapl:*/energy_uj" in session.unavailable["rapl"]
    assert len([k for k in session.unavailable if k.startswith("rapl:")]) == 8
    assert probe["readable"] is False and probe["reason"].startswith("permission denied")
    assert probe["fix"].startswith(f"sudo chmod a+r {tree.root}/intel-rapl:*/energy_uj")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_by_file_mode(trees, host):
    tree = trees(core=False, uncore=False)
    tree.zone("dram0").energy_path.chmod(0)
    session = MeterSession.open("rapl", host)
    assert session.unavailable["rapl:dram0"].startswith("permission denied")


# -- sockets, dies, psys, AMD ---------------------------------------------------------------------


def test_two_sockets(trees, host):
    tree = trees(sockets=2, uncore=False)
    watts = {"cpu_package0": 40.0, "cpu_package1": 55.0, "cpu_core1": 31.0, "dram0": 6.0, "dram1": 9.5}
    with CounterDriver(tree, watts) as driver, MeterSession.open("rapl", host) as session:
        start, end, readings = measure(session)
    assert sorted(readings) == ["cpu_core0", "cpu_core1", "cpu_package0", "cpu_package1", "dram0", "dram1"]
    assert_truth(readings, driver, start, end)


def test_dies_get_their_own_domains(trees, host):
    trees(sockets=2, dies=2, core=False, uncore=False)
    session = MeterSession.open("rapl", host)
    assert sorted(session.domains) == [
        "cpu_package0_die0", "cpu_package0_die1", "cpu_package1_die0", "cpu_package1_die1",
        "dram0_die0", "dram0_die1", "dram1_die0", "dram1_die1",
    ]
    assert session.domains["dram1_die0"].device == "package-1-die-0/dram"


def test_psys_only_on_request(trees, host):
    tree = trees(psys=True, uncore=False)
    session = MeterSession.open("auto", host)
    assert "psys0" not in session.domains and not any("psys" in k for k in session.unavailable)
    with CounterDriver(tree) as driver, MeterSession.open(["rapl:psys"], host) as session:
        start, end, readings = measure(session)
    assert session.domains["psys0"].kind == "psys"
    assert_truth(readings, driver, start, end)


def test_amd_layout(trees, host):
    tree = trees("amd", sockets=2)
    settings = {"rapl": {"cpu_vendor": "AuthenticAMD"}}
    with CounterDriver(tree) as driver, MeterSession.open("rapl", host, settings=settings) as session:
        start, end, readings = measure(session)
    assert sorted(readings) == ["cpu_core0", "cpu_core1", "cpu_package0", "cpu_package1"]
    assert not any(i.kind == "dram" for i in session.domains.values())
    assert any("lower bound" in note for note in session.notes)
    assert_truth(readings, driver, start, end)


def test_no_tree_says_where_it_looked(host, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNBENCH_POWERCAP_ROOT", str(tmp_path / "absent"))
    session = MeterSession.open("rapl", host)
    assert session.unavailable == {
        "rapl": f"no powercap tree at {tmp_path / 'absent'} (from $CNNBENCH_POWERCAP_ROOT); "
        "fix: point $CNNBENCH_POWERCAP_ROOT at a powercap tree"
    }
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("CNNBENCH_POWERCAP_ROOT", str(tmp_path / "empty"))
    assert MeterSession.open("rapl", host).unavailable["rapl"].startswith("no RAPL zones in")


# -- pyrapl ---------------------------------------------------------------------------------------


def test_pyrapl_not_installed_is_unavailable_with_the_install_line(host, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyRAPL", None)
    session = MeterSession.open(["pyrapl"], host)
    assert session.unavailable == {"pyrapl": "pyRAPL is not installed; fix: pip install 'cnnbench[pyrapl]'"}
    assert "pyrapl" not in MeterSession.open("auto", host).unavailable  # never picked by auto


def fake_pyrapl(values: list[list[float]]) -> types.ModuleType:
    """pyRAPL's Sensor: energy() -> [pkg socket 0, dram socket 0, ...] in µJ, -1 where not monitored."""
    mod = types.ModuleType("pyRAPL")
    mod.__version__ = "0.2.3"
    readings = iter(values)
    last = {"v": values[0]}

    class Sensor:
        def energy(self):
            last["v"] = next(readings, last["v"])
            return list(last["v"])

    mod.Sensor = Sensor
    return mod


def test_pyrapl_reads_package_and_dram_and_refuses_to_guess_wraps(host, monkeypatch):
    # one socket, package and DRAM: +2 J and +0.3 J per read, then the package counter wraps
    values = [[10e6 + 2e6 * i, 5e6 + 3e5 * i] for i in range(6)] + [[1e6, 5e6 + 3e5 * 6]]
    monkeypatch.setitem(sys.modules, "pyRAPL", fake_pyrapl([values[0], *values]))  # open() reads once
    meter = host.meters()["pyrapl"]({})
    meter.open()
    assert {d: i.kind for d, i in meter.domains.items()} == {"cpu_package0": "cpu_package", "dram0": "dram"}
    samples = [meter.sample(float(i)) for i in range(7)]
    assert samples[5]["cpu_package0"].energy_j == pytest.approx(10.0)
    assert samples[5]["dram0"].energy_j == pytest.approx(1.5)
    assert samples[6]["cpu_package0"].error and "wraparound, which pyRAPL does not correct" in samples[6]["cpu_package0"].error
    assert samples[6]["cpu_package0"].energy_j == pytest.approx(10.0)  # held flat, never negative
