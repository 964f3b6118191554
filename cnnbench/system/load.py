"""The machine's load, read from ``/proc``: the one reader of ``/proc/stat`` and ``/proc/loadavg``.

Two questions are asked of it:

- around each cell (the quality gate, ``cnnbench.results.quality``): how much of the CPUs cnnbench may use did
  *other* processes keep busy, and how much did the hypervisor steal? :class:`LoadProbe` reads the usable CPUs'
  lines of ``/proc/stat`` at the cell's start and end, and subtracts what the host and the worker's process tree
  used (getrusage); it reads the machine's own ``/proc``;
- over the idle baseline (``cnnbench.meters.idle``): was the machine idle? :func:`snapshot` reads the
  all-CPU line and the load average from ``$CNNBENCH_PROC_ROOT`` (default ``/proc``), so tests can point it at a
  tree of the same format, as ``$CNNBENCH_POWERCAP_ROOT`` is for the powercap tree.

Imported by the worker (which may run under another interpreter) through the quality gate: the standard
library only.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Any

ENV_PROC_ROOT = "CNNBENCH_PROC_ROOT"
#: /proc/stat's CPU columns (proc(5)); ``guest`` and ``guest_nice`` are already inside ``user`` and ``nice``.
COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
#: The columns of CPU time a process kept busy (steal is the hypervisor's, counted apart around a cell).
BUSY = ("user", "nice", "system", "irq", "softirq")


def proc_root() -> str:
    return os.environ.get(ENV_PROC_ROOT) or "/proc"


def stat_lines(root: str = "/proc") -> list[list[str]]:
    """``/proc/stat``'s lines, split; OSError where it cannot be read."""
    with open(os.path.join(root, "stat")) as f:
        return [line.split() for line in f.read().splitlines()]


def read_loadavg(root: str = "/proc") -> float:
    """The 1-minute load average; OSError, ValueError or IndexError where it cannot be read."""
    with open(os.path.join(root, "loadavg")) as f:
        return float(f.read().split()[0])


def loadavg(root: str = "/proc") -> float | None:
    try:
        return read_loadavg(root)
    except (OSError, ValueError, IndexError):
        return None


def cpu_times(cpus: set[int], root: str = "/proc") -> dict[str, float] | None:
    """Seconds per /proc/stat column summed over ``cpus`` (those of them the kernel lists); ``steal`` is
    absent where the kernel has no such column (before 2.6.11). None where /proc/stat cannot be read."""
    tick = os.sysconf("SC_CLK_TCK")
    total: dict[str, float] = {}
    try:
        lines = stat_lines(root)
    except OSError:
        return None
    for name, *values in (line for line in lines if line):
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        for column, value in zip(COLUMNS, values):
            total[column] = total.get(column, 0.0) + int(value) / tick
    return total or None


def own_cpu_s(children: bool = True) -> float:
    """CPU seconds of this process (every thread: the meters' samplers too) and, with ``children``, of the
    children it has waited for (the worker, and whatever the worker waited for)."""
    if not children:
        times = os.times()
        return times.user + times.system
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime


def usable_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


# -- around a cell ------------------------------------------------------------------------------------------


@dataclass
class LoadProbe:
    """Opened before a cell's worker starts, closed once it has been waited for: ``close()`` gives the load."""

    cpus: set[int]
    start: float
    loadavg: float | None
    times: dict[str, float] | None
    own: float

    @classmethod
    def open(cls) -> LoadProbe:
        cpus = usable_cpus()
        return cls(cpus, time.monotonic(), loadavg(), cpu_times(cpus), own_cpu_s())

    def close(self) -> dict[str, Any]:
        """The load during the cell. Shares are of the CPU time the usable CPUs had; None where /proc has no
        figure for them."""
        wall = time.monotonic() - self.start
        own = own_cpu_s() - self.own
        times = cpu_times(self.cpus)
        load: dict[str, Any] = {"loadavg_1m_before": self.loadavg, "loadavg_1m_after": loadavg(),
                                "cpus": len(self.cpus), "wall_s": wall, "own_cpu_s": own,
                                "others_cpu_share": None, "steal_share": None}
        if self.times is None or times is None or wall <= 0:
            load["unavailable"] = "no /proc/stat here: the machine's load is unknown"
            return load
        delta = {column: times.get(column, 0.0) - self.times.get(column, 0.0) for column in times}
        busy = sum(delta.get(column, 0.0) for column in BUSY)
        # /proc/stat counts in ticks (10 ms): a short cell's figure is a few ticks off, never below 0
        load["others_cpu_share"] = max(0.0, busy - own) / (wall * len(self.cpus))
        elapsed = sum(delta.values())
        if "steal" in times and elapsed > 0:
            load["steal_share"] = delta["steal"] / elapsed
        return load


# -- over the idle baseline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSnapshot:
    """The machine's cumulative CPU times (in clock ticks) and load average at one instant."""

    t: float
    busy: int
    steal: int
    total: int
    cpus: int
    load1: float
    own_cpu_s: float


def snapshot() -> LoadSnapshot:
    """Read ``stat`` and ``loadavg`` under ``$CNNBENCH_PROC_ROOT``; OSError, ValueError or StopIteration where
    they cannot be read."""
    root = proc_root()
    lines = stat_lines(root)
    fields = next(line for line in lines if line and line[0] == "cpu")
    # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is already in user.
    values = [int(v) for v in fields[1:9]] + [0] * max(0, 9 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    busy = user + nice + system + irq + softirq + steal
    cpus = sum(1 for line in lines if line and line[0].startswith("cpu") and line[0][3:4].isdigit())
    load1 = read_loadavg(root)
    return LoadSnapshot(time.monotonic(), busy, steal, busy + idle + iowait, max(cpus, 1), load1,
                        own_cpu_s(children=False))


def load_between(a: LoadSnapshot, b: LoadSnapshot) -> dict[str, Any]:
    """The other processes' CPU use and the load average between two snapshots."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = b.total - a.total
    own = (b.own_cpu_s - a.own_cpu_s) * ticks
    others = max(0.0, (b.busy - a.busy) - own)
    share = others / total if total > 0 else None
    return {
        "seconds": b.t - a.t,
        "cpus": b.cpus,
        "others_busy_share": share,
        "others_busy_cpus": share * b.cpus if share is not None else None,
        "steal_share": (b.steal - a.steal) / total if total > 0 else None,
        "load1_before": a.load1,
        "load1_after": b.load1,
    }
