"""The results store: round trips, migrations, concurrent writers, resume after Ctrl-C, and its commands."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cnnbench.results import store as store_module
from cnnbench.config import UsageError
from cnnbench.results.record import SCHEMA_VERSION as RECORD_VERSION
from cnnbench.results.record import Result
from cnnbench.results.store import SCHEMA_VERSION, Store, StoreError

from conftest import FAST, ROOT

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def full_result() -> Result:
    """A Result with every field set to something other than its default."""
    return Result(
        framework="torch", network="alexnet", batch_size=32, device="cuda:1", precision="bf16", kernels="native",
        threads=4, status="ok", reason="a reason", options={"compile": "on", "xla": "off"},
        time_per_iter_ms=412.5, time_per_iter_ms_stdev=3.25, time_per_iter_ms_min=409.0,
        time_per_iter_ms_max=418.75, images_per_s=77.57, gflops_per_s=123.4,
        energy={"gpu1": {"kind": "gpu", "meter": "nvml", "power_w": 250.5, "energy_per_image_j": 1.25,
                         "method": "counter", "joules": 100.0, "seconds": 0.4, "idle_power_w": 60.0,
                         "dynamic_energy_per_image_j": 0.95, "warnings": ["w"]}},
        energy_total={"domains": ["gpu1"], "energy_per_image_j": 1.25, "power_w": 250.5, "method": "counter",
                      "dynamic_energy_per_image_j": 0.95, "cpu_share": None},
        energy_per_image_j_windows=[1.2, 1.3],
        energy_unavailable="rapl: not here",
        peak_memory_bytes=123456789, peak_memory_kind="cuda max allocated",
        windows=[{"index": 0, "start": 1.0, "end": 1.5, "iterations": 3},
                 {"index": 1, "start": 2.0, "end": 2.4, "iterations": 3}],
        timings={"import_s": 1.5, "wall_s": 9.0},
        provenance={"host": {"cpu_model": "X", "logical_cpus": 8}, "worker": {"framework_version": "2.13"}},
        quality={"cv": 0.012, "noisy": True, "reasons": ["load"], "load": {"loadavg_1m": 3.5}},
        conditions=[{"gpu_temperature_c": 61, "sm_clock_mhz": 1980}, {"gpu_temperature_c": 63}],
        warnings=["gpu1: a window shorter than the counter's update period"],
        schema_version=RECORD_VERSION,
    )


def test_every_result_field_round_trips(tmp_path):
    result = full_result()
    defaults = Result("f", "n", 1, "cpu", "fp32", "vendor", None, "error")
    unset = [f.name for f in dataclasses.fields(Result)
             if f.name != "schema_version" and getattr(result, f.name) == getattr(defaults, f.name)]
    assert not unset, f"full_result() leaves these fields at their defaults, so the round trip misses them: {unset}"
    with Store(tmp_path / "r.sqlite") as store:
        session = store.begin_session("compare", ["compare", "--frameworks", "torch"], [{"config": {}}],
                                      {"measurement": {"warmup": 1}})
        store.add_result(session, 0, result)
        store.end_session(session, "complete")
    with Store(tmp_path / "r.sqlite", create=False) as store:
        [(position, back)] = store.results(session)
        info = store.resolve("latest")
    assert position == 0
    assert back == result
    assert back.to_dict() == result.to_dict()
    assert (info.id, info.command, info.state, info.cells_planned, info.cells_stored) == (
        session, "compare", "complete", 1, 1)
    assert info.argv == ["compare", "--frameworks", "torch"] and info.settings == {"measurement": {"warmup": 1}}
    assert info.frameworks == ["torch"] and info.networks == ["alexnet"] and info.statuses == {"ok": 1}


def _schema_1_database(path: Path) -> Path:
    """A database written by the first version of the store (the fixture is its SQL dump)."""
    db = sqlite3.connect(path)
    db.executescript((FIXTURES / "results-schema-1.sql").read_text())
    db.close()
    return path


def test_a_first_schema_database_is_migrated_and_its_records_read(tmp_path):
    path = _schema_1_database(tmp_path / "old.sqlite")
    with Store(path, create=False) as store:
        version = store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        session = store.resolve("1")
        results = store.results(1)
        assert store.plan(1) is None  # the first schema kept no plans
        new_session = store.begin_session("compare", ["compare"], [{"config": {}}])
    assert int(version) == SCHEMA_VERSION == 2
    assert session.resumed == 0 and session.cells_planned == 4 and session.cells_stored == 2
    assert [(p, r.framework, r.batch_size) for p, r in results] == [(0, "torch", 4), (1, "torch", 8)]
    for _, result in results:
        assert result.schema_version == RECORD_VERSION
        assert result.energy_per_image_j_windows is None  # unknown in a version-1 record, not invented
        assert result.time_per_iter_ms > 0 and len(result.windows) == 3
    assert new_session == 2


def test_a_first_schema_run_cannot_be_resumed_and_says_why(cli, tmp_path):
    path = _schema_1_database(tmp_path / "old.sqlite")
    proc = cli("compare", "--resume", "1", "--db", str(path))
    assert proc.returncode == 2
    assert "run 1 was stored before cnnbench kept the plan of a grid" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_newer_schema_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "new.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store(path)
    assert sqlite3.connect(path).execute("SELECT value FROM meta").fetchone()[0] == "99"


def test_not_a_cnnbench_database(tmp_path):
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not cnnbench's"):
        Store(other)
    text = tmp_path / "notes.txt"
    text.write_text("hello, I am not a database at all, but I am long enough to have a header" * 3)
    with pytest.raises(StoreError, match="not a cnnbench results database"):
        Store(text)
    assert text.read_text().startswith("hello")


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cnnbench.results.record import Result
    from cnnbench.results.store import Store

    path, go, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    with Store(path) as store:
        session = store.begin_session("compare", [name], [{"config": {}}] * 200)
        (go.parent / f"ready-{name}").touch()
        while not go.exists():
            time.sleep(0.001)
        for position in range(200):
            store.add_result(session, position, Result(name, "lenet", position + 1, "cpu", "fp32", "vendor", None, "ok"))
        store.end_session(session, "complete")
""")


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path, go = tmp_path / "shared.sqlite", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(go), name], env=env,
                                stderr=subprocess.PIPE, text=True) for name in ("alpha", "beta")]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{n}").exists() for n in ("alpha", "beta")) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both have opened the database and begun their session: they write at once from here
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    with Store(path, create=False) as store:
        sessions = {s.argv[0]: s for s in store.sessions()}
        assert set(sessions) == {"alpha", "beta"}
        for name, session in sessions.items():
            stored = store.results(session.id)
            assert [p for p, _ in stored] == list(range(200))
            assert {r.framework for _, r in stored} == {name}
            assert [r.batch_size for _, r in stored] == list(range(1, 201))
            assert session.state == "complete"


def test_a_locked_database_is_a_clear_error_and_stays_intact(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "locked.sqlite"
    with Store(path) as store:
        session = store.begin_session("compare", ["compare"], [{"config": {}}] * 2)
        store.add_result(session, 0, full_result())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with Store(path) as store, pytest.raises(StoreError, match="locked by another process"):
            store.add_result(session, 1, full_result())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Store(path, create=False) as store:
        assert [p for p, _ in store.results(session)] == [0]
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_run_references(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        with pytest.raises(UsageError, match="no runs stored"):
            store.resolve("latest")
        ids = [store.begin_session("run", ["run"], []) for _ in range(4)]
        assert store.resolve("latest").id == store.resolve("last").id == store.resolve("-1").id == ids[-1]
        assert store.resolve("-3").id == ids[1]
        assert store.resolve(str(ids[0])).id == ids[0]
        for bad in ("7", "abc", "-9", "0", "", "-0", "1.5"):
            with pytest.raises(UsageError, match=r"valid choices: a run id \(1-4\), latest, or -K"):
                store.resolve(bad)


# -- the commands, end to end -------------------------------------------------------------------------


def _stored(db: Path) -> list[tuple[int, int, str]]:
    rows = sqlite3.connect(db).execute("SELECT id, position, status FROM results ORDER BY id").fetchall()
    return [tuple(r) for r in rows]


def test_resume_after_sigint_runs_only_the_missing_cells(cli, fake_site, tmp_path):
    db = tmp_path / "resume.sqlite"
    env = dict(os.environ, CNNBENCH_FAKE_STEP_S="0.02")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env["PYTHONPATH"]])
    grid = ["compare", "--frameworks", "fake", "--network", "lenet", "--batch-size", "1,2,3,4,5,6",
            "--device", "cpu", "--warmup", "1", "--min-time", "0.3", "--repeats", "2", "--db", str(db)]
    host = subprocess.Popen([sys.executable, "-m", "cnnbench", *grid], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            if db.exists() and len(_stored(db)) >= 2:
                break
        except sqlite3.OperationalError:  # the host has created the file but not yet its tables
            continue
    host.send_signal(signal.SIGINT)
    out, err = host.communicate(timeout=60)
    assert host.returncode == 130, err
    before = _stored(db)
    assert 2 <= len(before) < 6, "the grid finished before it could be interrupted"
    assert f"interrupted; {len(before)} of 6 cells finished" in err
    assert "cnnbench compare --resume 1" in err
    history = cli("history", "--db", str(db), "--json")
    [session] = json.loads(history.stdout)
    assert (session["state"], session["cells_stored"], session["cells_planned"]) == ("interrupted", len(before), 6)

    resumed = cli("compare", "--resume", "1", "--db", str(db), "--json", env={"CNNBENCH_FAKE_STEP_S": "0.02"})
    assert resumed.returncode == 0, resumed.stderr
    after = _stored(db)
    assert after[: len(before)] == before  # finished cells untouched
    assert sorted(p for _, p, _ in after) == list(range(6))  # each missing cell run once, none again
    document = json.loads(resumed.stdout)
    assert [r["batch_size"] for r in document["results"]] == [1, 2, 3, 4, 5, 6]
    assert document["session"] == 1
    [session] = json.loads(cli("history", "--db", str(db), "--json").stdout)
    assert (session["state"], session["cells_stored"], session["resumed"]) == ("complete", 6, 1)
    # resuming a complete run runs nothing
    again = cli("compare", "--resume", "latest", "--db", str(db))
    assert again.returncode == 0 and _stored(db) == after


def test_history_show_and_report(cli, fake_site, tmp_path):
    db = tmp_path / "r.sqlite"
    proc = cli("compare", "--frameworks", "fake,fake-missing", "--network", "lenet", "--batch-size", "2,4",
               "--device", "cpu", "--db", str(db), *FAST)
    assert proc.returncode == 0, proc.stderr
    assert f"stored as run 1 in {db}" in proc.stderr
    history = cli("history", "--db", str(db))
    assert history.returncode == 0
    line = history.stdout.splitlines()[2].split()
    assert line[0] == "1" and "compare" in line and "fake,fake-missing" in line and "complete" in line
    assert "4/4 (2 unavailable)" in history.stdout

    show = cli("show", "1", "--db", str(db))
    assert show.returncode == 0
    assert show.stdout.startswith("run 1: compare, started ")
    assert "command: cnnbench compare --frameworks fake,fake-missing" in show.stdout
    assert "unavailable [" in show.stdout
    shown = json.loads(cli("show", "latest", "--db", str(db), "--json").stdout)
    stored = [r for _, r in Store(db, create=False).results(1)]
    assert shown["results"] == [json.loads(json.dumps(r.to_dict())) for r in stored]

    md = cli("report", "1", "--db", str(db))
    assert md.returncode == 0 and md.stdout.startswith("# cnnbench run 1")
    assert "| framework " in md.stdout and "|---" in md.stdout.replace(":", "-")

    csv_text = cli("report", "1", "--format", "csv", "--db", str(db)).stdout
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert [(r["framework"], r["batch_size"], r["status"]) for r in rows] == [
        ("fake", "2", "ok"), ("fake", "4", "ok"), ("fake-missing", "2", "unavailable"),
        ("fake-missing", "4", "unavailable")]
    for row, result in zip(rows, stored, strict=True):
        if result.status == "ok":
            assert float(row["time_per_iter_ms"]) == pytest.approx(result.time_per_iter_ms)
            assert float(row["images_per_s"]) == pytest.approx(result.images_per_s)
        assert row["energy_per_image_j"] == ""  # unmeasured is empty, never 0
    report_json = json.loads(cli("report", "1", "--format", "json", "--db", str(db)).stdout)
    assert report_json["session"]["id"] == 1 and len(report_json["results"]) == 4


@pytest.mark.parametrize("args, message", [
    (["show", "7"], "no run '7' in"),
    (["show", "latest", "--db", "{tmp}/missing.sqlite"], "no results database at"),
    (["report", "1", "--format", "xml"], "unknown report format 'xml'; valid choices: md, csv, json"),
    (["report", "1", "--plot", "{tmp}/f.jpg"], "unknown figure format 'jpg'; valid choices: .png, .svg, .pdf"),
    (["report", "1", "--plot", "{tmp}/no/such/folder/f.png"], "the folder"),
    (["report", "1", "--kind", "pie"], "unknown figure kind 'pie'; valid choices: auto, energy, batch"),
    (["report", "1", "--baseline", "5"], "no run '5' in"),
    (["history", "--limit", "-1"], "--limit must be a whole number >= 0"),
    (["compare", "--resume", "1", "--precision", "bf16"], "leave out --precision"),
    (["compare", "--resume", "3"], "no run '3' in"),
    (["compare", "--frameworks", "fake", "--db", "{tmp}"], "is a directory"),
])
def test_bad_store_input_is_one_line_exit_2(cli, fake_site, tmp_path, args, message):
    db = tmp_path / "r.sqlite"
    Store(db).begin_session("compare", ["compare"], [])
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--db" not in args:
        args += ["--db", str(db)]
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_history_without_a_database_says_so(cli, tmp_path):
    proc = cli("history", "--db", str(tmp_path / "none.sqlite"))
    assert proc.returncode == 0 and "no runs stored" in proc.stdout
    assert not (tmp_path / "none.sqlite").exists()  # reading never creates one


def test_compare_and_report_against_a_baseline(cli, fake_site, tmp_path):
    db = tmp_path / "b.sqlite"
    grid = ["compare", "--frameworks", "fake", "--network", "lenet", "--batch-size", "2,4", "--device", "cpu",
            "--db", str(db), *FAST]
    assert cli(*grid).returncode == 0
    proc = cli(*grid, "--baseline", "1", "--json", env={"CNNBENCH_FAKE_STEP_S": "0.02"})
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["baseline"]["session"] == 1
    changes = document["baseline"]["changes"]
    assert [(c["batch_size"], c["status"]) for c in changes] == [(2, "compared"), (4, "compared")]
    for change in changes:
        time_delta = change["time"]
        assert time_delta["low"] <= time_delta["ratio"] <= time_delta["high"]
        assert change["energy"] is None and "energy unavailable" in change["energy_reason"]
    table = cli(*grid, "--baseline", "-1").stdout
    assert "against run 2" in table and "compared" in table and "Welch" in table
    md = cli("report", "2", "--baseline", "1", "--db", str(db))
    assert md.returncode == 0 and "## Against run 1" in md.stdout and "| compared" in md.stdout
    csv_text = cli("report", "2", "--baseline", "1", "--format", "csv", "--db", str(db)).stdout
    assert "time_ratio" in csv_text.split("\n\n")[1].splitlines()[0]
    bad = cli(*grid, "--baseline", "9")
    assert bad.returncode == 2 and "no run '9'" in bad.stderr
    assert len(Store(db, create=False).sessions()) == 3  # the bad reference measured nothing


def test_a_run_being_resumed_elsewhere_cannot_be_claimed_twice(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        session = store.begin_session("compare", ["compare"], [{}])  # running, in this (live) process
        with pytest.raises(UsageError, match=f"run {session} is running in process {os.getpid()}"):
            store.claim_session(session)
        store.end_session(session, "interrupted")
        store.claim_session(session)  # now it can be claimed, once
        with pytest.raises(UsageError, match="is running in process"):
            store.claim_session(session)


def test_one_position_is_stored_once(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        session = store.begin_session("compare", ["compare"], [{}])
        store.add_result(session, 0, full_result())
        with pytest.raises(StoreError, match="UNIQUE"):
            store.add_result(session, 0, full_result())
        assert len(store.results(session)) == 1


def test_a_host_crash_mid_grid_leaves_the_run_resumable(fake_site, monkeypatch, _own_results_db):
    import cnnbench
    import cnnbench.execution.runner

    real = cnnbench.execution.runner.run_grid

    def crashing(cells, *args, **kwargs):
        for index, result in enumerate(real(cells, *args, **kwargs)):
            if index == 1:
                raise RuntimeError("a bug in the host")
            yield result

    monkeypatch.setattr(cnnbench.execution.runner, "run_grid", crashing)
    with pytest.raises(RuntimeError, match="a bug in the host"):
        cnnbench.compare(frameworks="fake", networks="lenet", batch_size=[1, 2, 3], device="cpu", warmup=1,
                         min_time=0.02, repeats=2)
    [session] = cnnbench.history()
    assert (session.state, session.cells_stored, session.cells_planned) == ("interrupted", 1, 3)


def test_history_json_without_a_database_is_an_empty_list(cli, tmp_path):
    proc = cli("history", "--json", "--db", str(tmp_path / "none.sqlite"))
    assert proc.returncode == 0 and json.loads(proc.stdout) == []


def test_history_names_what_a_run_planned_not_only_what_finished(tmp_path):
    """Issue 21: an interrupted run's history line named only the frameworks of its finished cells."""
    plan = [{"config": {"framework": f, "network": n}} for f in ("torch", "caffe") for n in ("lenet", "alexnet")]
    with Store(tmp_path / "r.sqlite") as store:
        session = store.begin_session("compare", ["compare"], plan)
        store.add_result(session, 0, full_result())
        (stored,) = store.sessions()
        assert (stored.frameworks, stored.networks) == (["torch", "caffe"], ["lenet", "alexnet"])
        empty = store.begin_session("compare", ["compare"], [{}])  # no plan details: what finished
        store.add_result(empty, 0, full_result())
        assert store.sessions(1)[0].frameworks == [full_result().framework]
