"""Integration math on exact synthetic samples, and the MeterSession contract on the FakeMeter."""

from __future__ import annotations

import math
import sys
import time

import pytest

from cnnbench.config import UsageError
from cnnbench.meters import DomainInfo, Meter, MeterError, MeterSession, Reading, Sample
from cnnbench.meters.integrate import (
    counter_energy,
    integrate_power,
    interpolate,
    samples_inside,
    window_reading,
    wrap_delta,
)
from cnnbench.meters.sampler import DomainSeries
from cnnbench.plugins import PluginHost
from cnnbench.testing import FakeMeter
from cnnbench.testing.proc import FakeProc

COUNTER = DomainInfo("t", "cpu_package", "package-0", energy_counter=True, power_samples=False)
BOTH = DomainInfo("t", "gpu", "GPU-x", update_period_s=0.1, energy_counter=True, power_samples=True)
POWER = DomainInfo("t", "gpu", "GPU-x", update_period_s=0.1, energy_counter=False, power_samples=True)


def unwrap(raw: list[int], max_range: int) -> list[float]:
    """What the rapl meter does sample by sample: cumulative joules from raw µJ readings."""
    total, out = 0, [0.0]
    for previous, current in zip(raw, raw[1:]):
        total += wrap_delta(previous, current, max_range)[0]
        out.append(total / 1e6)
    return out


def raw_counter(watts: float, times: list[float], max_range: int, start_uj: int) -> list[int]:
    return [int(start_uj + watts * t * 1e6) % max_range for t in times]


# -- pure math ----------------------------------------------------------------------------------------


def test_wrap_delta():
    assert wrap_delta(100, 250, 1000) == (150, False)
    assert wrap_delta(900, 50, 1000) == (150, True)
    assert wrap_delta(5, 5, 1000) == (0, False)


def test_interpolation_at_the_window_edges_is_exact_for_constant_power():
    times = [0.0, 0.1, 0.2, 0.3]
    energy = [0.0, 4.0, 8.0, 12.0]  # 40 W
    assert interpolate(times, energy, 0.05) == pytest.approx(2.0)
    assert interpolate(times, energy, 0.3) == 12.0
    assert interpolate(times, energy, 0.31) is None
    assert counter_energy(times, energy, 0.05, 0.25) == pytest.approx(8.0)
    assert samples_inside(times, 0.05, 0.25) == 2
    assert samples_inside(times, 0.1, 0.2) == 0


def test_one_wrap_in_a_window():
    max_range = 10_000_000  # 10 J
    times = [i * 0.05 for i in range(9)]  # 40 W: 2 J per sample, 16 J in all
    raw = raw_counter(40.0, times, max_range, start_uj=3_000_000)
    assert sum(b < a for a, b in zip(raw, raw[1:])) == 1
    assert counter_energy(times, unwrap(raw, max_range), 0.0, 0.4) == pytest.approx(16.0)


def test_two_wraps_in_a_window():
    max_range = 5_000_000  # 5 J
    times = [i * 0.05 for i in range(11)]  # 2 J per sample, 20 J in all
    raw = raw_counter(40.0, times, max_range, start_uj=1_000_000)
    assert sum(b < a for a, b in zip(raw, raw[1:])) >= 2
    assert counter_energy(times, unwrap(raw, max_range), 0.02, 0.47) == pytest.approx(40.0 * 0.45)


def test_window_edges_inside_the_intervals_that_wrapped():
    max_range = 3_000_000  # 3 J: at 40 W a wrap every 75 ms, sampled every 50 ms
    times = [i * 0.05 for i in range(12)]
    raw = raw_counter(40.0, times, max_range, start_uj=2_900_000)
    wrapped = [(times[i], times[i + 1]) for i in range(len(raw) - 1) if raw[i + 1] < raw[i]]
    (a0, b0), (a1, b1) = wrapped[0], wrapped[-1]
    start, end = (a0 + b0) / 2, (a1 + b1) / 2
    assert counter_energy(times, unwrap(raw, max_range), start, end) == pytest.approx(40.0 * (end - start))


def test_trapezoid_is_exact_for_linear_power():
    times = [0.0, 0.1, 0.2, 0.3, 0.4]
    power = [100.0 + 50 * t for t in times]
    expected = 100 * 0.3 + 25 * (0.35**2 - 0.05**2)  # integral of 100 + 50 t over [0.05, 0.35]
    assert integrate_power(times, power, 0.05, 0.35) == pytest.approx(expected)


# -- window readings ----------------------------------------------------------------------------------


def test_reading_from_a_counter():
    times = [0.0, 0.05, 0.10, 0.15, 0.20]
    energy = [40 * t for t in times]
    r = window_reading(COUNTER, times, energy, None, [], 0.02, 0.18, 0.05)
    assert r.ok and r.method == "counter" and r.warnings == ()
    assert r.joules == pytest.approx(40 * 0.16) and r.power_w == pytest.approx(40.0)
    assert r.samples == 3


def test_a_window_with_no_sample_inside_is_estimated():
    times, energy = [0.0, 0.05], [0.0, 2.0]
    r = window_reading(COUNTER, times, energy, None, [], 0.01, 0.03, 0.05)
    assert r.method == "estimated" and r.joules == pytest.approx(0.8)
    assert "no sample inside the window" in r.warnings[0]


def test_a_window_shorter_than_the_counters_update_period_is_flagged():
    times = [i * 0.01 for i in range(10)]
    r = window_reading(BOTH, times, [300 * t for t in times], [300.0] * 10, [], 0.02, 0.07, 0.01)
    assert r.ok and r.method == "counter"
    assert any("shorter than the counter's update period" in w for w in r.warnings)


def test_counter_and_power_integration_disagreeing_by_more_than_5_percent_is_flagged():
    times = [i * 0.05 for i in range(21)]
    energy = [300 * t for t in times]
    agree = window_reading(BOTH, times, energy, [303.0] * 21, [], 0.1, 0.9, 0.05)
    assert agree.warnings == ()
    disagree = window_reading(BOTH, times, energy, [321.6] * 21, [], 0.1, 0.9, 0.05)
    assert disagree.method == "counter" and disagree.joules == pytest.approx(240.0)
    assert any("disagree by 7.2 %" in w for w in disagree.warnings)


def test_power_only_is_integrated():
    times = [i * 0.05 for i in range(21)]
    r = window_reading(POWER, times, None, [250.0] * 21, [], 0.1, 0.9, 0.05)
    assert r.method == "integrated" and r.joules == pytest.approx(200.0)


def test_errors_overlapping_the_window_invalidate_it_and_warnings_pass_on():
    times = [i * 0.05 for i in range(21)]
    energy = [40 * t for t in times]
    events = [(0.30, 0.35, "warning", "could not read x"), (0.60, math.inf, "error", "gpu0 was lost")]
    before = window_reading(COUNTER, times, energy, None, events, 0.1, 0.5, 0.05)
    assert before.ok and before.warnings == ("could not read x",)
    after = window_reading(COUNTER, times, energy, None, events, 0.5, 0.9, 0.05)
    assert not after.ok and after.joules is None and after.power_w is None
    assert after.error == "gpu0 was lost"


def test_a_window_outside_the_samples_is_an_error_not_zero():
    times, energy = [1.0, 1.05, 1.1], [0.0, 2.0, 4.0]
    r = window_reading(COUNTER, times, energy, None, [], 0.5, 1.05, 0.05)
    assert r.joules is None and "no samples cover the window" in r.error


def test_series_turns_failed_reads_and_losses_into_events():
    series = DomainSeries(BOTH)
    series.add(0.0, Sample(energy_j=0.0, power_w=300.0))
    series.add(0.05, Sample(warning="NVML read failed"))
    series.add(0.10, Sample(energy_j=30.0, power_w=300.0))
    series.add(0.15, Sample(energy_j=45.0))  # power missing: an incomplete sample is a failed read
    series.add(0.20, Sample(energy_j=60.0, power_w=300.0))
    series.add(0.25, Sample(error="gpu0 was lost", lost=True))
    series.add(0.30, Sample(energy_j=90.0, power_w=300.0))  # ignored: lost for good
    assert list(series.times) == [0.0, 0.10, 0.20]
    assert series.events[0] == (0.0, 0.10, "warning", "NVML read failed")
    assert series.events[-1] == (0.20, math.inf, "error", "gpu0 was lost")


# -- the session, on the FakeMeter --------------------------------------------------------------------


@pytest.fixture
def host():
    return PluginHost(default_plugins=("cnnbench.meters.builtin", "cnnbench.testing"), entry_points=False)


def window(session: MeterSession, seconds: float = 0.2, settle: float = 0.06):
    time.sleep(settle)
    start = time.monotonic()
    time.sleep(seconds)
    end = time.monotonic()
    return start, end, session.energy(start, end)


def test_fake_meter_known_joules(host):
    with MeterSession.open(["fake"], host) as session:
        assert set(session.domains) == {"cpu_package0", "dram0"}
        assert session.domains["dram0"].kind == "dram"
        start, end, readings = window(session)
    meter = session.meters["fake"]
    for domain, reading in readings.items():
        assert reading.ok and reading.method == "counter" and reading.warnings == ()
        assert reading.joules == pytest.approx(meter.joules(domain, start, end), rel=1e-3)
    assert readings["cpu_package0"].power_w == pytest.approx(40.0, rel=1e-3)


def test_windows_can_be_read_after_stop_and_stop_is_idempotent(host):
    session = MeterSession.open("fake", host, period=0.02).start()
    start, end, _ = window(session, 0.1, 0.02)
    session.stop()
    session.stop()
    assert not session.running
    assert session.energy(start, end)["dram0"].joules == pytest.approx(6.0 * (end - start), rel=1e-3)
    session.close()
    session.close()
    with pytest.raises(RuntimeError):
        session.start()


def test_idle_returns_average_watts(host, monkeypatch):
    session = MeterSession.open(["fake"], host, settings={"fake": {"domains": {"gpu0": ("gpu", 61.5)}}})
    try:
        assert session.idle(0) == {}
        with FakeProc(cpus=4, busy_cpus=0.05, load1=0.1) as proc:  # a quiet machine, whatever this one does
            monkeypatch.setenv("CNNBENCH_PROC_ROOT", str(proc.root))
            idle = session.idle(0.15)
        assert session.running
    finally:
        session.close()
    assert idle == {"gpu0": pytest.approx(61.5, rel=1e-3)}
    assert session.idle_power == idle and session.idle_readings["gpu0"].ok
    assert session.idle_baseline["trusted"] and session.idle_baseline["reason"] is None


def test_unknown_meter_is_a_usage_error_naming_the_valid_choices(host):
    with pytest.raises(UsageError, match=r"^unknown meter 'x'; valid choices: auto, none, fake, nvml, pyrapl, rapl$"):
        MeterSession.open(["x"], host)
    with pytest.raises(UsageError, match="unknown option 'dram' for meter 'rapl'; valid choices: rapl:psys"):
        MeterSession.open("rapl:dram", host)
    with pytest.raises(UsageError, match="cannot be combined"):
        MeterSession.open(["none", "rapl"], host)


def test_none_selects_nothing_and_says_so(host):
    session = MeterSession.open("none", host)
    assert session.domains == {} and session.unavailable == {}
    assert session.no_energy_reason == "meters disabled (--meters none)"
    assert session.energy(0.0, 1.0) == {} and session.idle(0.5) == {}


def test_auto_without_readable_meters_is_empty_with_reasons(host, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNBENCH_POWERCAP_ROOT", str(tmp_path / "nothing"))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails: not installed
    session = MeterSession.open("auto", host, settings={"fake": {"fail": "no fake hardware"}})
    assert session.domains == {}
    assert set(session.unavailable) == {"fake", "nvml", "rapl"}  # pyrapl is never auto
    assert session.unavailable["nvml"].startswith("nvidia-ml-py is not installed")
    assert "no powercap tree at" in session.unavailable["rapl"]
    assert "no fake hardware" in session.no_energy_reason
    assert session.energy(0.0, 1.0) == {}


def test_unavailable_domains_are_absent_never_zero(host):
    settings = {"fake": {"unavailable": {"dram1": "permission denied (fake)"}}}
    with MeterSession.open(["fake"], host, settings=settings) as session:
        _, _, readings = window(session, 0.05, 0.02)
    assert "dram1" not in session.domains and "dram1" not in readings
    assert session.unavailable == {"fake:dram1": "permission denied (fake); fix: none: this is a fake meter"}


class BrokenMeter(Meter):
    name = "broken"

    def open(self):
        if self.settings.get("mode") == "open":
            raise ZeroDivisionError("boom in open")
        self.domains["gpu9"] = DomainInfo("broken", "gpu", "x")

    def sample(self, now):
        raise RuntimeError("boom in sample")


class ClashingMeter(FakeMeter):
    name = "clash"


def test_a_broken_meter_plugin_is_isolated(host, monkeypatch):
    monkeypatch.setattr(host, "_meters", {**host.meters(), "broken": BrokenMeter, "clash": ClashingMeter})
    session = MeterSession.open(["fake", "broken", "clash"], host, settings={"broken": {"mode": "open"}})
    assert session.unavailable["broken"] == "meter 'broken' failed to open: ZeroDivisionError: boom in open"
    assert session.unavailable["clash"] == "every domain it reads is measured by another meter"
    assert session.unavailable["clash:dram0"] == "dram0 is already measured by meter 'fake'"
    session.close()
    with MeterSession.open(["broken"], host, period=0.01) as session:
        _, _, readings = window(session, 0.05, 0.0)
    assert readings["gpu9"].error.startswith("no samples cover")
    assert "boom in sample" in session._samplers["broken"].series["gpu9"]._pending[0]


def test_probe_all_lists_every_meter_with_reason_and_fix(host, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNBENCH_POWERCAP_ROOT", str(tmp_path / "nothing"))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    probes = {p["name"]: p for p in MeterSession.probe_all(host)}
    assert list(probes) == ["fake", "nvml", "pyrapl", "rapl"]
    assert probes["fake"]["readable"] and probes["fake"]["domains"] == ["cpu_package0", "dram0"]
    assert not probes["nvml"]["readable"] and "pip install" in probes["nvml"]["fix"]
    assert not probes["rapl"]["readable"] and probes["rapl"]["reason"].startswith("no powercap tree at")
    assert probes["pyrapl"]["auto"] is False


class NoName(Meter):
    def open(self):
        pass

    def sample(self, now):
        return {}


def test_plugin_host_rejects_invalid_and_duplicate_meters(tmp_path, monkeypatch):
    (tmp_path / "meter_plugin_a.py").write_text(
        "from cnnbench import hookimpl\nfrom cnnbench.testing import FakeMeter\n"
        "class Auto(FakeMeter):\n    name = 'auto'\n"
        "@hookimpl\ndef cnnbench_register_meters():\n    return [FakeMeter, Auto, object]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost(default_plugins=("cnnbench.testing", "meter_plugin_a"), entry_points=False)
    assert list(host.meters()) == ["fake"]
    errors = [f.error for f in host.failures]
    assert any("meter name 'fake' is registered twice" in e and "meter_plugin_a" in e for e in errors)
    assert any("reserved name 'auto'" in e for e in errors)
    assert any("not a Meter subclass" in e for e in errors)


def test_reading_to_dict():
    r = Reading(12.0, 0.5, "counter", ("w",), None, 3)
    assert r.to_dict() == {"joules": 12.0, "seconds": 0.5, "power_w": 24.0, "method": "counter",
                           "warnings": ["w"], "error": None, "samples": 3}
    assert MeterError("no tree", "modprobe").text == "no tree; fix: modprobe"
