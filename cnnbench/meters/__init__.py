"""Power meters: energy per domain (GPU, CPU package, core, uncore, DRAM, psys) over the worker's windows.

The host opens a :class:`MeterSession` for a grid, starts it (one sampling thread per meter, reading
cumulative counters with CLOCK_MONOTONIC timestamps), and asks it for the energy of each window the worker
reports::

    from cnnbench.meters import MeterSession

    with MeterSession.open("auto", host) as session:      # or "none", or ["rapl:psys", "nvml"]
        idle = session.idle(10)                             # {domain: W}
        ...                                                 # the worker runs; it reports window edges
        readings = session.energy(start, end)               # {domain: Reading(joules, seconds, method, ...)}

A domain that cannot be read is never 0: it is absent from ``session.domains`` and ``session.energy()``,
and ``session.unavailable`` says why and how to fix it.

Writing a meter plugin: subclass :class:`Meter` (``cnnbench.meters.base``), implement ``open`` (find the
domains, raise :class:`MeterError` with a reason and a fix when nothing can be read) and ``sample`` (read
every domain once: cumulative joules and/or watts), and return the class from the hook::

    from cnnbench import hookimpl

    @hookimpl
    def cnnbench_register_meters():
        return WallSocketMeter

The session does the sampling, the interpolation at window edges, the integration and the flags.
``cnnbench.testing`` has a powercap-tree builder, a counter driver, a fake ``pynvml`` and a FakeMeter.
Built-in meters (``cnnbench.meters.builtin``): ``rapl``, ``nvml``, and ``pyrapl`` (optional extra).
"""

from __future__ import annotations

from cnnbench.meters.base import DomainInfo, Meter, MeterError, Reading, Sample
from cnnbench.meters.session import MeterSession

__all__ = ["DomainInfo", "Meter", "MeterError", "MeterSession", "Reading", "Sample"]
