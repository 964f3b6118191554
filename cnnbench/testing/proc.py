"""A fake ``/proc`` (``stat`` and ``loadavg``) whose CPU times advance in real time at a chosen load.

The idle-baseline check (``cnnbench.meters.idle``, through ``cnnbench.system.load``) reads
``$CNNBENCH_PROC_ROOT``: point it at ``FakeProc.root`` to run a baseline on a machine that is as quiet, or as
busy, as a test needs, whatever else the real machine is doing::

    with FakeProc(cpus=8, busy_cpus=0.1, load1=0.2) as proc:
        monkeypatch.setenv("CNNBENCH_PROC_ROOT", str(proc.root))
        session.idle(1.0)                          # trusted: 0.1 of 8 CPUs busy

A test that needs a really loaded machine (a busy child process) reads the real ``/proc`` instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: Linux reports /proc/stat in USER_HZ ticks, 100 per second on every architecture cnnbench runs on.
USER_HZ = 100


class FakeProc:
    """``root/stat`` and ``root/loadavg`` of a machine with ``cpus`` CPUs, ``busy_cpus`` of them kept busy
    by other processes, and a 1-minute load average of ``load1``; rewritten every ``tick`` seconds."""

    def __init__(self, cpus: int = 4, busy_cpus: float = 0.0, load1: float = 0.0, *, tick: float = 0.01):
        self.cpus = cpus
        self.busy_cpus = busy_cpus
        self.load1 = load1
        self.tick = tick
        self.root = Path(tempfile.mkdtemp(prefix="cnnbench-proc-"))
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write()

    def _write(self) -> None:
        elapsed = time.monotonic() - self._t0
        # A machine that has been up a while: large, different counters, as on a real one.
        total = int((1000 + elapsed) * USER_HZ * self.cpus)
        busy = int((100 + elapsed) * USER_HZ * self.busy_cpus)
        user, system = busy * 3 // 4, busy - busy * 3 // 4
        idle = total - busy
        lines = [f"cpu  {user} 0 {system} {idle} 0 0 0 0 0 0"]
        lines += [f"cpu{i} {user // self.cpus} 0 {system // self.cpus} {idle // self.cpus} 0 0 0 0 0 0"
                  for i in range(self.cpus)]
        lines += ["intr 0", "ctxt 0", "btime 0", "processes 1", "procs_running 1", "procs_blocked 0"]
        for name, text in (("stat", "\n".join(lines) + "\n"),
                           ("loadavg", f"{self.load1:.2f} {self.load1:.2f} {self.load1:.2f} 1/100 4242\n")):
            tmp = self.root / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.root / name)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self._write()

    def start(self) -> FakeProc:
        self._thread = threading.Thread(target=self._run, name="cnnbench-fake-proc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> FakeProc:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
