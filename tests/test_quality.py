"""The quality gate (issue 15): the spread of a cell's windows, the machine's load around it, ``noisy`` with its
reasons, and ``--stable``. The load tests load the machine for real (processes spinning on its CPUs)."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import FAST
from cnnbench.results import quality
from cnnbench.results.record import Result
from cnnbench.execution.worker import measure


def windows_of(per_iter: list[float], iterations: int = 10) -> list[dict[str, float]]:
    """Back-to-back windows whose time per iteration is ``per_iter`` (seconds)."""
    out, t = [], 100.0
    for index, value in enumerate(per_iter):
        out.append({"index": index, "start": t, "end": t + value * iterations, "iterations": iterations})
        t += value * iterations
    return out


def ok_result(windows) -> Result:
    result = Result("fake", "lenet", 4, "cpu", "fp32", "vendor", None, "ok")
    result.fill_timing(windows, 1000)
    return result


# --- the interval of the median ---------------------------------------------------------------------------

def test_median_interval_uses_the_textbook_order_statistics():
    values = [float(v) for v in range(1, 21)]
    random.Random(1).shuffle(values)
    # n = 20: the 6th and 15th values (e.g. Conover, Practical Nonparametric Statistics, table A3)
    assert quality.median_interval(values) == (6.0, 15.0)
    assert quality.median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]) == (1.0, 6.0)  # n = 6: min and max
    assert quality.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # min..max covers only 15/16
    assert quality.half_width([1.0] * 5) is None


@pytest.mark.parametrize("n", [6, 9, 15, 40])
def test_median_interval_covers_the_true_median_at_least_95_percent_of_the_time(n):
    rng = random.Random(n)
    true_median = 2.0 + 0.5 * 0.6931471805599453  # of 2 + Exp(rate 2): a skewed, heavy-ish window law
    trials = 3000
    covered = 0
    for _ in range(trials):
        low, high = quality.median_interval([2.0 + rng.expovariate(2.0) for _ in range(n)])
        covered += low <= true_median <= high
    assert covered / trials >= 0.94  # exact coverage >= 95 %; 3000 trials scatter by about 0.4 %


# --- the spread and the gate ------------------------------------------------------------------------------

def test_one_window_has_no_spread_and_says_so():
    result = ok_result(windows_of([0.010]))
    quality.assess(result, None)
    assert result.quality["cv"] is None
    assert result.quality["noisy"] is False
    assert quality.ONE_WINDOW in result.warnings


def test_steady_windows_pass_the_gate():
    result = ok_result(windows_of([0.0100, 0.0101, 0.0099, 0.0100, 0.0102]))
    quality.assess(result, {"others_cpu_share": 0.02, "steal_share": 0.0, "cpus": 2})
    assert result.quality["cv"] == pytest.approx(statistics.stdev([100, 101, 99, 100, 102]) / 100.4, rel=1e-6)
    assert result.quality["noisy"] is False and result.quality["reasons"] == []
    assert result.warnings == []
    assert result.quality["thresholds"] == {"cv": 0.05, "others_cpu_share": 0.10, "steal_share": 0.05}


def test_scattered_windows_are_noisy_with_the_figure():
    result = ok_result(windows_of([0.010, 0.014, 0.009, 0.020, 0.011]))
    quality.assess(result, None)
    assert result.quality["noisy"] is True
    (reason,) = result.quality["reasons"]
    assert reason.startswith("time varies across windows: CV 3") and reason.endswith("> 5%")
    assert result.warnings == [f"noisy: {reason}"]


def test_steal_past_its_limit_is_a_reason():
    result = ok_result(windows_of([0.010] * 5))
    quality.assess(result, {"others_cpu_share": 0.0, "steal_share": 0.08, "cpus": 4})
    assert result.quality["reasons"] == ["the hypervisor stole 8.0% of the CPU time during the cell (> 5%)"]


def test_failed_cells_are_not_assessed():
    result = Result("fake", "lenet", 4, "cpu", "fp32", "vendor", None, "error", reason="boom")
    quality.assess(result, {"others_cpu_share": 0.9, "cpus": 2})
    assert result.quality == {} and result.warnings == []


# --- the load, read from the machine -------------------------------------------------------------------------

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def test_own_process_tree_is_not_counted_as_others():
    """Pinned to one CPU, a child of the probing process spins on it: that is the cell's own work. Were the
    worker's CPU time not subtracted, others would be the whole CPU."""
    script = textwrap.dedent(f"""
        import json, os, subprocess, sys
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {{cpu}})
        from cnnbench.system.load import LoadProbe
        probe = LoadProbe.open()
        subprocess.run([sys.executable, "-c", {SPIN.format(seconds=1.5)!r}], check=True)
        print(json.dumps(probe.close()))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    load = json.loads(proc.stdout)
    assert load["cpus"] == 1
    assert load["own_cpu_s"] > 0.4, load  # the child got at least some of its CPU
    # (the rest of the CPU may be taken by whatever else runs on this machine, but not the whole of it)
    assert load["others_cpu_share"] < 0.9, load
    assert load["loadavg_1m_before"] is not None and 0.0 <= load["steal_share"] <= 1.0


@pytest.fixture
def loaded_machine():
    """A busy process spinning on every CPU cnnbench may use, for as long as the test runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=120)])
                for _ in os.sched_getaffinity(0)]
    time.sleep(0.3)
    yield
    for proc in spinners:
        proc.kill()
        proc.wait()


def test_a_loaded_machine_makes_the_cell_noisy(cli, fake_site, loaded_machine):
    proc = cli("compare", "--frameworks", "fake", "--networks", "lenet", "--meters", "none", "--idle", "0",
               "--json", *FAST, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    gate = result["quality"]
    # the fake step sleeps: nearly all the CPU time went to the spinners
    assert gate["load"]["others_cpu_share"] > 0.5, gate
    assert gate["noisy"] is True
    reason = next(r for r in gate["reasons"] if r.startswith("other processes kept"))
    assert f"of the {len(os.sched_getaffinity(0))} CPUs cnnbench may use busy during the cell (> 10%)" in reason
    assert f"noisy: {reason}" in result["warnings"]


def test_one_window_cell_through_the_cli(cli, fake_site):
    proc = cli("run", "--framework", "fake", "--network", "lenet", "--meters", "none", "--idle", "0", "--json",
               "--warmup", "1", "--min-time", "0.02", "--repeats", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["quality"]["cv"] is None
    assert quality.ONE_WINDOW in result["warnings"]
    assert result["quality"]["load"]["wall_s"] > 0


# --- --stable -------------------------------------------------------------------------------------------------

def test_stable_adds_windows_until_the_median_is_pinned_down():
    windows = measure(lambda: time.sleep(0.002), lambda: None, warmup=1, min_time=0.01, repeats=2, iterations=None,
                      emit=lambda *a, **k: None, stable=0.25, stable_max_time=30.0)
    # at least 6 windows: fewer have no 95 % interval of the median at all
    assert len(windows) >= 6
    report = quality.stability(windows, 0.25, 30.0)
    assert report["reached"] is True and report["stopped"] == "target"
    assert report["half_width"] <= 0.25 and report["windows"] == len(windows)
    low, high = report["interval_ms"]
    assert low <= statistics.median(quality.per_iter_s(windows)) * 1e3 <= high
    # it stops as soon as the target is met: one window fewer and it was not yet
    assert quality.keep_going(windows[:-1], 0.25, 30.0)


def test_stable_stops_at_its_time_cap_and_says_so():
    rng = random.Random(3)
    windows = measure(lambda: time.sleep(rng.choice((0.001, 0.004))), lambda: None, warmup=0, min_time=0.0,
                      repeats=3, iterations=1, emit=lambda *a, **k: None, stable=0.0001, stable_max_time=0.4)
    span = windows[-1]["end"] - windows[0]["start"]
    # the cap is overrun only by a window longer than every one before it: a sleep of a busy machine may be
    assert 0.3 < span <= 0.5 and len(windows) > 6
    result = ok_result(windows)
    quality.assess(result, None, 0.0001, 0.4)
    stable = result.quality["stable"]
    assert (stable["reached"], stable["stopped"]) == (False, "time cap")
    (warning,) = [w for w in result.warnings if w.startswith("--stable")]
    assert "wider than the 0.0% target: the 0.4 s cap (--stable-max-time) came first" in warning


def test_without_stable_exactly_repeats_windows():
    windows = measure(lambda: None, lambda: None, warmup=0, min_time=0.0, repeats=3, iterations=1,
                      emit=lambda *a, **k: None)
    assert len(windows) == 3


def test_stable_through_the_cli(cli, fake_site):
    proc = cli("run", "--framework", "fake", "--network", "lenet", "--meters", "none", "--idle", "0", "--json",
               "--warmup", "1", "--min-time", "0.01", "--repeats", "2", "--stable", "50%", "--stable-max-time", "20",
               timeout=300)
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    (result,) = document["results"]
    stable = result["quality"]["stable"]
    assert stable["target"] == 0.5 and stable["max_time_s"] == 20.0
    assert stable["windows"] == len(result["windows"]) >= 6
    assert stable["stopped"] in ("target", "time cap")
    assert document["measurement"]["stable"] == 0.5


def test_stable_in_layers_holds_for_every_layer_and_the_whole_step(cli):
    proc = cli("layers", "--framework", "caffe", "--network", "lenet", "--meters", "none", "--idle", "0", "--json",
               "--warmup", "1", "--min-time", "0.01", "--repeats", "2", "--stable", "50", "--stable-max-time", "20",
               timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["measurement"]["stable"] == 0.5
    timed = [layer[d] for layer in report["layers"] for d in ("forward", "backward") if "windows" in layer[d]]
    assert timed and all(len(entry["windows"]) >= 6 for entry in timed)
    assert len(report["network_step"]["windows"]) >= 6
