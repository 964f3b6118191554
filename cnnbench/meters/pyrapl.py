"""The ``pyrapl`` meter: CPU package and DRAM energy read through pyRAPL, for users who standardise on it.

Install with ``pip install 'cnnbench[pyrapl]'`` and select it by name (``--meters pyrapl``); ``auto`` never
picks it, because it reads the same counters as the built-in ``rapl`` meter. Domains: ``cpu_packageN`` and
``dramN`` per socket, as pyRAPL's ``Sensor`` reports them. Its limits, which are pyRAPL's:

- **No wraparound correction.** pyRAPL returns the raw ``energy_uj`` values. A counter that goes down
  between two samples has wrapped; this meter does not guess by how much: the readings of windows that
  overlap such an interval carry an error (never a negative or zero figure). Use ``rapl`` for long runs.
- **No permission handling.** pyRAPL opens ``/sys/class/powercap/intel-rapl/...`` itself; where that fails
  (non-root since the PLATYPUS fix), the meter is unavailable with pyRAPL's error and no fix of its own.
- **Fixed paths.** pyRAPL ignores ``$CNNBENCH_POWERCAP_ROOT``; it reads the real ``/sys`` tree only, and
  only package and DRAM (no core, uncore or psys).
"""

from __future__ import annotations

from typing import Any

from cnnbench.meters.base import DomainInfo, Meter, MeterError, Sample

INSTALL_HINT = "pip install 'cnnbench[pyrapl]'"
_KINDS = (("cpu_package", "cpu_package"), ("dram", "dram"))  # pyRAPL's order per socket: PKG, DRAM


class PyRaplMeter(Meter):
    name = "pyrapl"
    description = "CPU package and DRAM energy through pyRAPL (no wraparound correction; see its docs)"
    auto = False
    install_hint = INSTALL_HINT
    default_period_s = 0.05

    @classmethod
    def could_apply_here(cls) -> bool:
        from cnnbench.meters.rapl import x86_linux

        return x86_linux()

    def open(self) -> None:
        try:
            import pyRAPL
        except ImportError:
            raise MeterError("pyRAPL is not installed", INSTALL_HINT) from None
        try:
            self._sensor = pyRAPL.Sensor()
            values = list(self._sensor.energy())
        except Exception as exc:  # pyRAPL raises its own exceptions, OSError, IndexError...
            raise MeterError(
                f"pyRAPL cannot read the counters: {type(exc).__name__}: {exc}",
                "pyRAPL does not handle permissions; 'cnnbench list' shows the fix under the rapl meter",
            ) from None
        self._slots: dict[str, int] = {}
        for slot, value in enumerate(values):
            if value is None or value < 0:  # pyRAPL reports -1 for a device it does not monitor
                continue
            prefix, kind = _KINDS[slot % 2]
            socket = slot // 2
            domain = f"{prefix}{socket}"
            self._slots[domain] = slot
            self.domains[domain] = DomainInfo(
                meter=self.name, kind=kind, device=f"socket {socket}", source=f"pyRAPL Sensor slot {slot}",
                update_period_s=0.001, energy_counter=True, power_samples=False,
            )
        if not self.domains:
            raise MeterError("pyRAPL found no package or DRAM counter")
        self._first: dict[str, float] = {}
        self._previous: dict[str, float] = {}
        self._offset: dict[str, float] = {}

    def sample(self, now: float) -> dict[str, Sample]:
        try:
            values = self._sensor.energy()
        except Exception as exc:
            return {d: Sample(warning=f"pyRAPL read failed: {type(exc).__name__}: {exc}") for d in self.domains}
        out: dict[str, Sample] = {}
        for domain, slot in self._slots.items():
            raw = float(values[slot])
            first = self._first.setdefault(domain, raw)
            previous = self._previous.get(domain, raw)
            error = None
            if raw < previous:
                # A wrap (or a reset). pyRAPL does not correct it and neither do we: keep the running total
                # flat over the interval and invalidate the windows that overlap it.
                self._offset[domain] = self._offset.get(domain, 0.0) + previous - raw
                error = (
                    f"{domain}: the counter went down between two samples (a wraparound, which pyRAPL does "
                    "not correct): use the rapl meter"
                )
            self._previous[domain] = raw
            out[domain] = Sample(energy_j=(raw - first + self._offset.get(domain, 0.0)) / 1e6, error=error)
        return out

    def inventory(self) -> dict[str, Any]:
        try:
            import pyRAPL

            version = getattr(pyRAPL, "__version__", None)
        except ImportError:
            version = None
        return {"pyrapl_version": version, "domains": {d: i.source for d, i in self.domains.items()}}
