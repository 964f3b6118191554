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
    return {
        "cpu_model": model or platform.processor() or None,
        "logical_cpus": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "sockets": len(sockets) or None,
        # "1" / "0" from the kernel; None where the kernel does not say (no SMT control).
        "smt_active": None if smt is None else smt == "1",
    }


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
