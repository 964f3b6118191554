"""The axes of a run, their valid values, and the one-cell configuration the worker receives."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

# public here as well: plugins and scripts catch cnnbench.config.UsageError
from cnnbench.errors import StoreError, UsageError  # noqa: F401

PRECISIONS = ("fp32", "fp16", "bf16", "tf32")
KERNELS = ("vendor", "native")
DEVICE_CHOICES = "cpu, cuda, cuda:N"
_DEVICE_RE = re.compile(r"^(cpu|cuda(?::(\d+))?)$")


def check_output_path(path: str, suffixes: tuple[str, ...] = (), overwrite: bool = True, flag: str = "") -> None:
    """A file path the user gave for writing, checked before anything is measured: its folder must exist
    and be writable, it must not be a folder (or a device, a FIFO), its suffix must be one of
    ``suffixes`` (if given), and without ``overwrite`` it must not exist yet."""
    import os
    import stat

    what = f"{flag} {path}" if flag else path
    if suffixes and os.path.splitext(path)[1].lower() not in suffixes:
        raise UsageError(f"{what}: unknown file type '{os.path.splitext(path)[1] or '(none)'}'; valid choices: "
                         f"{', '.join(suffixes)}")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{what} is a folder; give a file path")
    if os.path.exists(path):
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UsageError(f"cannot write {path}: it is not a regular file")
        if not overwrite:
            raise UsageError(f"{what} exists; remove it or give another path (nothing was written)")
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: the folder {folder} is not writable")


def device_kind(device: str) -> str:
    """``"cuda:1"`` -> ``"cuda"``."""
    return device.split(":", 1)[0]


def check_device(device: str) -> str:
    if not _DEVICE_RE.match(device):
        raise UsageError(f"unknown device '{device}'; valid choices: {DEVICE_CHOICES}")
    return device


def check_choice(axis: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UsageError(f"unknown {axis} '{value}'; valid choices: {', '.join(choices)}")
    return value


def positive_int(axis: str, value: str | int, allow_zero: bool = False) -> int:
    kind = "a whole number >= 0" if allow_zero else "a positive whole number"
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{axis} must be {kind}, not '{value}'") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise UsageError(f"{axis} must be {kind}, not '{value}'")
    return number


def positive_float(axis: str, value: str | float, maximum: float, allow_zero: bool = False) -> float:
    """A positive number of seconds up to ``maximum`` (beyond it, timers overflow or runs never end)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{axis} must be a number, not '{value}'") from None
    low_ok = number >= 0 if allow_zero else number > 0
    if not (low_ok and number <= maximum):  # also rejects nan
        kind = "a number from 0" if allow_zero else "a positive number"
        raise UsageError(f"{axis} must be {kind} up to {maximum:g}, not '{value}'")
    return number


#: The smallest --memory-limit: a Python interpreter with NumPy needs about this much before any framework.
MIN_MEMORY_LIMIT = 64 << 20
MAX_MEMORY_LIMIT = 1 << 50
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def memory_size(flag: str, value: str | int) -> int:
    """``"4G"`` -> bytes. K, M, G and T are powers of 1024 (as in ``ulimit`` and ``docker --memory``);
    a plain number is bytes."""
    match = _SIZE_RE.match(str(value).strip())
    if not match:
        raise UsageError(f"{flag} takes a size such as 512M or 4G (units K, M, G, T: powers of 1024), not '{value}'")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size < MIN_MEMORY_LIMIT:
        raise UsageError(f"{flag} must be at least 64M (a worker needs that much before the framework loads), "
                         f"not '{value}'")
    if size > MAX_MEMORY_LIMIT:
        raise UsageError(f"{flag} must be at most 1024T, not '{value}'")
    return size


def format_size(size: int) -> str:
    """Bytes as the largest binary unit that keeps a number >= 1: ``3221225472`` -> ``"3 GiB"``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def stable_target(value: str | float) -> float:
    """``--stable [TARGET]``: a percentage of the median (``2``, ``0.5%``) -> a fraction (0.02, 0.005)."""
    text = str(value).strip()
    try:
        percent = float(text[:-1] if text.endswith("%") else text)
    except ValueError:
        percent = math.nan
    if not 0 < percent < 100:  # also rejects nan and inf
        raise UsageError(f"--stable takes a target in percent of the median, above 0 and below 100 (e.g. 2 or "
                         f"0.5%), not '{value}'")
    return percent / 100.0


def positive_ints(axis: str, values: list[str]) -> list[int]:
    """Whole numbers of a comma list; ``8,08`` is one value twice, so it is rejected like ``8,8``."""
    numbers = [positive_int(axis, value) for value in values]
    for number in numbers:
        if numbers.count(number) > 1:
            raise UsageError(f"{axis} lists {number} twice")
    return numbers


def split_list(axis: str, text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; empty items and duplicates are usage errors."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise UsageError(f"{axis} takes a comma-separated list with no empty items, not '{text}'")
    seen = set()
    for item in items:
        if item in seen:
            raise UsageError(f"{axis} lists '{item}' twice")
        seen.add(item)
    return items


@dataclass(frozen=True)
class Measurement:
    """How a cell is timed: warm-up iterations, then ``repeats`` windows of at least ``min_time`` s."""

    warmup: int = 2
    min_time: float = 1.0
    repeats: int = 5
    #: Fixed iterations per window instead of growing each window to ``min_time``.
    iterations: int | None = None
    #: ``--stable``: after ``repeats`` windows, add windows until the 95 % interval of the median time per
    #: iteration is within this fraction of the median (0.02: 2 %); None: exactly ``repeats`` windows.
    stable: float | None = None
    #: ``--stable-max-time``: seconds from the first timed window after which ``stable`` gives up (None:
    #: ``cnnbench.results.quality.STABLE_MAX_TIME_S``).
    stable_max_time: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """One cell of the grid: everything the worker needs besides the network spec."""

    framework: str
    network: str
    batch_size: int
    device: str = "cpu"
    precision: str = "fp32"
    kernels: str = "vendor"
    #: Compute threads; None leaves the framework's default.
    threads: int | None = None
    #: An optimizer update after backward (off by default: the paper times forward + backward).
    optimizer: bool = False
    seed: int = 0
    #: Adapter-specific switches (``--option xla=on``), checked against the adapter's ``options``.
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str, default: str | None = None) -> str | None:
        return dict(self.options).get(name, default)

    @property
    def device_kind(self) -> str:
        return device_kind(self.device)

    @property
    def device_index(self) -> int:
        _, _, index = self.device.partition(":")
        return int(index) if index else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["options"] = tuple(tuple(pair) for pair in values.get("options", ()))
        return cls(**values)

    def label(self) -> str:
        threads = f" t{self.threads}" if self.threads else ""
        options = "".join(f" {k}={v}" for k, v in self.options)
        return (
            f"{self.framework} {self.network} bs{self.batch_size} {self.device} "
            f"{self.precision} {self.kernels}{threads}{options}"
        )
