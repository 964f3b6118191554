"""The meter contract: the abstract class every meter plugin implements, and the records it deals in.

A meter is a class registered through ``cnnbench_register_meters()``. The session drives it so:

    meter = MeterClass(settings)   # settings: the user's options for this meter (a dict, may be empty)
    meter.open()                   # find the domains; raise MeterError when none can be read here
    meter.sample(now)              # many times, from the session's sampling thread: {domain: Sample}
    meter.close()                  # once, at the end of the session

A meter only reads. It never integrates: the session keeps its samples with CLOCK_MONOTONIC timestamps and
turns them into a :class:`Reading` per domain and per window (``cnnbench.meters.integrate``). A domain that
cannot be read is absent from ``meter.domains`` and present in ``meter.unavailable`` with the reason and
the fix: its energy is never reported as 0.
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Mapping

#: The domain kinds of the built-in meters; a plugin meter may add its own (e.g. "wall").
KINDS = ("cpu_package", "core", "uncore", "dram", "psys", "gpu")
#: How a reading's joules were obtained: the difference of a hardware energy counter, the integral of
#: power samples, or a figure that rests on an assumption (e.g. no sample inside a short window).
METHODS = ("counter", "integrated", "estimated")


class MeterError(Exception):
    """A meter, or one of its domains, cannot be read here: ``reason`` says why, ``fix`` how to fix it."""

    def __init__(self, reason: str, fix: str | None = None):
        super().__init__(reason if not fix else f"{reason}; fix: {fix}")
        self.reason = reason
        self.fix = fix

    @property
    def text(self) -> str:
        """One line for tables and ``session.unavailable``: the reason, then the fix."""
        return str(self)


@dataclass(frozen=True)
class DomainInfo:
    """One measured domain (``cpu_package0``, ``dram1``, ``gpu0``, ...)."""

    meter: str
    kind: str
    #: What it measures, in the meter's terms: the RAPL zone ("package-0", "package-0/dram") or the GPU's UUID.
    device: str
    #: Where it is read from: the sysfs directory, "NVML device 0 (NVIDIA H200, 00000000:17:00.0)".
    source: str = ""
    #: How often the hardware refreshes the value; windows shorter than this are flagged.
    update_period_s: float = 0.0
    #: The meter reports a cumulative energy counter (method "counter")...
    energy_counter: bool = True
    #: ...and/or instantaneous power (method "integrated", and the cross-check of a counter).
    power_samples: bool = False
    #: The power value is a running average over this many seconds (0: instantaneous); windows shorter
    #: than this are flagged, since the integral of such a value cannot follow them.
    power_average_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sample:
    """What a meter read for one domain at one instant (the session adds the timestamp).

    ``energy_j`` is cumulative and monotone since the meter opened: the meter has already corrected
    wraparound. ``power_w`` is the instantaneous power. A sample with neither is a failed read.
    """

    energy_j: float | None = None
    power_w: float | None = None
    #: About the interval since the previous sample; the values (if any) are still good.
    warning: str | None = None
    #: The interval since the previous good sample cannot be trusted; windows overlapping it are invalid.
    error: str | None = None
    #: The domain is gone for good (a GPU fell off the bus): it is not sampled again.
    lost: bool = False


@dataclass(frozen=True)
class Reading:
    """The energy of one domain over one window ``[start, end]``.

    A reading with an ``error`` has no joules (``None``, never 0): the window cannot be trusted for this
    domain (a GPU was lost, no samples cover it, a counter went backwards) and the runner should say so.
    """

    joules: float | None
    seconds: float
    method: str
    warnings: tuple[str, ...] = ()
    error: str | None = None
    #: Samples strictly inside the window (0: the figure is interpolated from the surrounding interval).
    samples: int = 0
    #: The integral of the power samples over the window, where the domain has them: the figure itself
    #: (method "integrated") or the cross-check of a counter, reported beside it.
    integrated_j: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.joules is not None

    @property
    def power_w(self) -> float | None:
        if not self.ok or self.seconds <= 0:
            return None
        return self.joules / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "joules": self.joules,
            "seconds": self.seconds,
            "power_w": self.power_w,
            "method": self.method,
            "warnings": list(self.warnings),
            "error": self.error,
            "samples": self.samples,
        }


class Meter(abc.ABC):
    """A source of energy readings (RAPL, NVML, a wall-socket meter, ...).

    Subclasses set ``name`` and implement ``open`` and ``sample``. Import heavy or optional libraries
    inside the methods, never at module level: ``cnnbench --help`` must not load them.
    """

    #: The name users select with ``--meters`` (lower-case letters, digits, "_" or "-").
    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: Included by ``--meters auto``; False for meters that read the same hardware as another one.
    auto: ClassVar[bool] = True
    #: Options a user can switch on in the selection as ``NAME:OPTION`` (e.g. ``rapl:psys``) -> help.
    options: ClassVar[Mapping[str, str]] = {}
    #: How to install what the meter needs, when that is what is missing.
    install_hint: ClassVar[str | None] = None
    #: Sampling period when neither the user nor the meter's own limits ask for another.
    default_period_s: ClassVar[float] = 0.05

    def __init__(self, settings: Mapping[str, Any] | None = None):
        self.settings: dict[str, Any] = dict(settings or {})
        #: Readable domains, filled by ``open``.
        self.domains: dict[str, DomainInfo] = {}
        #: Domains (or parts) that cannot be read, with the reason and the fix, filled by ``open``.
        self.unavailable: dict[str, MeterError] = {}
        #: Remarks for the user that are not failures (e.g. a sampling period the hardware forced).
        self.notes: list[str] = []

    @classmethod
    def could_apply_here(cls) -> bool:
        """Could this kind of machine have what the meter reads (a GPU, a CPU with RAPL), installed or
        not? Tables mention why a meter is unavailable only where it could apply; ``cnnbench list`` always."""
        return True

    @abc.abstractmethod
    def open(self) -> None:
        """Find and check the domains; raise :class:`MeterError` when none can be read here."""

    @abc.abstractmethod
    def sample(self, now: float) -> dict[str, Sample]:
        """Read every domain once (``now`` is ``time.monotonic()`` just before); must not block for long."""

    def close(self) -> None:
        """Release what ``open`` acquired. Called once; the session never samples after it."""

    def period(self) -> float:
        """Seconds between samples: the ``period`` setting, else ``default_period_s``."""
        period = float(self.settings.get("period") or self.default_period_s)
        if not math.isfinite(period) or period <= 0:
            raise MeterError(f"meter '{self.name}': the sampling period must be a positive number, not {period!r}")
        return period

    def inventory(self) -> dict[str, Any]:
        """What a reader needs to reproduce a result (models, drivers, zones, limits)."""
        return {}

    def domain_for_device(self, uuid: str | None = None, pci_bus_id: str | None = None) -> str | None:
        """The domain that measures the device with this UUID or PCI bus id, if this meter has it."""
        return None


@dataclass
class ProbeResult:
    """One line of ``cnnbench list``: can this meter be read here, and if not, why and how to fix it."""

    name: str
    readable: bool
    domains: list[str] = field(default_factory=list)
    reason: str | None = None
    fix: str | None = None
    description: str = ""
    auto: bool = True
    #: Domains of a readable meter that are not readable (domain -> "reason; fix: ...").
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
