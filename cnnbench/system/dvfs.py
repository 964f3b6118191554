"""GPU clocks and power limits through NVML (the paper's Fig. 8): read them, plan a sweep, apply a setting,
and put the originals back, with a state file so that they can be put back even after the host died.

    NEVER pass ``--allow-clock-changes`` on a shared or lent machine (a cluster node, a cloud or lab GPU
    someone else also uses, a machine lent for a session): application clocks and the power limit are
    settings of the whole GPU, they change every other user's jobs too, and they outlive the process that
    set them. Reading and planning are always safe; only ``--allow-clock-changes`` changes anything.

**What is changed.** Application clocks (``nvmlDeviceSetApplicationsClocks``: a memory / graphics pair from
``nvmlDeviceGetSupportedMemoryClocks`` and ``nvmlDeviceGetSupportedGraphicsClocks``) and the power limit
(``nvmlDeviceSetPowerManagementLimit``, within ``nvmlDeviceGetPowerManagementLimitConstraints``), of one GPU:
the one the workload runs on. Application clocks need root unless NVML's API restriction for them is off
(``nvidia-smi -acp UNRESTRICTED``); the power limit needs root or CAP_SYS_ADMIN. The privilege check reads
``/proc/self/status`` (``$CNNBENCH_PROC_ROOT`` instead of ``/proc``, for tests): it is advice given before
anything changes; the driver is the judge, and a refusal there is handled like any other failure.

**Restoring.** Before the first change, ``$CNNBENCH_HOME/dvfs-state.json`` records the originals of what the
sweep will change (and the CPU's, for ``--cpu``), the pid and the host. Every way out of :func:`sweep` (the
end, an exception, SIGINT / SIGTERM / SIGHUP, a failed apply) restores them, with those signals deferred while
the state file is written, a setting is applied and the originals are restored; the file is deleted once the
restore succeeded. When the host itself dies (SIGKILL, a power cut), ``cnnbench dvfs --restore`` restores
from the file. A state file left behind blocks the next sweep, whose "originals" would otherwise be the
leftovers of the dead one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from cnnbench.config import UsageError
from cnnbench.plural import count

STATE_FILE = "dvfs-state.json"
STATE_VERSION = 1
# NVML constants, as in nvml.h (used where the module lacks them).
CLOCK_GRAPHICS, CLOCK_MEM = 0, 2
_NOT_SUPPORTED, NO_PERMISSION = 3, 4
_RESTRICTED_API_SET_APPLICATION_CLOCKS = 0
_FEATURE_DISABLED = 0
# Linux capability bits (include/uapi/linux/capability.h).
CAP_DAC_OVERRIDE, CAP_SYS_ADMIN = 1, 21


class ApplyError(Exception):
    """A setting or a restore was refused or failed; ``permission`` when the driver (or the kernel) said no
    for want of privilege; ``changed`` when part of the setting had been applied before the failure."""

    def __init__(self, message: str, permission: bool = False, changed: bool = False):
        super().__init__(message)
        self.permission = permission
        self.changed = changed


# -- who we are ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """The effective user, groups and capabilities of this process, as the kernel reports them."""

    uid: int
    gids: tuple[int, ...]
    caps: int

    @property
    def root(self) -> bool:
        return self.uid == 0

    def has(self, cap: int) -> bool:
        return bool(self.caps >> cap & 1)


def identity() -> Identity:
    """From ``/proc/self/status`` (or ``$CNNBENCH_PROC_ROOT/self/status``): effective uid, groups, CapEff."""
    path = Path(os.environ.get("CNNBENCH_PROC_ROOT") or "/proc") / "self" / "status"
    try:
        status = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
        uid = int(status["Uid"].split()[1])
        gids = tuple({int(status["Gid"].split()[1]), *(int(g) for g in status.get("Groups", "").split())})
        return Identity(uid, gids, int(status.get("CapEff", "0").strip() or "0", 16))
    except (OSError, KeyError, ValueError, IndexError):
        # No procfs: no capabilities known, so only root counts as privileged.
        return Identity(os.geteuid(), tuple(os.getgroups()), (1 << 64) - 1 if os.geteuid() == 0 else 0)


# -- reading NVML -------------------------------------------------------------------------------------


@contextlib.contextmanager
def nvml_library() -> Iterator[Any]:
    """``pynvml``, initialised the way the nvml meter does it (its error messages and fixes); shut down at the
    end. ``nvmlInit`` is reference counted, so the meters of a sweep's runs open and close it freely inside."""
    from cnnbench.meters.base import MeterError
    from cnnbench.meters.nvml import NvmlMeter

    meter = NvmlMeter({})
    try:
        meter.open()
    except MeterError as exc:
        raise UsageError(f"no GPU clocks to read here: {exc.text} (the CPU side: cnnbench dvfs --cpu)") from None
    import pynvml

    try:
        yield pynvml
    finally:
        meter.close()


def nvml_const(nvml: Any, name: str, default: int) -> int:
    return getattr(nvml, name, default)


def describe_error(exc: BaseException) -> str:
    value = getattr(exc, "value", None)
    return f"{exc} (NVML error {value})" if value is not None else f"{type(exc).__name__}: {exc}"


@dataclass
class Gpu:
    """What one GPU allows and what it is set to now."""

    index: int
    name: str
    uuid: str
    pci_bus_id: str
    #: memory MHz -> its graphics MHz, both highest first (as NVML lists them).
    clocks: dict[int, list[int]] = field(default_factory=dict)
    #: Why application clocks cannot be read or set (None: they can).
    clocks_error: str | None = None
    #: (memory, graphics) MHz now, and the board's defaults.
    application: tuple[int, int] | None = None
    default_application: tuple[int, int] | None = None
    #: NVML restricts setting application clocks to root (True), or not (False); None: unknown.
    clocks_restricted: bool | None = None
    power_limit_w: float | None = None
    power_default_w: float | None = None
    power_min_w: float | None = None
    power_max_w: float | None = None
    power_error: str | None = None
    handle: Any = field(default=None, repr=False, compare=False)

    def pairs(self) -> list[tuple[int, int]]:
        return [(m, g) for m, gs in self.clocks.items() for g in gs]

    def to_dict(self) -> dict[str, Any]:
        # not asdict(): it would deep-copy the handle, a ctypes pointer with the real pynvml
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "handle"}
        data["clocks"] = {str(m): gs for m, gs in self.clocks.items()}
        return data


def read_gpus(nvml: Any) -> list[Gpu]:
    """Every GPU NVML sees, with its clock pairs, application clocks and power-limit range."""
    from cnnbench.meters.nvml import text_of
    gpus = []
    try:
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as exc:
        raise UsageError(f"nvmlDeviceGetCount failed: {describe_error(exc)}") from None
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpu = Gpu(index, text_of(nvml.nvmlDeviceGetName(handle)), text_of(nvml.nvmlDeviceGetUUID(handle)),
                      text_of(nvml.nvmlDeviceGetPciInfo(handle).busId), handle=handle)
        except nvml.NVMLError as exc:
            # not skipped: the GPUs' PCI order, which maps cuda:N to a GPU, needs every one of them
            raise UsageError(f"NVML device {index} cannot be opened: {describe_error(exc)}") from None
        graphics = nvml_const(nvml, "NVML_CLOCK_GRAPHICS", CLOCK_GRAPHICS)
        mem = nvml_const(nvml, "NVML_CLOCK_MEM", CLOCK_MEM)
        try:
            for m in sorted({int(m) for m in nvml.nvmlDeviceGetSupportedMemoryClocks(handle)}, reverse=True):
                gpu.clocks[m] = sorted({int(g) for g in nvml.nvmlDeviceGetSupportedGraphicsClocks(handle, m)},
                                       reverse=True)
            gpu.application = (int(nvml.nvmlDeviceGetApplicationsClock(handle, mem)),
                               int(nvml.nvmlDeviceGetApplicationsClock(handle, graphics)))
            gpu.default_application = (int(nvml.nvmlDeviceGetDefaultApplicationsClock(handle, mem)),
                                       int(nvml.nvmlDeviceGetDefaultApplicationsClock(handle, graphics)))
        except nvml.NVMLError as exc:
            gpu.clocks_error = _not_supported(nvml, exc, "application clocks are") or \
                f"application clocks cannot be read: {describe_error(exc)}"
        try:
            api = nvml_const(nvml, "NVML_RESTRICTED_API_SET_APPLICATION_CLOCKS", _RESTRICTED_API_SET_APPLICATION_CLOCKS)
            gpu.clocks_restricted = int(nvml.nvmlDeviceGetAPIRestriction(handle, api)) != \
                nvml_const(nvml, "NVML_FEATURE_DISABLED", _FEATURE_DISABLED)
        except nvml.NVMLError:
            gpu.clocks_restricted = None
        try:
            low, high = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
            gpu.power_min_w, gpu.power_max_w = low / 1e3, high / 1e3
            gpu.power_limit_w = nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1e3
            gpu.power_default_w = nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle) / 1e3
        except nvml.NVMLError as exc:
            gpu.power_error = _not_supported(nvml, exc, "the power limit is") or \
                f"the power limit cannot be read: {describe_error(exc)}"
        gpus.append(gpu)
    return gpus


def _not_supported(nvml: Any, exc: BaseException, what: str) -> str | None:
    if getattr(exc, "value", None) == nvml_const(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED):
        return f"NVML says {what} NOT_SUPPORTED on this GPU (most GeForce boards)"
    return None


def target_gpu(gpus: list[Gpu], device: str) -> Gpu:
    """The GPU ``cuda:N`` is, given CUDA_VISIBLE_DEVICES, in PCI bus order: the sweep sets
    CUDA_DEVICE_ORDER=PCI_BUS_ID for its workers (CUDA's default, FASTEST_FIRST, can number GPUs otherwise)."""
    from cnnbench.meters.nvml import normalize_pci, normalize_uuid

    n = int(device.partition(":")[2] or 0)
    ordered = sorted(gpus, key=lambda g: normalize_pci(g.pci_bus_id) or (1 << 32,))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        if n >= len(ordered):
            raise UsageError(f"--device {device}: NVML sees {count(len(gpus), 'GPU')}; valid choices: "
                             + ", ".join(f"cuda:{i}" for i in range(len(gpus))))
        return ordered[n]
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if n >= len(entries):
        raise UsageError(f"--device {device}: CUDA_VISIBLE_DEVICES={visible} makes {count(len(entries), 'GPU')} visible")
    entry = entries[n]
    if entry.isdigit() and int(entry) < len(ordered):
        return ordered[int(entry)]
    for gpu in gpus:
        if normalize_uuid(gpu.uuid).startswith(normalize_uuid(entry)):
            return gpu
    raise UsageError(f"--device {device}: CUDA_VISIBLE_DEVICES entry '{entry}' names no GPU NVML sees")


def missing_privileges(gpu: Gpu, who: Identity, clocks: bool, power: bool) -> list[str]:
    """What this process lacks to change the clocks / the power limit of ``gpu`` (empty: nothing)."""
    missing = []
    if clocks and not who.root and gpu.clocks_restricted is not False:
        missing.append(f"application clocks need root (NVML restricts them on GPU {gpu.index}; as root, "
                       f"'nvidia-smi -i {gpu.index} -acp UNRESTRICTED' lets other users set them)")
    if power and not (who.root or who.has(CAP_SYS_ADMIN)):
        missing.append("the power limit needs root or CAP_SYS_ADMIN")
    return missing


# -- planning -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSetting:
    """One point of the sweep: application clocks and a power limit (None: left as they are)."""

    memory_mhz: int | None
    graphics_mhz: int | None
    power_limit_w: float | None = None

    def label(self) -> str:
        clocks = f"{self.memory_mhz}:{self.graphics_mhz} MHz" if self.memory_mhz else "clocks as they are"
        power = f", {self.power_limit_w:g} W" if self.power_limit_w is not None else ""
        return clocks + power

    def flags(self) -> list[str]:
        """The flags that plan exactly this setting (the command line stored with its run)."""
        out = ["--clocks", f"{self.memory_mhz}:{self.graphics_mhz}"] if self.memory_mhz else []
        return out + (["--power-limits", f"{self.power_limit_w:g}"] if self.power_limit_w is not None else [])


def spread(values: list, count: int) -> list:
    """``count`` values of ``values`` evenly spread over it, both ends included, in its order."""
    if count >= len(values):
        return list(values)
    if count <= 1:
        return [values[0]]
    picks = sorted({round(i * (len(values) - 1) / (count - 1)) for i in range(count)})
    return [values[i] for i in picks]


def parse_clocks(text: str, gpu: Gpu) -> list[tuple[int, int]]:
    """``--clocks MEM:SM,...`` (and the words ``current`` / ``default``), each a pair ``gpu`` supports."""
    from cnnbench.config import split_list

    pairs = []
    for item in split_list("--clocks", text):
        if item in ("current", "default"):
            pair = gpu.application if item == "current" else gpu.default_application
            if pair is None:
                raise UsageError(f"--clocks {item}: GPU {gpu.index} reports no {item} application clocks")
        else:
            mem, sep, graphics = item.partition(":")
            if not sep or not mem.strip().isdigit() or not graphics.strip().isdigit():
                example = "%d:%d" % gpu.pairs()[0] if gpu.pairs() else "2600:705"
                raise UsageError(f"--clocks takes MEMORY:GRAPHICS pairs in MHz (e.g. {example}), current or "
                                 f"default, not '{item}'")
            pair = (int(mem), int(graphics))
        if pair not in gpu.pairs():
            raise UsageError(f"--clocks {item}: {_unsupported_pair(pair, gpu)}")
        pairs.append(pair)
    if len(set(pairs)) < len(pairs):
        raise UsageError("--clocks names one pair twice")
    return pairs


def _unsupported_pair(pair: tuple[int, int], gpu: Gpu) -> str:
    mem, graphics = pair
    name = f"GPU {gpu.index} ({gpu.name})"
    if mem not in gpu.clocks:
        return (f"{name} has no memory clock {mem} MHz; valid memory clocks: "
                f"{', '.join(str(m) for m in gpu.clocks)} MHz")
    nearest = sorted(gpu.clocks[mem], key=lambda g: (abs(g - graphics), -g))[:2]
    return (f"{name} cannot run graphics at {graphics} MHz with memory at {mem} MHz; nearest supported: "
            f"{', '.join(f'{mem}:{g}' for g in nearest)} (graphics {max(gpu.clocks[mem])}-"
            f"{min(gpu.clocks[mem])} MHz in {len(gpu.clocks[mem])} steps)")


def parse_power_limits(text: str, gpu: Gpu) -> list[float]:
    from cnnbench.config import split_list

    if gpu.power_error:
        raise UsageError(f"--power-limits: GPU {gpu.index}: {gpu.power_error}")
    limits = []
    for item in split_list("--power-limits", text):
        try:
            watts = float(item)
        except ValueError:
            raise UsageError(f"--power-limits takes watts, e.g. {gpu.power_max_w:g}, not '{item}'") from None
        if not gpu.power_min_w <= watts <= gpu.power_max_w:  # also rejects nan
            raise UsageError(f"--power-limits {item}: GPU {gpu.index} ({gpu.name}) takes "
                             f"{gpu.power_min_w:g}-{gpu.power_max_w:g} W")
        limits.append(watts)
    return limits


def plan(gpu: Gpu, clocks: str | None, power_limits: str | None, max_settings: int) -> list[GpuSetting]:
    """The settings of a sweep: the named pairs (or every memory clock with an evenly spread subset of its
    graphics clocks, ``max_settings`` pairs in all, at least one per memory clock), times the power limits."""
    if gpu.clocks_error and (clocks or not power_limits):
        raise UsageError(f"GPU {gpu.index} ({gpu.name}): {gpu.clocks_error}")
    if clocks:
        pairs: list[tuple[int | None, int | None]] = list(parse_clocks(clocks, gpu))
    elif power_limits and gpu.clocks_error:
        pairs = [(None, None)]  # a power sweep at whatever clocks the GPU picks
    else:
        share = max(1, max_settings // len(gpu.clocks))
        pairs = [(m, g) for m, gs in gpu.clocks.items() for g in spread(gs, share)]
    limits: list[float | None] = list(parse_power_limits(power_limits, gpu)) if power_limits else [None]
    return [GpuSetting(m, g, w) for m, g in pairs for w in limits]
