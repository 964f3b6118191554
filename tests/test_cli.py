"""The command line as users and scripts rely on it: tables, --json, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, ROOT


def one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_is_instant_and_imports_no_framework():
    code = (
        "import sys\n"
        "from cnnbench.cli import main\n"
        "for argv in (['--help'], ['compare', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "main(['list'])\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'mxnet', 'numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_torch_grid_of_eight_cells_all_ok(cli):
    proc = cli("compare", "--frameworks", "torch", "--network", "lenet", "--batch-size", "8,16",
               "--precision", "fp32,bf16", "--kernels", "vendor,native", "--device", "cpu", "--meters", "none",
               "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    results = doc["results"]
    assert len(results) == 8
    assert {(r["batch_size"], r["precision"], r["kernels"]) for r in results} == {
        (b, p, k) for b in (8, 16) for p in ("fp32", "bf16") for k in ("vendor", "native")
    }
    import torch

    onednn_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    for r in results:
        if r["precision"] == "bf16" and r["kernels"] == "vendor" and not onednn_bf16:
            # a CPU without AVX-512 BF16 or AMX: refused with the reason, not run on another kernel family
            assert r["status"] == "unsupported" and "oneDNN has no bf16 kernels" in r["reason"], r
            continue
        assert r["status"] == "ok", r["reason"]
        for key in ("framework", "network", "device", "threads", "reason", "time_per_iter_ms", "images_per_s", "energy"):
            assert key in r
        assert r["time_per_iter_ms"] > 0 and r["images_per_s"] > 0 and r["gflops_per_s"] > 0
        assert r["energy"] == {} and r["energy_unavailable"] == "meters disabled (--meters none)"
        prov = r["provenance"]
        assert prov["worker"]["torch"].startswith("2.") and prov["worker"]["threads_used"] >= 1
        assert prov["host"]["logical_cpus"] >= 1
        assert prov["network"]["params"] == 431080


def test_table_shows_axes_timing_and_energy_unavailable_with_reason(cli):
    proc = cli("run", "--framework", "torch", "--network", "lenet", "--batch-size", "4", "--device", "cpu", *FAST,
               env={"CNNBENCH_POWERCAP_ROOT": "/nonexistent/powercap"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "network: lenet" in out and "batch: 4" in out and "precision: fp32" in out
    assert "ms/iter (median ± sd)" in out and "images/s" in out and "GFLOP/s" in out
    assert "unavailable [1]" in out and "rapl: no powercap tree at /nonexistent/powercap" in out


def test_cuda_without_cuda_is_unsupported_with_reason(cli):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = cli("compare", "--frameworks", "torch", "--network", "lenet", "--batch-size", "2",
               "--device", "cuda", "--precision", "fp32,fp16", "--json", *FAST)
    # a grid in which no cell could run measured nothing: that is not a success a script may take for one
    assert proc.returncode == 1, proc.stderr
    assert "nothing was measured: every one of the 2 cells was unsupported or unavailable" in proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [r["status"] for r in results] == ["unsupported", "unsupported"]
    assert all("CUDA is not available" in r["reason"] for r in results)


def test_a_grid_with_some_cells_measured_keeps_exit_0_beside_unsupported_ones(cli):
    proc = cli("compare", "--frameworks", "caffe", "--network", "lenet", "--batch-size", "2",
               "--kernels", "vendor,native", "--device", "cpu", "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in json.loads(proc.stdout)["results"]] == ["unsupported", "ok"]
    assert "nothing was measured" not in proc.stderr


def test_a_failed_cell_exits_1_and_keeps_the_others(cli, fake_site):
    env = {"CNNBENCH_FAKE_MODE": "raise"}
    proc = cli("compare", "--frameworks", "torch,fake", "--network", "lenet", "--batch-size", "2",
               "--device", "cpu", "--json", *FAST, env=env)
    assert proc.returncode == 1, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [(r["framework"], r["status"]) for r in results] == [("torch", "ok"), ("fake", "error")]
    assert "fake step failed" in results[1]["reason"]


def test_sigterm_to_the_host_stops_the_worker_and_prints_what_finished(fake_site):
    env = dict(os.environ, CNNBENCH_FAKE_MODE="hang")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env["PYTHONPATH"]])
    host = subprocess.Popen([sys.executable, "-m", "cnnbench", "compare", "--frameworks", "fake",
                             "--network", "lenet", "--device", "cpu", *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    children = Path(f"/proc/{host.pid}/task/{host.pid}/children")
    deadline = time.monotonic() + 60
    workers = []
    while not workers and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = [int(pid) for pid in children.read_text().split()]
    assert workers, "the host never started a worker"
    time.sleep(1.0)
    host.send_signal(signal.SIGTERM)
    out, err = host.communicate(timeout=30)
    assert host.returncode == 143, err
    assert "interrupted; 0 of 1 cell finished" in err
    assert "no results" in out
    time.sleep(0.5)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_unavailable_framework_is_a_status_not_a_failure(cli, fake_site):
    proc = cli("compare", "--frameworks", "fake-missing", "--network", "lenet", "--device", "cpu", *FAST)
    # a status, not a crash: the table says why; but a grid of nothing else measured nothing (exit 1)
    assert proc.returncode == 1, proc.stderr
    assert "nothing was measured" in proc.stderr
    assert "unavailable [1]" in proc.stdout
    assert "pip install cnnbench-fake-framework" in proc.stdout


def test_default_frameworks_are_the_available_ones(cli, fake_site):
    proc = cli("compare", "--network", "lenet", "--batch-size", "2", "--device", "cpu", "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    from cnnbench.plugins import PluginHost

    host = PluginHost()
    available = [name for name in host.adapters() if host.availability(name).available]
    assert {"caffe", "fake", "torch"} <= set(available)
    assert [r["framework"] for r in json.loads(proc.stdout)["results"]] == available


BAD_INPUT = [
    (["compare", "--frameworks", "torch,nosuch"], "unknown framework 'nosuch'; valid choices: caffe, "),
    (["compare", "--frameworks", "torch", "--precision", "fp8"], "unknown precision 'fp8'; valid choices: fp32, fp16, bf16, tf32"),
    (["compare", "--frameworks", "torch", "--kernels", "cudnn"], "unknown kernels 'cudnn'; valid choices: vendor, native"),
    (["compare", "--frameworks", "torch", "--device", "tpu"], "unknown device 'tpu'; valid choices: cpu, cuda, cuda:N"),
    (["compare", "--frameworks", "torch", "--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["compare", "--frameworks", "torch", "--batch-size", "0"], "--batch-size must be a positive whole number, not '0'"),
    (["compare", "--frameworks", "torch", "--batch-size", "-4"], "--batch-size must be a positive whole number"),
    (["compare", "--frameworks", "torch", "--batch-size", "big"], "not 'big'"),
    (["compare", "--frameworks", "torch", "--batch-size", "8,,16"], "no empty items"),
    (["compare", "--frameworks", ""], "no empty items"),
    (["compare", "--frameworks", "torch,torch"], "lists 'torch' twice"),
    (["compare", "--frameworks", "torch", "--threads", "0"], "--threads must be a positive whole number"),
    (["compare", "--frameworks", "torch", "--min-time", "-1"], "--min-time must be a positive number"),
    (["compare", "--frameworks", "torch", "--min-time", "0"], "--min-time must be a positive number"),
    (["compare", "--frameworks", "torch", "--min-time", "nan"], "--min-time must be a positive number"),
    (["compare", "--frameworks", "torch", "--repeats", "0"], "--repeats must be a positive whole number"),
    (["compare", "--frameworks", "torch", "--warmup", "x"], "--warmup must be a whole number >= 0"),
    (["compare", "--frameworks", "torch", "--timeout", "0"], "--timeout must be a positive number"),
    (["compare", "--frameworks", "torch", "--meters", "wattmeter"], "unknown meter 'wattmeter'; valid choices: auto, none, nvml"),
    (["compare", "--frameworks", "torch", "--meters", "rapl:dram"], "unknown option 'dram' for meter 'rapl'"),
    (["compare", "--frameworks", "torch", "--network", "nosuch"], "unknown network 'nosuch'; valid choices: alexnet, "),
    (["compare", "--frameworks", "torch", "--network", "missing/net.toml"], "missing/net.toml"),
    (["run", "--framework", "torch", "--batch-size", "8,16"], "takes one value with 'run'"),
    (["run", "--network", "lenet"], "the following arguments are required: --framework"),
    (["compare", "--frameworks", "torch", "--bogus"], "unrecognized arguments: --bogus"),
    (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
    ([], "a command is required; valid choices: list, networks, run, compare, verify"),
    (["compare", "--frameworks", "torch", "--batch-size", "8,08"], "--batch-size lists 8 twice"),
    (["compare", "--frameworks", "torch", "--timeout", "1e10"], "--timeout must be a positive number up to 604800"),
    (["compare", "--frameworks", "torch", "--min-time", "1e300"], "--min-time must be a positive number up to 3600"),
]


@pytest.mark.parametrize("argv, expected", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2(cli, argv, expected):
    line = one_line_error(cli(*argv))
    assert expected in line
