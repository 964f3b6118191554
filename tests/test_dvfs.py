"""cnnbench dvfs against a file-backed fake NVML (tests/dvfsfake/pynvml.py), a fake /proc/self/status and a fake
cpufreq tree: listing and planning, validation, the permission gate, applying and restoring on every way out
(normal end, an exception, SIGTERM / SIGINT, a worker crash, SIGKILL then --restore), and the energy valley.

Nothing here touches real hardware: every host runs with the fake pynvml first on its PYTHONPATH,
$CNNBENCH_PROC_ROOT and $CNNBENCH_CPUFREQ_ROOT point at trees in the test's directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAKE_PLUGIN, ROOT, make_distribution

FAKE_NVML = Path(__file__).resolve().parent / "dvfsfake"
FAST = ["--warmup", "1", "--min-time", "0.02", "--repeats", "2", "--idle", "0"]
WORKLOAD = ["--framework", "fake", "--network", "lenet", "--batch-size", "2", *FAST]
ALL_CAPS = "000001ffffffffff"


def gpu_state(index: int = 0, **overrides) -> dict:
    """One GPU as the paper's K20m (Table I): memory 2600 MHz with five graphics clocks, and 324:324."""
    gpu = {"name": "Tesla K20m", "uuid": f"GPU-2f1e0c3a-0000-4000-8000-00000000000{index}",
           "pci_bus_id": f"00000000:{3 + index:02X}:00.0", "watts": 100.0,
           "clocks": {"2600": [758, 705, 666, 640, 614], "324": [324]},
           "application": [2600, 705], "default_application": [2600, 705],
           "power_limit_mw": 225000, "power_default_mw": 225000, "power_range_mw": [150000, 225000],
           "api_restricted": True}
    gpu.update(overrides)
    return gpu


class Rig:
    """A fake GPU machine: NVML's state, who we are, a site with the fake adapter and the fake meter."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.nvml_path = tmp / "nvml.json"
        self.proc = tmp / "proc"
        self.site = make_distribution(tmp / "site", "cnnbench-fake",
                                      {"fake": "cnnbench_fake", "fakemeter": "cnnbench.testing"},
                                      {"cnnbench_fake": FAKE_PLUGIN / "cnnbench_fake"})
        self.gpus(gpu_state(0), gpu_state(1))
        self.identity(uid=0, caps=ALL_CAPS)

    def gpus(self, *gpus: dict, deny: tuple[str, ...] = ()) -> None:
        self.nvml_path.write_text(json.dumps({"gpus": list(gpus), "deny": list(deny), "calls": []}))

    def nvml(self) -> dict:
        return json.loads(self.nvml_path.read_text())

    def calls(self) -> list[tuple]:
        return [(c["call"].removeprefix("nvmlDevice"), c["gpu"], *c["args"]) for c in self.nvml().get("calls", [])]

    def settings(self, index: int = 0) -> tuple[list[int], int]:
        gpu = self.nvml()["gpus"][index]
        return gpu["application"], gpu["power_limit_mw"]

    def identity(self, uid: int, caps: str = "0000000000000000") -> None:
        (self.proc / "self").mkdir(parents=True, exist_ok=True)
        (self.proc / "self" / "status").write_text(
            f"Name:\tpython\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\nGroups:\t\n"
            f"CapEff:\t{caps}\n")

    @property
    def state_file(self) -> Path:
        return Path(os.environ["CNNBENCH_HOME"]) / "dvfs-state.json"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, CNNBENCH_TEST_NVML_STATE=str(self.nvml_path), CNNBENCH_PROC_ROOT=str(self.proc))
        env["PYTHONPATH"] = os.pathsep.join([str(FAKE_NVML), str(ROOT), str(ROOT / "plugins"), str(self.site)])
        env.update(extra)
        return env

    def cli(self, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cnnbench", "dvfs", *args], capture_output=True, text=True,
                              env=self.env(**extra), timeout=timeout)

    def popen(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cnnbench", "dvfs", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(**extra))


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


def one_line_error(proc: subprocess.CompletedProcess, text: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and text in proc.stderr, proc.stderr


# -- reading and planning -----------------------------------------------------------------------------


def test_plan_lists_the_clock_pairs_and_power_range_and_changes_nothing(rig):
    rig.identity(uid=1000)
    proc = rig.cli("--framework", "fake", "--network", "lenet", "--power-limits", "150,225")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "GPU 0: Tesla K20m (GPU-2f1e0c3a-0000-4000-8000-000000000000, 00000000:03:00.0)  <- cuda" in out
    assert "GPU 1: Tesla K20m" in out
    assert "application clocks now 2600:705 MHz (memory:graphics), default 2600:705 MHz" in out
    assert "    2600: 758, 705, 666, 640, 614\n    324: 324\n" in out
    assert "power limit now 225 W, default 225 W, range 150-225 W" in out
    # the default plan: every memory clock, its graphics clocks spread, times each power limit
    assert "plan: 12 settings on GPU 0 (cuda)" in out
    assert out.count("2600          758             150") == 1 and "324           324             225" in out
    assert "workload: fake lenet bs64 cuda fp32 vendor; warm-up 2, 5 windows of >= 1 s each" in out
    assert "estimated cells: 12 (12 settings x 1 cell" in out
    assert "nothing was changed: without --allow-clock-changes" in out
    assert "application clocks need root (NVML restricts them on GPU 0" in out
    assert "the power limit needs root or CAP_SYS_ADMIN" in out
    assert "never pass --allow-clock-changes on a shared or lent machine" in out
    assert rig.calls() == [] and not rig.state_file.exists()


def test_the_plan_as_json_and_an_unrestricted_gpu_needs_no_root_for_clocks(rig):
    rig.identity(uid=1000)
    rig.gpus(gpu_state(0, api_restricted=False))
    proc = rig.cli("--max-settings", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    # 4 settings over 2 memory clocks: 2 graphics clocks of 2600 (both ends), the one of 324
    assert [(s["memory_mhz"], s["graphics_mhz"]) for s in plan["plan"]] == [(2600, 758), (2600, 614), (324, 324)]
    assert plan["applied"] is False and plan["missing_privileges"] == [] and plan["workload"] is None
    assert plan["gpus"][0]["clocks"] == {"2600": [758, 705, 666, 640, 614], "324": [324]}
    assert plan["gpus"][0]["clocks_restricted"] is False
    assert (plan["gpus"][0]["power_min_w"], plan["gpus"][0]["power_max_w"]) == (150, 225)
    assert rig.calls() == []


@pytest.mark.parametrize("args, message", [
    (["--clocks", "2600:700"], "--clocks 2600:700: GPU 0 (Tesla K20m) cannot run graphics at 700 MHz with memory "
                               "at 2600 MHz; nearest supported: 2600:705, 2600:666"),
    (["--clocks", "800:705"], "has no memory clock 800 MHz; valid memory clocks: 2600, 324 MHz"),
    (["--clocks", "fast"], "--clocks takes MEMORY:GRAPHICS pairs in MHz (e.g. 2600:758), current or default"),
    (["--clocks", "2600:705,current"], "--clocks names one pair twice"),
    (["--power-limits", "100"], "--power-limits 100: GPU 0 (Tesla K20m) takes 150-225 W"),
    (["--power-limits", "lots"], "--power-limits takes watts, e.g. 225, not 'lots'"),
    (["--max-settings", "0"], "--max-settings must be a positive whole number"),
    (["--device", "cpu"], "--device cuda or cuda:N, not 'cpu' (the CPU side: cnnbench dvfs --cpu)"),
    (["--device", "cuda:2"], "--device cuda:2: NVML sees 2 GPUs; valid choices: cuda:0, cuda:1"),
    (["--governors", "performance"], "--governors is for --cpu sweeps"),
    (["--framework", "nosuch"], "unknown framework 'nosuch'; valid choices:"),
])
def test_bad_flags_are_one_line_naming_the_valid_choices(rig, args, message):
    one_line_error(rig.cli(*args), message)
    assert rig.calls() == []


def test_allowed_but_without_the_privilege_is_one_line_and_changes_nothing(rig):
    rig.identity(uid=1000)
    proc = rig.cli(*WORKLOAD, "--clocks", "2600:758", "--allow-clock-changes")
    one_line_error(proc, "cannot apply the plan: application clocks need root (NVML restricts them on GPU 0; as "
                         "root, 'nvidia-smi -i 0 -acp UNRESTRICTED' lets other users set them); nothing was changed")
    assert rig.calls() == [] and not rig.state_file.exists()


def test_a_driver_that_refuses_the_first_setting_leaves_nothing_changed(rig):
    rig.gpus(gpu_state(0), deny=("nvmlDeviceSetApplicationsClocks",))
    proc = rig.cli(*WORKLOAD, "--clocks", "2600:758", "--allow-clock-changes")
    one_line_error(proc, "GPU 0: application clocks 2600:758 MHz failed: Insufficient Permissions (NVML error 4) "
                         "(run as root; never on a shared or lent machine); nothing was changed")
    assert rig.calls() == [("SetApplicationsClocks", 0, 2600, 758)]  # the refused attempt, nothing to undo
    assert rig.settings() == ([2600, 705], 225000) and not rig.state_file.exists()


# -- applying and restoring ---------------------------------------------------------------------------


def test_each_setting_is_applied_then_the_originals_come_back(rig):
    proc = rig.cli(*WORKLOAD, "--meters", "fake", "--clocks", "2600:758,324:324", "--power-limits", "150,200",
                   "--allow-clock-changes", "--json")
    assert proc.returncode == 0, proc.stderr
    applied = [("SetApplicationsClocks", 0, m, g) for m, g in ((2600, 758), (2600, 758), (324, 324), (324, 324))]
    powers = [("SetPowerManagementLimit", 0, w) for w in (150000, 200000, 150000, 200000)]
    assert rig.calls() == [c for pair in zip(applied, powers) for c in pair] + [
        ("SetApplicationsClocks", 0, 2600, 705), ("SetPowerManagementLimit", 0, 225000)]
    assert rig.settings(0) == ([2600, 705], 225000) and rig.settings(1) == ([2600, 705], 225000)
    assert not rig.state_file.exists()
    assert "restored GPU 0 (Tesla K20m): application clocks 2600:705 MHz, power limit 225 W" in proc.stderr
    sweep = json.loads(proc.stdout)
    rows = sweep["settings"]
    assert [(r["applied"]["application_mhz"], r["applied"]["power_limit_w"]) for r in rows] == [
        ([2600, 758], 150), ([2600, 758], 200), ([324, 324], 150), ([324, 324], 200)]
    assert all(r["status"] == "ok" and r["result"]["provenance"]["dvfs"]["uuid"].endswith("000") for r in rows)
    # the fake meter's known watts (40 W package + 6 W DRAM): energy per image follows from the speed
    for r in rows:
        assert r["power_w"] == pytest.approx(46.0, rel=0.05)
        assert r["edp"] == pytest.approx(r["energy_per_image_j"] / r["images_per_s"])
    assert sweep["valley"]["claimed"]
    assert sweep["valley"]["least_energy"] == min(rows, key=lambda r: r["energy_per_image_j"])["setting"]
    assert sweep["valley"]["least_edp"] == min(rows, key=lambda r: r["edp"])["setting"]
    # each setting is its own stored run, whose command line names the setting
    from cnnbench.results.store import Store

    with Store(os.environ["CNNBENCH_DB"]) as store:
        sessions = list(reversed(store.sessions()))
        argvs = [s.argv for s in sessions]
        stored = [store.results(s.id)[0][1] for s in sessions]
    # and each stored result records the setting it ran at
    assert [(r.provenance["dvfs"]["application_mhz"], r.provenance["dvfs"]["power_limit_w"]) for r in stored] == [
        ([2600, 758], 150), ([2600, 758], 200), ([324, 324], 150), ([324, 324], 200)]
    assert [a[a.index("--clocks") + 1:] for a in argvs] == [
        ["2600:758", "--power-limits", "150"], ["2600:758", "--power-limits", "200"],
        ["324:324", "--power-limits", "150"], ["324:324", "--power-limits", "200"]]


def test_the_table_marks_the_valley_and_says_unavailable_without_a_meter(rig):
    proc = rig.cli(*WORKLOAD, "--meters", "fake", "--clocks", "2600:758,2600:614", "--allow-clock-changes")
    assert proc.returncode == 0, proc.stderr
    assert "<- least J/image" in proc.stdout and "<- least EDP" in proc.stdout
    assert "energy valley: least energy per image at setting" in proc.stdout
    proc = rig.cli(*WORKLOAD, "--meters", "none", "--clocks", "2600:758,2600:614", "--allow-clock-changes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("unavailable [1]") == 2 and "[1] meters disabled (--meters none)" in proc.stdout
    assert "no energy valley claimed: energy unavailable for setting 1 (meters disabled (--meters none))" in proc.stdout
    assert " 0.0 " not in proc.stdout and "least J/image" not in proc.stdout


def test_an_exception_in_the_workload_restores_the_originals(rig, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNBENCH_TEST_NVML_STATE", str(rig.nvml_path))
    monkeypatch.setenv("CNNBENCH_PROC_ROOT", str(rig.proc))
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_NVML / "pynvml.py")
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.syspath_prepend(str(rig.site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(rig.site), os.environ.get("PYTHONPATH", "")]))
    import cnnbench.api
    import cnnbench.plugins
    from cnnbench.cli import build_parser
    from cnnbench.cli.dvfs import cmd_dvfs

    monkeypatch.setattr(cnnbench.plugins, "_host", None)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    real_execute, calls = cnnbench.api.execute, []

    def failing_execute(*args, **kwargs):
        calls.append(rig.settings())
        if len(calls) == 2:
            raise RuntimeError("the host broke while setting 2 ran")
        return real_execute(*args, **kwargs)

    monkeypatch.setattr(cnnbench.api, "execute", failing_execute)
    args = build_parser().parse_args(["dvfs", *WORKLOAD, "--meters", "none", "--clocks", "2600:758,2600:640",
                                      "--power-limits", "180", "--allow-clock-changes", "-q"])
    with pytest.raises(RuntimeError, match="the host broke"):
        cmd_dvfs(args)
    assert calls == [([2600, 758], 180000), ([2600, 640], 180000)]  # the state while each workload ran
    assert "CUDA_DEVICE_ORDER" not in os.environ  # set for the sweep's workers only
    assert rig.settings() == ([2600, 705], 225000) and not rig.state_file.exists()
    assert rig.calls()[-2:] == [("SetApplicationsClocks", 0, 2600, 705), ("SetPowerManagementLimit", 0, 225000)]


def wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def workers_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_host_restores_the_originals(rig, signum, code):
    host = rig.popen(*WORKLOAD, "--meters", "none", "--clocks", "2600:666,324:324", "--power-limits", "160",
                     "--allow-clock-changes", CNNBENCH_FAKE_MODE="hang")
    try:
        wait_for(lambda: rig.state_file.exists() and rig.settings() == ([2600, 666], 160000) and workers_of(host.pid),
                 "the first setting's worker")
        state = json.loads(rig.state_file.read_text())
        assert state["pid"] == host.pid
        if signum == signal.SIGTERM:
            one_line_error(rig.cli("--restore"), f"(pid {host.pid}) is still running and restores on its own")
        assert state["gpus"] == [{"index": 0, "uuid": gpu_state(0)["uuid"], "name": "Tesla K20m",
                                  "application_mhz": [2600, 705], "power_limit_w": 225.0}]
        host.send_signal(signum)
        out, err = host.communicate(timeout=60)
    finally:
        if host.poll() is None:
            host.kill()
            host.communicate()
    assert host.returncode == code, err
    assert "restored GPU 0 (Tesla K20m): application clocks 2600:705 MHz, power limit 225 W" in err
    assert "interrupted; 0 of 2 settings finished" in err
    assert "interrupted" in out.splitlines()[3]  # the setting that was running, in the table
    assert rig.settings() == ([2600, 705], 225000) and not rig.state_file.exists()
    assert ("SetApplicationsClocks", 0, 324, 324) not in rig.calls()  # the sweep stopped at the signal


def test_a_crashing_worker_is_a_failed_setting_and_the_sweep_goes_on(rig):
    proc = rig.cli(*WORKLOAD, "--meters", "none", "--clocks", "2600:758,324:324", "--allow-clock-changes",
                   CNNBENCH_FAKE_MODE="segfault")
    assert proc.returncode == 1, proc.stderr
    assert [c for c in rig.calls() if c[0] == "SetApplicationsClocks"] == [
        ("SetApplicationsClocks", 0, 2600, 758), ("SetApplicationsClocks", 0, 324, 324),
        ("SetApplicationsClocks", 0, 2600, 705)]
    assert proc.stdout.count("error [1]") == 2 and "worker killed by SIGSEGV" in proc.stdout
    assert "no energy valley claimed: fewer than two settings ran to completion" in proc.stdout
    assert rig.settings() == ([2600, 705], 225000) and not rig.state_file.exists()


def test_restore_after_the_host_was_killed(rig):
    host = rig.popen(*WORKLOAD, "--meters", "none", "--clocks", "324:324", "--power-limits", "150",
                     "--allow-clock-changes", CNNBENCH_FAKE_MODE="hang")
    workers: list[int] = []
    try:
        wait_for(lambda: rig.settings() == ([324, 324], 150000) and workers_of(host.pid), "the setting's worker")
        workers = workers_of(host.pid)
        host.kill()
        host.communicate(timeout=30)
    finally:
        if host.poll() is None:
            host.kill()
            host.communicate()
        for pid in workers:
            # the orphaned worker (its own process group, hanging in the fake's hang mode): ours to end
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert rig.state_file.exists() and rig.settings() == ([324, 324], 150000)
    # its leftovers block a new sweep, whose "originals" would be wrong
    proc = rig.cli(*WORKLOAD, "--clocks", "2600:758", "--allow-clock-changes")
    one_line_error(proc, "ended without restoring the settings it changed; run 'cnnbench dvfs --restore' first")
    proc = rig.cli()
    assert proc.returncode == 0 and "WARNING: a sweep left changed settings behind" in proc.stdout
    # a restore the driver refuses keeps the state file, to try again
    nvml = rig.nvml()
    rig.nvml_path.write_text(json.dumps({**nvml, "deny": ["nvmlDeviceSetApplicationsClocks"]}))
    proc = rig.cli("--restore")
    assert proc.returncode == 1
    assert "NOT restored: GPU 0 (Tesla K20m): restoring application clocks 2600:705 MHz failed: Insufficient " \
           "Permissions" in proc.stderr
    assert "GPU 0 (Tesla K20m): power limit 225 W" in proc.stdout  # what could be put back, was
    assert rig.state_file.exists() and rig.settings() == ([324, 324], 225000)
    rig.nvml_path.write_text(json.dumps({**rig.nvml(), "deny": []}))
    proc = rig.cli("--restore")
    assert proc.returncode == 0, proc.stderr
    assert f"(left by pid {host.pid}" in proc.stdout
    assert "GPU 0 (Tesla K20m): application clocks 2600:705 MHz, power limit 225 W" in proc.stdout
    assert rig.settings() == ([2600, 705], 225000) and not rig.state_file.exists()
    proc = rig.cli("--restore")
    assert proc.returncode == 0 and proc.stdout.startswith("nothing to restore: no dvfs state file at ")


def test_the_fake_nvml_refuses_to_load_outside_the_tests():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAKE_NVML), str(ROOT)]))
    env.pop("CNNBENCH_TEST_NVML_STATE", None)
    proc = subprocess.run([sys.executable, "-c", "import pynvml"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "is a test fake" in proc.stderr


# -- planning and the valley, as functions ------------------------------------------------------------


def test_spread_keeps_both_ends():
    from cnnbench.system.dvfs import spread

    values = list(range(1980, 345, -15))  # an H100-like ladder of graphics clocks
    picked = spread(values, 5)
    assert picked[0] == 1980 and picked[-1] == values[-1] and len(picked) == 5
    assert spread([758, 705], 5) == [758, 705] and spread([758, 705, 666], 1) == [758]


def test_cuda_device_numbers_follow_cuda_visible_devices(monkeypatch):
    from cnnbench.config import UsageError
    from cnnbench.system.dvfs import Gpu, target_gpu

    gpus = [Gpu(0, "a", "GPU-aaaa1111-0000", "00000000:81:00.0"), Gpu(1, "b", "GPU-bbbb2222-0000", "00000000:17:00.0")]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert target_gpu(gpus, "cuda").name == "b"  # PCI bus order
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert target_gpu(gpus, "cuda:0").name == "a"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa1111")
    assert target_gpu(gpus, "cuda:0").name == "a"
    with pytest.raises(UsageError, match="makes 1 GPU"):
        target_gpu(gpus, "cuda:1")


def row(setting: int, j: float | None, images_per_s: float, x: int, unavailable: str | None = None) -> dict:
    return {"setting": setting, "label": f"2600:{x} MHz", "status": "ok", "reason": None,
            "cells": ["2600", str(x), "225"],
            "group": (2600, None), "x": x, "time_per_iter_ms": 1e3 * 128 / images_per_s, "images_per_s": images_per_s,
            "energy_per_image_j": j, "power_w": None if j is None else j * images_per_s,
            "edp": None if j is None else j / images_per_s, "energy_unavailable": unavailable, "result": None}


def test_the_valley_is_the_least_energy_and_the_least_edp():
    from cnnbench.results.sweep import energy_valley, sweep_table

    # the paper's shape: slow clocks cost energy by time, fast ones by power; EDP favours speed
    rows = [row(1, 0.90, 800, 614), row(2, 0.70, 1000, 666), row(3, 0.72, 1200, 705), row(4, 0.95, 1300, 758)]
    valley = energy_valley(rows)
    assert valley == {"claimed": True, "least_energy": 2, "least_edp": 3, "at_edge": False, "failed": []}
    table = sweep_table({"kind": "gpu"}, rows, valley)
    lines = table.splitlines()  # workload, header, rule, then settings 1-4
    assert "<- least J/image" in lines[4] and "<- least EDP" in lines[5]
    assert "least energy per image at setting 2 (2600:666 MHz): 0.7 J/image" in table
    assert energy_valley([row(1, 0.5, 900, 614), row(2, 0.7, 1000, 666), row(3, 0.8, 1100, 705)])["at_edge"]
    rows[1] = row(2, None, 1000, 666, unavailable="no powercap here")
    valley = energy_valley(rows)
    assert valley == {"claimed": False, "reason": "energy unavailable for setting 2 (no powercap here)"}
    table = sweep_table({"kind": "gpu"}, rows, valley)
    assert "unavailable [1]" in table and "[1] no powercap here" in table and "least J/image" not in table


# -- the CPU side -------------------------------------------------------------------------------------


def cpufreq_tree(root: Path, policies: int = 2, listed: bool = True) -> Path:
    for n in range(policies):
        p = root / f"policy{n}"
        p.mkdir(parents=True)
        files = {"scaling_governor": "schedutil", "scaling_available_governors": "performance powersave schedutil",
                 "scaling_max_freq": "3000000", "scaling_min_freq": "1200000", "cpuinfo_min_freq": "1200000",
                 "cpuinfo_max_freq": "3000000", "affected_cpus": str(n), "scaling_driver": "acpi-cpufreq"}
        if listed:
            files["scaling_available_frequencies"] = "3000000 2400000 1800000 1200000"
        for name, text in files.items():
            (p / name).write_text(text + "\n")
            (p / name).chmod(0o644)
    return root


def cpu_files(root: Path) -> list[tuple[str, str]]:
    return [((p / "scaling_governor").read_text().strip(), (p / "scaling_max_freq").read_text().strip())
            for p in sorted(root.glob("policy*"))]


def test_cpu_listing_and_plan(rig, tmp_path):
    root = cpufreq_tree(tmp_path / "cpufreq")
    rig.identity(uid=os.getuid() + 4242)  # not the files' owner, no capabilities
    proc = rig.cli("--cpu", CNNBENCH_CPUFREQ_ROOT=str(root))
    assert proc.returncode == 0, proc.stderr
    assert ("CPU 2 policies, policy0-policy1 (CPUs 0,1, driver acpi-cpufreq): governor schedutil (available: "
            "performance, powersave, schedutil); max 3000 MHz of 1200-3000 MHz; frequencies (MHz): 3000, 2400, 1800, "
            "1200") in proc.stdout
    assert "plan: 4 settings on every CPU (2 cpufreq policies)" in proc.stdout
    assert "writing policy0/scaling_governor, policy0/scaling_max_freq, policy1/scaling_governor, " \
           "policy1/scaling_max_freq under" in proc.stdout and "needs root" in proc.stdout
    proc = rig.cli("--cpu", "--governors", "powersave,performance", "--cpu-max-freqs", "1800", "--json",
                   CNNBENCH_CPUFREQ_ROOT=str(root))
    assert [tuple(s.values()) for s in json.loads(proc.stdout)["plan"]] == [("powersave", 1800), ("performance", 1800)]
    one_line_error(rig.cli("--cpu", "--cpu-max-freqs", "2000", CNNBENCH_CPUFREQ_ROOT=str(root)),
                   "--cpu-max-freqs 2000: the CPUs here take nearest listed: 1800, 2400 MHz")
    one_line_error(rig.cli("--cpu", "--governors", "ondemand", CNNBENCH_CPUFREQ_ROOT=str(root)),
                   "unknown governor 'ondemand'; valid choices: performance, powersave, schedutil")
    one_line_error(rig.cli(*WORKLOAD, "--cpu", "--device", "cpu", "--allow-clock-changes",
                           CNNBENCH_CPUFREQ_ROOT=str(root)), "needs root")
    assert cpu_files(root) == [("schedutil", "3000000")] * 2
    unlisted = cpufreq_tree(tmp_path / "pstate", policies=1, listed=False)
    proc = rig.cli("--cpu", "--max-settings", "4", "--json", CNNBENCH_CPUFREQ_ROOT=str(unlisted))
    assert [s["max_mhz"] for s in json.loads(proc.stdout)["plan"]] == [3000, 2400, 1800, 1200]


@pytest.mark.parametrize("make", [lambda p: p / "absent", lambda p: p.mkdir() or p])
def test_no_cpufreq_here(rig, tmp_path, make):
    one_line_error(rig.cli("--cpu", CNNBENCH_CPUFREQ_ROOT=str(make(tmp_path / "cpufreq"))), "no cpufreq here: ")


def test_cpu_settings_are_applied_then_restored(rig, tmp_path):
    root = cpufreq_tree(tmp_path / "cpufreq")
    proc = rig.cli(*WORKLOAD, "--cpu", "--device", "cpu", "--meters", "none", "--governors", "powersave,performance",
                   "--cpu-max-freqs", "1200", "--allow-clock-changes", "--json", CNNBENCH_CPUFREQ_ROOT=str(root))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["settings"]
    assert [{p: v["governor"] for p, v in r["applied"]["policies"].items()} for r in rows] == [
        {"policy0": "powersave", "policy1": "powersave"}, {"policy0": "performance", "policy1": "performance"}]
    assert all(v["max_khz"] == "1200000" for r in rows for v in r["applied"]["policies"].values())
    assert cpu_files(root) == [("schedutil", "3000000")] * 2 and not rig.state_file.exists()
    assert "restored CPU (2 policies): governor schedutil, max 3000 MHz" in proc.stderr
    assert rig.calls() == []  # the GPU was never touched
