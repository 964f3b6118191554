"""The host's inventory: what a reader needs to reproduce a result on another machine.

Read from Linux's /proc and /sys where they exist; anything that cannot be read is None, never guessed.
Framework-side versions (BLAS, oneDNN, CUDA, cuDNN, the GPU) come from the adapter in the worker.
"""

from __future__ import annotations

import os
import platform
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import cnnbench


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_topology() -> dict[str, Any]:
    """Model name, logical CPUs, physical cores, sockets and SMT state from /proc/cpuinfo and sysfs."""
    model = None
    cores: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    text = _read("/proc/cpuinfo") or ""
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if "processor" not in fields:
            continue
        model = model or fields.get("model name")
        socket = fields.get("physical id", "0")
        sockets.add(socket)
        if "core id" in fields:
            cores.add((socket, fields["core id"]))
    smt = _read("/sys/devices/system/cpu/smt/active")
    physical_usable, logical_usable = usable_cores()
    return {
        "cpu_model": model or platform.processor() or None,
        "logical_cpus": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "sockets": len(sockets) or None,
        # "1" / "0" from the kernel; None where the kernel does not say (no SMT control).
        "smt_active": None if smt is None else smt == "1",
        # on, off, forceoff, notsupported, notimplemented: whether SMT could be switched, and how it is set
        "smt_control": _read("/sys/devices/system/cpu/smt/control"),
        # what this process may run on (its affinity mask, e.g. a container's cpuset)
        "usable_physical_cores": physical_usable,
        "usable_logical_cpus": logical_usable,
    }


def usable_cores(root: str = "/sys/devices/system/cpu") -> tuple[int, int]:
    """(physical cores, logical CPUs) among the CPUs this process may run on. Hyper-threads of one core
    share its (package, core id); where sysfs has no topology, each logical CPU counts as a core."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        package = _read(f"{root}/cpu{cpu}/topology/physical_package_id")
        core = _read(f"{root}/cpu{cpu}/topology/core_id")
        cores.add((package, core) if core is not None else ("cpu", str(cpu)))
    return len(cores), len(cpus)


@lru_cache(maxsize=1)
def host_inventory() -> dict[str, Any]:
    return {
        "cnnbench": cnnbench.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        # The CPU flag a hypervisor sets for its guests: energy counters are rarely exposed there.
        "virtualized": " hypervisor" in (_read("/proc/cpuinfo") or ""),
        "executable": Path(sys.executable).name,
        **cpu_topology(),
    }
