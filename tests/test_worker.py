"""The worker: the timing loop, and the JSON-lines protocol spoken by ``python -m cnnbench.execution.worker``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict

from cnnbench.config import Measurement, RunConfig
from cnnbench.spec.catalog import resolve_network
from cnnbench.execution.worker import PROTOCOL_VERSION, measure


def test_windows_grow_until_min_time():
    events = []
    steps = []

    def step():
        steps.append(1)
        time.sleep(0.004)

    windows = measure(step, lambda: None, warmup=2, min_time=0.05, repeats=3, iterations=None,
                      emit=lambda kind, **f: events.append((kind, f)))
    assert [k for k, _ in events].count("warmup") == 2
    assert len(windows) == 3
    for w in windows:
        assert w["end"] - w["start"] >= 0.05
        assert w["iterations"] >= 2
    assert len(steps) == 2 + sum(w["iterations"] for w in windows)


def test_windows_grow_even_without_warmup_estimate():
    windows = measure(lambda: time.sleep(0.003), lambda: None, warmup=0, min_time=0.03, repeats=2,
                      iterations=None, emit=lambda *a, **k: None)
    assert all(w["end"] - w["start"] >= 0.03 and w["iterations"] > 1 for w in windows)


def test_fixed_iterations_per_window_and_sync_at_every_edge():
    log = []
    windows = measure(lambda: log.append("step"), lambda: log.append("sync"), warmup=1, min_time=10.0,
                      repeats=2, iterations=3, emit=lambda *a, **k: None)
    assert [w["iterations"] for w in windows] == [3, 3]
    # sync before warm-up, after the warm-up step, and at the end of each window
    assert log == ["sync", "step", "sync"] + ["step"] * 3 + ["sync"] + ["step"] * 3 + ["sync"]


def job(framework="fake", **config):
    spec = resolve_network("lenet")
    cfg = RunConfig(framework=framework, network="lenet", batch_size=config.pop("batch_size", 4), **config)
    return {
        "protocol": PROTOCOL_VERSION,
        "config": cfg.to_dict(),
        "measurement": asdict(Measurement(warmup=1, min_time=0.01, repeats=2)),
        "spec": {"data": spec.data, "source": spec.source},
    }


def run_worker(payload: str, env=None):
    full_env = dict(os.environ, **(env or {}))
    before = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "cnnbench.execution.worker"], input=payload, capture_output=True,
                          text=True, env=full_env, timeout=120)
    after = time.monotonic()
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc, events, before, after


def test_protocol_events_in_order_on_the_shared_monotonic_clock(fake_site):
    proc, events, before, after = run_worker(json.dumps(job()))
    assert proc.returncode == 0, proc.stderr
    kinds = [e["event"] for e in events]
    assert kinds == ["hello", "phase", "phase", "phase", "warmup", "phase", "window", "window", "result"]
    assert [e["phase"] for e in events if e["event"] == "phase"] == ["prepare", "build", "warmup", "measure"]
    times = [e["t"] for e in events]
    assert times == sorted(times)
    # CLOCK_MONOTONIC is shared across processes: the worker's stamps lie within the host's interval.
    assert before < times[0] and times[-1] < after
    windows = [e for e in events if e["event"] == "window"]
    assert all(before < w["start"] < w["end"] < after for w in windows)
    result = events[-1]
    assert result["windows"] == [{k: w[k] for k in ("index", "start", "end", "iterations")} for w in windows]
    assert result["peak_memory_bytes"] > 0 and result["peak_memory_kind"] == "process peak RSS"


def test_library_output_on_stdout_cannot_corrupt_the_protocol(fake_site):
    proc, events, *_ = run_worker(json.dumps(job()), env={"CNNBENCH_FAKE_MODE": "print"})
    assert proc.returncode == 0
    assert events[-1]["event"] == "result"
    assert "noise on stdout" in proc.stderr


def test_typed_outcomes(fake_site):
    for mode, kind, text in [
        ("unsupported", "unsupported", "refuses this configuration"),
        ("oom", "oom", "fake device is full"),
        ("raise", "error", "fake step failed"),
    ]:
        proc, events, *_ = run_worker(json.dumps(job()), env={"CNNBENCH_FAKE_MODE": mode})
        final = events[-1]
        assert final["event"] == kind, (mode, events)
        assert text in (final.get("reason") or final.get("message"))
    assert final["type"] == "RuntimeError" and "Traceback" in final["traceback"]


def test_bad_jobs_are_error_events():
    for payload, text in [
        ("not json", "Expecting value"),
        (json.dumps({**job("torch"), "protocol": 99}), "protocol"),
        (json.dumps(job("nosuch")), "unknown framework 'nosuch'"),
    ]:
        proc, events, *_ = run_worker(payload)
        assert proc.returncode == 1
        assert events[-1]["event"] == "error" and text in events[-1]["message"]


def test_unavailable_framework_is_reported_without_a_crash(fake_site):
    proc, events, *_ = run_worker(json.dumps(job("fake-missing")))
    assert events[-1]["event"] == "unavailable"
    assert "not installed" in events[-1]["reason"]


def test_stable_never_runs_fewer_than_repeats_windows():
    """--stable starts from the --repeats windows: a target met early does not cut them short."""
    # 5 ms windows: steady enough that 9 of them always meet a 99 % target (empty steps of a microsecond do not)
    windows = measure(lambda: time.sleep(0.001), lambda: None, warmup=0, min_time=0.0, repeats=9, iterations=5,
                      emit=lambda *a, **k: None, stable=0.99, stable_max_time=30.0)
    assert [w["index"] for w in windows] == list(range(9))


def test_stable_job_reports_every_added_window(fake_site):
    payload = job()
    payload["measurement"] = asdict(Measurement(warmup=1, min_time=0.01, repeats=2, stable=0.5, stable_max_time=20.0))
    proc, events, _, _ = run_worker(json.dumps(payload))
    assert proc.returncode == 0, proc.stderr
    windows = [e for e in events if e["event"] == "window"]
    (result,) = [e for e in events if e["event"] == "result"]
    assert len(windows) >= 6  # no 95 % interval of a median from fewer
    assert [w["index"] for w in result["windows"]] == [w["index"] for w in windows] == list(range(len(windows)))
