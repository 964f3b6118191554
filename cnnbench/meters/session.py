"""MeterSession: the meters of one cnnbench invocation, sampled while workers run, queried per window."""

from __future__ import annotations

import re
import time
from typing import Any, Iterable, Mapping

from cnnbench.meters.base import DomainInfo, Meter, MeterError, ProbeResult, Reading
from cnnbench.meters.integrate import window_reading
from cnnbench.meters.sampler import MeterSampler

#: The selections that are not meter names.
KEYWORDS = ("auto", "none")


def _strict() -> bool:
    from cnnbench.plugins import strict_mode

    return strict_mode()


def parse_selection(selection: str | Iterable[str], registry: Mapping[str, type[Meter]]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """``"auto"`` | ``"none"`` | ``["rapl:psys", "nvml"]`` (or ``"rapl:psys,nvml"``) -> (meter names, options).

    Unknown names and options are usage errors that list the valid choices.
    """
    from cnnbench.config import UsageError

    items = [s.strip() for s in selection.split(",")] if isinstance(selection, str) else [str(s).strip() for s in selection]
    valid = ", ".join([*KEYWORDS, *registry])
    if not items or any(not item for item in items):
        raise UsageError(f"--meters takes a comma-separated list with no empty items; valid choices: {valid}")
    if "none" in items:
        if len(items) > 1:
            raise UsageError("--meters none cannot be combined with other meters")
        return [], {}
    names: list[str] = []
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, option = item.partition(":")
        if name == "auto":
            if option:
                raise UsageError(f"'auto' takes no option, not '{option}'")
            names.extend(n for n, cls in registry.items() if getattr(cls, "auto", True))
            continue
        if name not in registry:
            raise UsageError(f"unknown meter '{name}'; valid choices: {valid}")
        names.append(name)
        if option:
            allowed = getattr(registry[name], "options", {}) or {}
            if option not in allowed:
                choices = ", ".join(f"{name}:{o}" for o in allowed) or "none"
                raise UsageError(f"unknown option '{option}' for meter '{name}'; valid choices: {choices}")
            options.setdefault(name, {})[option] = True
    return list(dict.fromkeys(names)), options


class MeterSession:
    """The meters selected for a run: which domains they read, why others cannot be read, and the energy
    of any window, from samples taken on background threads.

    ``with MeterSession.open("auto", host) as session:`` starts sampling and closes everything at the end.
    """

    def __init__(self, selection: list[str] | None = None):
        self.selection = selection or []
        self.meters: dict[str, Meter] = {}
        #: Readable domains: "cpu_package0", "dram0", "gpu0", ... -> DomainInfo.
        self.domains: dict[str, DomainInfo] = {}
        #: Why a meter ("rapl") or a domain ("rapl:dram0") cannot be read: "reason; fix: ...".
        self.unavailable: dict[str, str] = {}
        #: Remarks that are not failures (a forced sampling period, a caveat of the hardware).
        self.notes: list[str] = []
        #: Idle power per domain from the last ``idle()`` (W), only when the baseline is trusted (the machine
        #: was idle), and the readings it came from.
        self.idle_power: dict[str, float] = {}
        self.idle_readings: dict[str, Reading] = {}
        #: The last ``idle()`` baseline as a record: its sub-windows' spread per domain, the machine's load
        #: during it, and whether it is trusted (and why not). None before any baseline.
        self.idle_baseline: dict[str, Any] | None = None
        self._samplers: dict[str, MeterSampler] = {}
        self._closed = False

    # -- opening ----------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        selection: str | Iterable[str] = "auto",
        host: Any = None,
        *,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        period: float | None = None,
    ) -> MeterSession:
        """Open the selected meters (``"auto"``: every meter that can be read here).

        ``settings`` maps a meter name to its settings (e.g. ``{"rapl": {"power_bound_w": 500}}``);
        ``period`` caps every meter's sampling period. Nothing is sampled until ``start()``.
        """
        if host is None:
            from cnnbench.plugins import get_host

            host = get_host()
        registry = host.meters()
        names, options = parse_selection(selection, registry)
        session = cls(names)
        if not names:
            return session
        for name in names:
            meter_settings = dict((settings or {}).get(name, {}))
            meter_settings.update(options.get(name, {}))
            if period is not None:
                meter_settings.setdefault("period", period)
            session._add(name, registry[name], meter_settings)
        return session

    def _add(self, name: str, cls: type[Meter], settings: dict[str, Any]) -> None:
        try:
            meter = cls(settings)
        except Exception as exc:
            if _strict():
                raise
            self.unavailable[name] = f"meter '{name}' could not be created: {type(exc).__name__}: {exc}"
            return
        try:
            meter.open()
            sampling_period = meter.period()
        except MeterError as exc:
            self.unavailable[name] = exc.text
            self._record_domains(name, meter)
            _close_quietly(meter)
            return
        except Exception as exc:  # a plugin's bug: name it and carry on with the other meters
            if _strict():
                raise
            self.unavailable[name] = f"meter '{name}' failed to open: {type(exc).__name__}: {exc}"
            _close_quietly(meter)
            return
        self._record_domains(name, meter)
        for domain in list(meter.domains):
            if domain in self.domains:
                other = self.domains[domain].meter
                del meter.domains[domain]
                self.unavailable[f"{name}:{domain}"] = f"{domain} is already measured by meter '{other}'"
        if not meter.domains:
            self.unavailable.setdefault(name, "every domain it reads is measured by another meter")
            _close_quietly(meter)
            return
        self.meters[name] = meter
        self.domains.update(meter.domains)
        self.notes.extend(meter.notes)
        self._samplers[name] = MeterSampler(meter, sampling_period)

    def _record_domains(self, name: str, meter: Meter) -> None:
        for domain, exc in meter.unavailable.items():
            self.unavailable[f"{name}:{domain}"] = exc.text

    # -- sampling ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return any(s.running for s in self._samplers.values())

    def periods(self) -> dict[str, float]:
        """Sampling period of each meter (s)."""
        return {name: s.period for name, s in self._samplers.items()}

    def start(self) -> MeterSession:
        """Start sampling (one background thread per meter); returns after a first sample of each."""
        if self._closed:
            raise RuntimeError("this MeterSession is closed")
        for sampler in self._samplers.values():
            sampler.start()
        return self

    def stop(self) -> None:
        """Stop sampling; idempotent. Samples are kept, so windows can still be read."""
        for sampler in self._samplers.values():
            sampler.stop()

    def close(self) -> None:
        """Stop sampling and release the meters (NVML is shut down here); idempotent."""
        if self._closed:
            return
        self.stop()
        for meter in self.meters.values():
            _close_quietly(meter)
        self._closed = True

    def __enter__(self) -> MeterSession:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- readings ---------------------------------------------------------------------------------

    def energy(self, start: float, end: float) -> dict[str, Reading]:
        """The energy of every readable domain over ``[start, end]`` (``time.monotonic()`` seconds, as the
        worker reports window edges). Waits briefly, while sampling runs, for a sample after ``end``.

        A domain whose window cannot be trusted gets a Reading with ``error`` set and ``joules`` None.
        """
        if end < start:
            raise ValueError(f"window ends before it starts: [{start}, {end}]")
        readings: dict[str, Reading] = {}
        for sampler in self._samplers.values():
            if sampler.running:
                ahead = max(0.0, end - time.monotonic())
                sampler.wait_for(end, ahead + max(1.0, 4 * sampler.period))
            with sampler.cond:
                for domain, series in sampler.series.items():
                    readings[domain] = window_reading(
                        series.info, series.times, series.energy, series.power, series.all_events(),
                        start, end, sampler.period,
                    )
        return readings

    def idle(self, seconds: float) -> dict[str, float]:
        """Measure idle power over ``seconds`` (blocking, sampling started if need be): {domain: W}.

        The baseline is cut into ``IDLE_WINDOWS`` equal sub-windows, whose spread (CV) per domain is kept in
        ``idle_baseline``, and the machine's load over it is checked (``cnnbench.meters.idle``). Only a
        trusted baseline fills ``idle_power``: one taken while other processes kept the CPUs busy returns
        {} and says why in ``idle_baseline["reason"]``. Domains whose idle window cannot be read are left
        out (their readings are in ``idle_readings``).
        """
        from cnnbench.meters import idle as idle_check
        from cnnbench.system import load as machine_load

        if seconds <= 0 or not self._samplers:
            return {}
        if not self.running:
            self.start()
        before, error = _load_snapshot(machine_load)
        start = time.monotonic()
        time.sleep(seconds)
        end = time.monotonic()
        after, error = _load_snapshot(machine_load) if before is not None else (None, error)
        load = machine_load.load_between(before, after) if before is not None and after is not None else None
        reason = idle_check.judge(load) if load is not None else (
            f"the machine's load cannot be read ({error}), so whether it was idle cannot be checked")
        self.idle_readings = self.energy(start, end)
        n = idle_check.IDLE_WINDOWS
        edges = [start + (end - start) * i / n for i in range(n + 1)]
        parts = [self.energy(a, b) for a, b in zip(edges, edges[1:])]
        domains: dict[str, dict[str, Any]] = {}
        for domain, reading in self.idle_readings.items():
            watts = [p[domain].power_w for p in parts]
            entry: dict[str, Any] = {"power_w": reading.power_w, "error": reading.error, "cv": None,
                                     "windows_w": [w for w in watts if w is not None]}
            if reading.ok and all(w is not None for w in watts) and sum(watts) > 0:
                mean = sum(watts) / n
                entry["cv"] = (sum((w - mean) ** 2 for w in watts) / (n - 1)) ** 0.5 / mean
            domains[domain] = entry
        self.idle_baseline = {"seconds": end - start, "windows": n, "trusted": reason is None, "reason": reason,
                              "load": load, "domains": domains}
        measured = {d: r.power_w for d, r in self.idle_readings.items() if r.ok and r.power_w is not None}
        # An untrusted baseline is kept as a record only: subtracting another process's power would make
        # every cell's above-idle energy too small.
        self.idle_power = measured if reason is None else {}
        return dict(self.idle_power)

    def gpu_domain(self, uuid: str | None = None, pci_bus_id: str | None = None) -> str | None:
        """The domain of the GPU with this UUID (torch's, with or without "GPU-") or PCI bus id."""
        for meter in self.meters.values():
            domain = meter.domain_for_device(uuid=uuid, pci_bus_id=pci_bus_id)
            if domain is not None and domain in self.domains:
                return domain
        return None

    def inventory(self) -> dict[str, Any]:
        """Per meter: what was found (GPUs with driver, ECC, clocks and power limits; RAPL zones)."""
        out: dict[str, Any] = {}
        for name, meter in self.meters.items():
            try:
                out[name] = meter.inventory()
            except Exception as exc:
                if _strict():
                    raise
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return out

    @property
    def no_energy_reason(self) -> str | None:
        """Why there are no energy figures at all (None when some domain is readable)."""
        if self.domains:
            return None
        if not self.selection:
            return "meters disabled (--meters none)"
        if self.unavailable:
            return "; ".join(f"{key}: {why}" for key, why in self.unavailable.items())
        return "no meter is registered"

    # -- cnnbench list ----------------------------------------------------------------------------

    @classmethod
    def probe_all(cls, host: Any = None) -> list[dict[str, Any]]:
        """For ``cnnbench list``: per registered meter, can it be read here, which domains, and if not,
        why and how to fix it. Opens and closes each meter; samples nothing."""
        if host is None:
            from cnnbench.plugins import get_host

            host = get_host()
        results = []
        for name, meter_cls in host.meters().items():
            result = ProbeResult(
                name=name, readable=False, description=getattr(meter_cls, "description", ""),
                auto=getattr(meter_cls, "auto", True),
            )
            meter = None
            try:
                meter = meter_cls({})
                meter.open()
                result.readable = bool(meter.domains)
                result.domains = list(meter.domains)
                result.notes = list(meter.notes)
            except MeterError as exc:
                result.reason = exc.reason
                result.fix = exc.fix
            except Exception as exc:
                if _strict():
                    raise
                result.reason = f"its probe raised {type(exc).__name__}: {exc}"
            if meter is not None:
                result.unavailable = {d: e.text for d, e in meter.unavailable.items()}
                _close_quietly(meter)
            results.append(result.to_dict())
        return results


    # -- heat, clocks and the GPU's per-window cross-check ------------------------------------------

    def gpu_conditions(self) -> dict[str, dict[str, Any]]:
        """Heat and clocks of every metered GPU now (temperature, SM and memory clocks, enforced power limit,
        clocks-event reason bits), from each meter that has a ``conditions()`` method; {} without one."""
        out: dict[str, dict[str, Any]] = {}
        for meter in self.meters.values():
            read = getattr(meter, "conditions", None)
            if not callable(read):
                continue
            try:
                out.update({d: v for d, v in read().items() if d in self.domains})
            except Exception:
                if _strict():
                    raise
        return out

    def gpu_temperatures(self) -> dict[str, float]:
        """°C of every metered GPU that reports its temperature now."""
        return {d: float(c["temperature_c"]) for d, c in self.gpu_conditions().items()
                if c.get("temperature_c") is not None}

    def gpu_domains(self) -> list[str]:
        return [d for d, info in self.domains.items() if info.kind == "gpu"]

    def window_checks(self, domain: str, windows: list[dict[str, float]]) -> list[dict[str, Any]]:
        """Per timed window of ``domain``: the counter's joules and the power integral side by side, and how
        far apart they are (the cross-check's tolerance is ``integrate.CROSS_CHECK_TOLERANCE``)."""
        info = self.domains[domain]
        out = []
        for index, window in enumerate(windows, 1):
            reading = self.energy(window["start"], window["end"]).get(domain)
            if reading is None:
                continue
            counter = reading.joules if info.energy_counter and reading.ok else None
            integrated = reading.integrated_j if reading.error is None else None
            gap = abs(integrated - counter) / counter if counter and integrated is not None else None
            out.append({"window": index, "seconds": reading.seconds, "counter_j": counter,
                        "integrated_j": integrated, "disagreement": gap, "error": reading.error})
        return out

def reasons_here(text: str, registry: Mapping[str, type[Meter]] | None = None) -> str:
    """``no_energy_reason`` as a table shows it: only the parts of meters that could apply on this machine
    (``Meter.could_apply_here``), so a CPU-only machine's tables do not repeat how to install NVML under
    every run. The stored text, ``--json`` and ``cnnbench list`` keep every meter's reason."""
    if registry is None:
        from cnnbench.plugins import get_host

        registry = get_host().meters()
    if not registry:
        return text
    names = "|".join(re.escape(name) for name in sorted(registry, key=len, reverse=True))
    # Parts are "meter: why" or "meter:domain: why", joined by "; "; a why holds "; fix: ..." itself.
    key = rf"(?:{names})(?::[^\s:;]+)?: "
    if not re.match(key, text):
        return text
    parts = re.split(rf"; (?={key})", text)
    kept = [part for part in parts if _could_apply(registry.get(re.split(r"[:]", part, maxsplit=1)[0]))]
    if kept:
        return "; ".join(kept)
    return "no energy meter applies to this machine ('cnnbench list' says why each is unavailable)"


def _could_apply(cls: type[Meter] | None) -> bool:
    try:
        return cls is None or bool(cls.could_apply_here())
    except Exception:  # a plugin's bug must not hide its reason
        return True


def _load_snapshot(machine_load: Any) -> tuple[Any, str | None]:
    try:
        return machine_load.snapshot(), None
    except (OSError, ValueError, StopIteration) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _close_quietly(meter: Meter) -> None:
    try:
        meter.close()
    except Exception:
        pass
