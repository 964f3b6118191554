"""Heat and clocks during each timed window: GPU temperature, SM and memory clocks, enforced power limit and
clocks-event (throttle) reasons from NVML; CPU temperature and frequency from sysfs where the machine has them.

A :class:`ConditionsMonitor` reads them on its own thread every ``period`` (0.25 s: slower than the energy
sampling, since a temperature changes over seconds and each NVML query costs a little), and
:func:`attach_conditions` summarises the readings of each window into ``Result.conditions``; a window in
which the GPU was slowed for heat or power adds a warning to the cell.

CPU sources, each overridable for tests and containers like ``$CNNBENCH_POWERCAP_ROOT``:

- temperature: ``$CNNBENCH_HWMON_ROOT`` (``/sys/class/hwmon``), the ``coretemp`` (Intel), ``k10temp`` or
  ``zenpower`` (AMD) devices' ``temp*_input``; else ``$CNNBENCH_THERMAL_ROOT`` (``/sys/class/thermal``), the
  ``x86_pkg_temp`` or ``cpu-thermal`` zones' ``temp``. Both are in millidegrees Celsius. The hottest is kept.
- frequency: ``$CNNBENCH_CPU_ROOT`` (``/sys/devices/system/cpu``), ``cpu*/cpufreq/scaling_cur_freq`` in kHz;
  the mean over the CPUs is kept. Virtual machines usually expose neither: the values are then absent.
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

from cnnbench.meters.nvml import HEAT_OR_POWER_REASONS, reason_names

HWMON_ROOT_ENV = "CNNBENCH_HWMON_ROOT"
THERMAL_ROOT_ENV = "CNNBENCH_THERMAL_ROOT"
CPU_ROOT_ENV = "CNNBENCH_CPU_ROOT"
#: hwmon drivers whose sensors are the CPU's (Intel coretemp, AMD k10temp and the out-of-tree zenpower).
CPU_HWMON_NAMES = ("coretemp", "k10temp", "zenpower")
#: thermal zone types that are the CPU package (x86) or the SoC's CPU cluster (Arm boards).
CPU_THERMAL_TYPES = ("x86_pkg_temp", "cpu-thermal", "cpu_thermal")
#: Seconds between two readings of the heat and clocks.
DEFAULT_PERIOD_S = 0.25


def _read_number(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


class CpuSensors:
    """The CPU's temperature and frequency files, found once; ``read()`` reads them."""

    def __init__(self) -> None:
        hwmon = Path(os.environ.get(HWMON_ROOT_ENV) or "/sys/class/hwmon")
        thermal = Path(os.environ.get(THERMAL_ROOT_ENV) or "/sys/class/thermal")
        cpu = Path(os.environ.get(CPU_ROOT_ENV) or "/sys/devices/system/cpu")
        self.temperature_files: list[Path] = []
        for device in sorted(hwmon.glob("hwmon*")):
            name = (device / "name").read_text().strip() if (device / "name").is_file() else ""
            if name in CPU_HWMON_NAMES:
                self.temperature_files += sorted(device.glob("temp*_input"))
        if not self.temperature_files:
            for zone in sorted(thermal.glob("thermal_zone*")):
                kind = (zone / "type").read_text().strip() if (zone / "type").is_file() else ""
                if kind in CPU_THERMAL_TYPES and (zone / "temp").is_file():
                    self.temperature_files.append(zone / "temp")
        self.frequency_files = sorted(cpu.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"))

    def read(self) -> dict[str, float | None]:
        temps = [v / 1e3 for v in map(_read_number, self.temperature_files) if v is not None]
        freqs = [v / 1e3 for v in map(_read_number, self.frequency_files) if v is not None]
        return {
            "temperature_c": max(temps) if temps else None,
            "frequency_mhz": statistics.fmean(freqs) if freqs else None,
        }


class ConditionsMonitor:
    """Reads the GPUs' heat and clocks (``read_gpus``: {domain: {...}}, e.g. ``MeterSession.gpu_conditions``)
    and the CPU's, every ``period`` seconds on a daemon thread, stamped with CLOCK_MONOTONIC like the
    worker's window edges."""

    def __init__(self, read_gpus: Callable[[], dict[str, dict[str, Any]]] | None = None,
                 cpu: CpuSensors | None = None, period: float = DEFAULT_PERIOD_S,
                 clock: Callable[[], float] = time.monotonic):
        self.read_gpus = read_gpus
        self.cpu = cpu if cpu is not None else CpuSensors()
        self.period = period
        self.clock = clock
        self.records: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self) -> None:
        t0 = self.clock()
        record: dict[str, Any] = {}
        if self.read_gpus is not None:
            try:
                record.update(self.read_gpus())
            except Exception as exc:  # the heat record must never stop a measurement
                record["error"] = f"{type(exc).__name__}: {exc}"
        cpu = self.cpu.read()
        if any(v is not None for v in cpu.values()):
            record["cpu"] = cpu
        t = (t0 + self.clock()) / 2
        with self._lock:
            self.records.append((t, record))

    def start(self) -> ConditionsMonitor:
        if self._thread is None:
            self._stop.clear()
            self.sample_once()
            # The thread holds the monitor weakly: a grid abandoned half-way (a generator never finished)
            # drops its monitor, and the thread ends at its next tick instead of reading NVML for ever.
            self._thread = threading.Thread(target=_run, args=(weakref.ref(self), self._stop, self.period),
                                            name="cnnbench-conditions", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def forget_before(self, t: float) -> None:
        """Drop readings older than ``t`` (a finished cell's), so a day-long grid does not grow without bound."""
        with self._lock:
            self.records = [r for r in self.records if r[0] >= t]

    def window(self, start: float, end: float, gpus: list[str]) -> dict[str, Any]:
        """The heat and clocks over ``[start, end]``: per GPU domain in ``gpus`` and for the CPU, each
        quantity's min, median and max, the power limit, and the throttle reasons seen. A window shorter
        than the period takes the reading nearest to it (``samples`` 0)."""
        with self._lock:
            inside = [rec for t, rec in self.records if start <= t <= end]
            if not inside and self.records:
                middle = (start + end) / 2
                inside = [min(self.records, key=lambda r: abs(r[0] - middle))[1]]
                samples = 0
            else:
                samples = len(inside)
        out: dict[str, Any] = {"samples": samples}
        for domain in gpus:
            values = [rec[domain] for rec in inside if domain in rec]
            if not values:
                continue
            reasons = 0
            for v in values:
                reasons |= v.get("clocks_event_reasons") or 0
            out[domain] = {
                "temperature_c": _spread(v.get("temperature_c") for v in values),
                "sm_clock_mhz": _spread(v.get("sm_clock_mhz") for v in values),
                "mem_clock_mhz": _spread(v.get("mem_clock_mhz") for v in values),
                "power_limit_w": _spread(v.get("power_limit_w") for v in values),
                "clocks_event_reasons": reason_names(reasons),
                "throttled": reason_names(reasons & HEAT_OR_POWER_REASONS),
            }
        cpu = [rec["cpu"] for rec in inside if "cpu" in rec]
        if cpu:
            out["cpu"] = {"temperature_c": _spread(c.get("temperature_c") for c in cpu),
                          "frequency_mhz": _spread(c.get("frequency_mhz") for c in cpu)}
        return out


def _run(ref: weakref.ref, stop: threading.Event, period: float) -> None:
    while not stop.wait(period):
        monitor = ref()
        if monitor is None:
            return
        monitor.sample_once()
        del monitor


def _spread(values) -> dict[str, float] | None:
    numbers = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not numbers:
        return None
    return {"min": min(numbers), "median": statistics.median(numbers), "max": max(numbers)}


def attach_conditions(result: Any, monitor: ConditionsMonitor, gpu_domain: str | None,
                      gpu_domains: list[str] = ()) -> None:
    """Fill ``result.conditions`` (one dict per timed window, in window order) and warn about every window
    in which the cell's GPU was slowed for heat or power. ``gpu_domain`` is the GPU the cell ran on; a
    CUDA cell whose GPU could not be matched gets every metered GPU's (``gpu_domains``)."""
    if result.status != "ok" or not result.windows:
        return
    if gpu_domain is not None:
        gpus = [gpu_domain]
    else:
        gpus = list(gpu_domains) if str(result.device).startswith("cuda") else []
    result.conditions = [{"window": i, **monitor.window(w["start"], w["end"], gpus)}
                         for i, w in enumerate(result.windows, 1)]
    for domain in gpus:
        by_reason: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for window in result.conditions:
            throttled = tuple((window.get(domain) or {}).get("throttled") or ())
            if throttled:
                by_reason.setdefault(throttled, []).append(window)
        for reasons, windows in by_reason.items():
            numbers = [str(w["window"]) for w in windows]
            which = f"window {numbers[0]}" if len(numbers) == 1 else f"windows {', '.join(numbers)}"
            temps = [w[domain]["temperature_c"]["max"] for w in windows if w[domain]["temperature_c"]]
            clocks = [w[domain]["sm_clock_mhz"]["min"] for w in windows if w[domain]["sm_clock_mhz"]]
            detail = []
            if temps:
                detail.append(f"up to {max(temps):.0f} °C")
            if clocks:
                detail.append(f"SM clock down to {min(clocks):.0f} MHz")
            tail = f" ({', '.join(detail)})" if detail else ""
            result.warn(f"{domain}: {which} of {len(result.conditions)} throttled: {', '.join(reasons)}{tail}")
