"""The typed result record of one cell, and the statistics computed from its timed windows."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Version of the JSON record below; bump it when a field is added or changes meaning, and teach
#: ``migrate_record`` to bring older records up to it.
#: 1: the first record. 2: ``energy_per_image_j_windows``. 3: ``quality``, ``conditions``, ``warnings``.
SCHEMA_VERSION = 3
STATUSES = ("ok", "unsupported", "unavailable", "oom", "timeout", "error")
FAILED_STATUSES = ("oom", "timeout", "error")
#: Cells that no worker measured because they could not run here; a grid of only these measured nothing.
REFUSED_STATUSES = ("unsupported", "unavailable")


@dataclass
class Timing:
    """Time per iteration over the repeated windows (each window: total time / its iterations)."""

    median_ms: float
    min_ms: float
    max_ms: float
    #: Sample standard deviation across windows (0 with one window).
    stdev_ms: float
    windows: int
    iterations: int

    @classmethod
    def from_windows(cls, windows: list[dict[str, float]]) -> Timing:
        per_iter = [(w["end"] - w["start"]) / w["iterations"] * 1e3 for w in windows]
        return cls(
            median_ms=statistics.median(per_iter),
            min_ms=min(per_iter),
            max_ms=max(per_iter),
            stdev_ms=statistics.stdev(per_iter) if len(per_iter) > 1 else 0.0,
            windows=len(per_iter),
            iterations=sum(int(w["iterations"]) for w in windows),
        )


@dataclass
class Result:
    framework: str
    network: str
    batch_size: int
    device: str
    precision: str
    kernels: str
    #: Threads asked for (None: the framework's default); the threads really used are in provenance.
    threads: int | None
    status: str
    reason: str | None = None
    #: Adapter-specific switches the cell ran with (``--option``), e.g. {"xla": "on"}.
    options: dict[str, str] = field(default_factory=dict)
    time_per_iter_ms: float | None = None
    time_per_iter_ms_stdev: float | None = None
    time_per_iter_ms_min: float | None = None
    time_per_iter_ms_max: float | None = None
    images_per_s: float | None = None
    #: Achieved rate of the spec's counted training FLOPs (2 x multiply-adds of conv and fc layers,
    #: forward and backward) per second; a count from the spec, not a hardware counter.
    gflops_per_s: float | None = None
    #: Domain ("gpu0", "cpu_package0", "dram0", ...) -> {"power_w", "energy_per_image_j", "method"}.
    energy: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: package + DRAM + the cell's GPU: energy_per_image_j, power_w, method, dynamic (above idle)
    #: energy, and for GPU runs the CPU's share of the energy.
    energy_total: dict[str, Any] | None = None
    #: The total's J/image in each timed window, in window order (None: no total, or a version-1 record).
    energy_per_image_j_windows: list[float] | None = None
    #: Why there are no energy figures, when there are none.
    energy_unavailable: str | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str | None = None
    windows: list[dict[str, float]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: The quality gate's view of the cell: spread across windows (``cv``), the machine's load around it
    #: (``load``), ``noisy`` and its ``reasons``, and what ``--stable`` did (``stable``). Empty: not assessed.
    quality: dict[str, Any] = field(default_factory=dict)
    #: Heat and clocks per timed window, in window order (GPU temperature, SM/memory clocks, power limit,
    #: throttle reasons; CPU temperature and frequency where the machine exposes them).
    conditions: list[dict[str, Any]] = field(default_factory=list)
    #: Every warning attached to this cell's time or energy (meter, noise, heat, coherence, short windows),
    #: each one line that names what it concerns; shown wherever the cell's numbers are shown.
    warnings: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def warn(self, text: str) -> None:
        """Attach a warning once."""
        if text not in self.warnings:
            self.warnings.append(text)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Result:
        """A Result from its JSON record of any schema version up to this one."""
        record = migrate_record(record)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})

    def fill_timing(self, windows: list[dict[str, float]], training_flops_per_image: int) -> None:
        timing = Timing.from_windows(windows)
        self.windows = windows
        self.time_per_iter_ms = timing.median_ms
        self.time_per_iter_ms_stdev = timing.stdev_ms
        self.time_per_iter_ms_min = timing.min_ms
        self.time_per_iter_ms_max = timing.max_ms
        seconds = timing.median_ms / 1e3
        self.images_per_s = self.batch_size / seconds
        self.gflops_per_s = training_flops_per_image * self.batch_size / seconds / 1e9


def migrate_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` brought up to SCHEMA_VERSION, one version at a time."""
    record = dict(record)
    version = int(record.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise ValueError(f"result record has schema version {version}; this cnnbench reads up to "
                         f"{SCHEMA_VERSION} (upgrade cnnbench)")
    if version < 2:
        # Version 1 kept only the energy summed over all windows: per-window energy is unknown.
        record.setdefault("energy_per_image_j_windows", None)
        version = 2
    if version < 3:
        # Version 2 had no quality gate, heat record or cell warnings: none was assessed, none is invented.
        record.setdefault("quality", {})
        record.setdefault("conditions", [])
        record.setdefault("warnings", [])
        version = 3
    record["schema_version"] = version
    return record
