"""The host side: every way a worker can end becomes that cell's status, and the grid goes on."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cnnbench.config import Measurement, RunConfig
from cnnbench.spec.catalog import resolve_network
from cnnbench.plugins import PluginHost
from cnnbench.execution.runner import Cell, preflight, run_cell, run_grid

FAST = Measurement(warmup=1, min_time=0.02, repeats=2)


def cell(framework="fake", **config) -> Cell:
    config.setdefault("batch_size", 4)
    return Cell(RunConfig(framework=framework, network="lenet", **config), resolve_network("lenet"))


@pytest.mark.parametrize(
    "mode, status, reason",
    [
        ("sleep", "ok", None),
        ("stderr", "ok", None),
        ("unsupported", "unsupported", "refuses this configuration"),
        ("oom", "oom", "fake device is full"),
        ("raise", "error", "RuntimeError: fake step failed"),
        ("segfault", "error", "worker killed by SIGSEGV"),
        ("exit", "error", "worker exited with code 3 without a result"),
    ],
)
def test_worker_outcomes_become_statuses(fake_site, monkeypatch, mode, status, reason):
    monkeypatch.setenv("CNNBENCH_FAKE_MODE", mode)
    result = run_cell(cell(), FAST, timeout=60)
    assert result.status == status
    if reason:
        assert reason in result.reason
    else:
        assert result.reason is None and result.time_per_iter_ms > 0 and len(result.windows) == 2
        assert result.images_per_s == pytest.approx(4 / (result.time_per_iter_ms / 1e3))


def test_hanging_worker_times_out_and_is_killed(fake_site, monkeypatch):
    monkeypatch.setenv("CNNBENCH_FAKE_MODE", "hang")
    pids = []
    result = run_cell(cell(), FAST, timeout=3, on_event=lambda event, proc: pids.append(proc.pid))
    assert result.status == "timeout"
    assert "--timeout 3 s" in result.reason
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def test_deadline_holds_after_the_worker_closes_stdout(tmp_path):
    """A worker that closes its event stream and then hangs on its way out is still stopped."""
    stand_in = tmp_path / "python"
    stand_in.write_text("#!/bin/sh\nexec 1>&-\nexec sleep 60\n")
    stand_in.chmod(0o755)
    started = time.monotonic()
    result = run_cell(cell("torch"), FAST, timeout=2, python=str(stand_in))
    assert result.status == "timeout"
    assert time.monotonic() - started < 20


def test_preflight_answers_without_a_worker(fake_site):
    host = PluginHost()
    missing = preflight(cell("fake-missing"), host)
    assert missing.status == "unavailable"
    assert "not installed" in missing.reason and "pip install cnnbench-fake-framework" in missing.reason
    bf16 = preflight(cell(precision="bf16"), host)
    assert (bf16.status, bf16.reason) == ("unsupported", "the fake framework computes in fp32 only")
    threads = preflight(cell(threads=2), host)
    assert threads.status == "unsupported" and "thread" in threads.reason
    tf32 = preflight(cell("torch", precision="tf32"), host)
    assert tf32.status == "unsupported" and "CPU has none" in tf32.reason
    assert preflight(cell(), host) is None


def test_sigkill_mid_run_fails_that_cell_and_the_grid_completes():
    """A real PyTorch grid: the second cell's worker is SIGKILLed at its first timed window."""
    cells = [cell("torch", batch_size=b) for b in (2, 4, 8)]
    killed = []

    def on_event(event, proc):
        if event["event"] == "window" and len(killed) == 0 and event_cell[0] == 1:
            killed.append(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)

    event_cell = [None]

    def on_start(index, _cell):
        event_cell[0] = index

    host = PluginHost(entry_points=False)
    results = list(run_grid(cells, FAST, host, timeout=120, on_event=on_event, on_start=on_start))
    assert killed
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert results[1].reason.startswith("worker killed by SIGKILL")
    assert results[1].time_per_iter_ms is None
    assert all(r.time_per_iter_ms > 0 for r in (results[0], results[2]))
