"""Faults (issue 11): a worker that runs out of memory, a host that is interrupted, a results database
that fills up. Each costs the cell it hits, never a finished measurement, and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, ROOT
from cnnbench.config import Measurement, RunConfig
from cnnbench.spec.catalog import resolve_network
from cnnbench.execution.runner import Cell, resident_bytes, run_cell

QUICK = Measurement(warmup=1, min_time=0.02, repeats=2)
MiB = 1 << 20


def fake_cell() -> Cell:
    return Cell(RunConfig(framework="fake", network="lenet", batch_size=2), resolve_network("lenet"))


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# -- memory ----------------------------------------------------------------------------------------


def test_resident_memory_of_a_process_tree_is_read_from_proc():
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(64 << 20); time.sleep(30)"])
    try:
        own = resident_bytes(os.getpid())
        deadline = time.monotonic() + 20
        while resident_bytes(os.getpid()) < own + 64 * MiB and time.monotonic() < deadline:
            time.sleep(0.05)
        # our own memory plus the child's 64 MiB (bytearray writes zeros: every page is touched)
        assert resident_bytes(os.getpid()) >= own + 64 * MiB
    finally:
        child.kill()
        child.wait()
    assert resident_bytes(2 ** 22 + 12345) is None  # no such process


def test_an_allocation_beyond_the_limit_fails_in_the_worker_and_is_oom(fake_site, monkeypatch):
    """The worker's data-segment limit refuses the allocation itself: the framework's error, status oom."""
    monkeypatch.setenv("CNNBENCH_FAKE_MODE", "alloc")
    result = run_cell(fake_cell(), QUICK, timeout=60, memory_limit=256 * MiB)
    assert result.status == "oom", result.reason
    assert "MemoryError" in result.reason and "--memory-limit 256 MiB" in result.reason


def test_memory_the_limit_does_not_count_is_caught_by_the_host(fake_site, monkeypatch):
    """Shared memory escapes RLIMIT_DATA; the host reads the worker's resident memory and stops it."""
    monkeypatch.setenv("CNNBENCH_FAKE_MODE", "shared")
    monkeypatch.setenv("CNNBENCH_FAKE_BYTES", str(2 << 30))
    pids = []
    result = run_cell(fake_cell(), Measurement(warmup=0, min_time=30, repeats=1), timeout=120,
                      memory_limit=256 * MiB, on_event=lambda event, proc: pids.append(proc.pid))
    assert result.status == "oom", result.reason
    assert "resident memory reached" in result.reason and "over --memory-limit 256 MiB" in result.reason
    assert pids and not alive(pids[0])


def test_without_a_limit_the_same_worker_runs(fake_site, monkeypatch):
    monkeypatch.setenv("CNNBENCH_FAKE_MODE", "alloc")
    monkeypatch.setenv("CNNBENCH_FAKE_BYTES", str(300 * MiB))
    assert run_cell(fake_cell(), QUICK, timeout=60).status == "ok"


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "caffe"])
def test_a_real_framework_out_of_memory_ends_its_cell_and_the_grid_goes_on(cli, fake_site, framework):
    """lenet at batch 100000 needs about 6 GB for conv1's output: beyond 1G it is the framework's own
    out-of-memory (or the host's watchdog), status oom, and the next cell still runs."""
    pytest.importorskip(framework if framework != "caffe" else "numpy")
    proc = cli("compare", "--frameworks", f"{framework},fake", "--network", "lenet", "--batch-size", "100000",
               "--device", "cpu", "--memory-limit", "1G", "--meters", "none", "--json", "--warmup", "1",
               "--iterations", "1", "--repeats", "1")
    assert proc.returncode == 1, proc.stderr
    first, second = json.loads(proc.stdout)["results"]
    assert (first["framework"], first["status"]) == (framework, "oom"), first["reason"]
    assert "1 GiB" in first["reason"]
    assert (second["framework"], second["status"]) == ("fake", "ok")


def test_the_memory_limit_is_kept_with_the_run_and_used_again_by_resume(cli, fake_site, tmp_path):
    db = str(tmp_path / "r.sqlite")
    proc = cli("compare", "--frameworks", "fake", "--network", "lenet", "--memory-limit", "2G", "--meters", "none",
               "--db", db, *FAST)
    assert proc.returncode == 0, proc.stderr
    from cnnbench.results.store import Store

    with Store(db, create=False) as store:
        assert store.resolve("latest").settings["memory_limit_bytes"] == 2 << 30


# -- signals to the host ---------------------------------------------------------------------------


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_grid_keeps_the_finished_cell_and_leaves_no_process(fake_site, tmp_path, signum, code):
    """caffe lenet finishes, then the fake worker starts a child of its own and hangs: the signal stops
    the host, which stores what finished, marks the run interrupted, and ends the worker and its child."""
    pidfile, db = tmp_path / "pids", tmp_path / "r.sqlite"
    env = dict(os.environ, CNNBENCH_FAKE_MODE="spawn", CNNBENCH_FAKE_PIDFILE=str(pidfile))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env["PYTHONPATH"]])
    host = subprocess.Popen([sys.executable, "-m", "cnnbench", "compare", "--frameworks", "caffe,fake",
                             "--network", "lenet", "--batch-size", "2", "--device", "cpu", "--meters", "none",
                             "--db", str(db), "--json", *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (pidfile.exists() and pidfile.read_text().count(" ")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pidfile.exists(), "the fake worker never started"
        worker, child = (int(pid) for pid in pidfile.read_text().split())
        assert alive(worker) and alive(child)
        host.send_signal(signum)
        out, err = host.communicate(timeout=60)
    finally:
        if host.poll() is None:
            host.kill()
    assert host.returncode == code, err
    results = json.loads(out)["results"]
    assert [(r["framework"], r["status"]) for r in results] == [("caffe", "ok")]
    assert "interrupted; 1 of 2 cells finished" in err
    deadline = time.monotonic() + 10
    while (alive(worker) or alive(child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker) and not alive(child), "a process outlived the host"
    with sqlite3.connect(db) as con:
        state, = con.execute("SELECT state FROM sessions").fetchone()
        stored = con.execute("SELECT framework, status FROM results").fetchall()
    assert state == "interrupted" and stored == [("caffe", "ok")]


# -- a results database that fills up --------------------------------------------------------------


def test_a_full_database_keeps_measuring_says_why_and_stays_intact(fake_site, tmp_path, monkeypatch):
    """The disk fills after the run began: the cells are still measured and returned, the error is one
    clear line, the database is intact, and --resume (with room again) stores the cells that were missed."""
    import cnnbench
    from cnnbench.results.store import Store

    db = tmp_path / "full.sqlite"
    begin = Store.begin_session

    def begin_then_fill(self, *args, **kwargs):
        session = begin(self, *args, **kwargs)
        # what SQLite says when its file cannot grow: SQLITE_FULL, "database or disk is full"
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count = {pages}")
        return session

    monkeypatch.setattr(Store, "begin_session", begin_then_fill)
    batches = [2, 4, 6, 8, 10, 12]  # a few records fill the free space of the pages the database has
    results = cnnbench.compare(frameworks="fake", networks="lenet", batch_size=batches, device="cpu", meters="none",
                               warmup=1, min_time=0.02, repeats=2, db=str(db))
    assert [r.status for r in results] == ["ok"] * len(batches)
    assert results.store_error == f"results database {db}: the disk is full"
    monkeypatch.setattr(Store, "begin_session", begin)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # "interrupted" could not be written either: the run reads as ended abruptly, which --resume takes
    with Store(db, create=False) as store:
        assert store.resolve("latest").shown_state == "ended abruptly"
    kept = [p for p, in con.execute("SELECT position FROM results ORDER BY position")]
    con.close()
    assert 0 < len(kept) < len(batches) and kept == list(range(len(kept)))  # stored until the disk was full
    resumed = cnnbench.compare(resume=results.session, db=str(db))
    assert resumed.store_error is None and [r.status for r in resumed] == ["ok"] * len(batches)
    with Store(db, create=False) as store:
        stored = store.results(results.session)
        assert [p for p, _ in stored] == list(range(len(batches)))
        assert [r.batch_size for _, r in stored] == batches
        assert store.resolve("latest").state == "complete"

