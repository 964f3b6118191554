"""Was the machine idle? The check an idle baseline must pass before above-idle energy is computed from it.

Idle power is what the machine draws doing nothing; a baseline taken while a compiler, another benchmark or
a backup runs is that process's power, and subtracting it would make every cell look cheaper than it is. So
the baseline records the machine's load over its own time, from ``/proc`` (``$CNNBENCH_PROC_ROOT`` for
tests, as ``$CNNBENCH_POWERCAP_ROOT`` is for the powercap tree; read by ``cnnbench.system.load``):

- ``/proc/stat``'s ``cpu`` line at the start and the end: the CPU time every process spent busy
  (user, nice, system, irq, softirq, steal) out of all CPUs' time, minus what this process used itself
  (its sampling threads): the other processes' busy share, and in CPUs (share x CPUs);
- ``/proc/loadavg``'s 1-minute average at the start and the end: runnable and uninterruptible tasks,
  which also catches work that ended just before the baseline and left the package hot.

A baseline is trusted when the other processes kept at most :func:`max_busy_cpus` CPUs busy and the load
average stayed at most :func:`max_load`. The thresholds are in CPUs, not a share of the machine: one busy
core draws its watts on a 2-core laptop and on a 128-core server alike, so half a CPU (what a desktop's
background costs) is the floor, and 5 % of the CPUs above it leaves a large server its daemons.
"""

from __future__ import annotations

from typing import Any

#: Other processes may keep this many CPUs busy during a trusted baseline, or this share of the CPUs if more.
IDLE_MAX_BUSY_CPUS = 0.5
IDLE_MAX_BUSY_SHARE = 0.05
#: The 1-minute load average may be at most this, or this share of the CPUs if more.
IDLE_MAX_LOAD = 1.0
IDLE_MAX_LOAD_SHARE = 0.5
#: How many equal sub-windows the baseline is cut into, for its spread.
IDLE_WINDOWS = 5
#: An idle baseline whose sub-windows' power varies more than this (CV) makes above-idle figures uncertain.
IDLE_CV_WARN = 0.10


def max_busy_cpus(cpus: int) -> float:
    return max(IDLE_MAX_BUSY_CPUS, IDLE_MAX_BUSY_SHARE * cpus)


def max_load(cpus: int) -> float:
    return max(IDLE_MAX_LOAD, IDLE_MAX_LOAD_SHARE * cpus)


def judge(load: dict[str, Any]) -> str | None:
    """Why the machine was not idle (one line with the figures), or None when it was."""
    cpus = load["cpus"]
    reasons = []
    if load["others_busy_cpus"] is None:
        return "the machine's CPU time did not advance in /proc/stat, so its idleness cannot be checked"
    if load["others_busy_cpus"] > max_busy_cpus(cpus):
        reasons.append(
            f"other processes kept {load['others_busy_cpus']:.2f} of {cpus} CPUs busy "
            f"(more than {max_busy_cpus(cpus):.2f})"
        )
    load1 = max(load["load1_before"], load["load1_after"])
    if load1 > max_load(cpus):
        reasons.append(f"the load average was {load1:.2f} on {cpus} CPUs (more than {max_load(cpus):.2f})")
    return "; ".join(reasons) or None
