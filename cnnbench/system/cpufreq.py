"""The CPU side of ``cnnbench dvfs --cpu``: cpufreq governors and maximum frequencies.

    NEVER pass ``--allow-clock-changes`` on a shared or lent machine: the governor and the maximum frequency
    are settings of the whole machine, they slow down (or heat up) everyone else's work, and they outlive
    the process that set them.

The policies are read from ``/sys/devices/system/cpu/cpufreq/policy*/`` (``$CNNBENCH_CPUFREQ_ROOT`` instead,
so tests and containers can point it at another tree of the same layout): ``scaling_governor``,
``scaling_available_governors``, ``scaling_max_freq`` / ``scaling_min_freq``, ``cpuinfo_min_freq`` /
``cpuinfo_max_freq`` and, where the driver lists them (acpi-cpufreq does, intel_pstate and amd-pstate do
not), ``scaling_available_frequencies``. Frequencies are kHz in sysfs and MHz on the command line.

Applying writes ``scaling_governor`` and ``scaling_max_freq`` of every policy (the minimum is left alone: the
kernel caps it at the new maximum), which needs write permission to those files (root). The originals go
into the same state file as the GPU's (``cnnbench.system.dvfs``) and come back by the same restore paths.
Virtual machines and many containers have no cpufreq at all: that is said as "no cpufreq here".
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.config import UsageError

ROOT_ENV = "CNNBENCH_CPUFREQ_ROOT"
DEFAULT_ROOT = "/sys/devices/system/cpu/cpufreq"
#: The files a CPU setting writes.
WRITTEN = ("scaling_governor", "scaling_max_freq")


def cpufreq_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


@dataclass
class Policy:
    """One cpufreq policy: a group of CPUs that share a frequency."""

    name: str
    path: str
    cpus: str
    driver: str | None
    governor: str
    governors: list[str]
    min_khz: int
    max_khz: int
    scaling_max_khz: int
    scaling_min_khz: int | None
    #: kHz, highest first; None where the driver does not list them (intel_pstate, amd-pstate).
    frequencies: list[int] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _policy_number(path: Path) -> int:
    digits = path.name[len("policy"):]
    return int(digits) if digits.isdigit() else 1 << 30


def read_policies() -> list[Policy]:
    """Every policy under the cpufreq root; a UsageError saying "no cpufreq here" when there is none."""
    root = cpufreq_root()
    if not root.is_dir():
        raise UsageError(f"no cpufreq here: {root} does not exist (virtual machines and many containers "
                         "have no CPU frequency scaling)")
    policies = []
    for path in sorted(root.glob("policy*"), key=_policy_number):
        governor = _read(path / "scaling_governor")
        low, high, current = (_read(path / n) for n in ("cpuinfo_min_freq", "cpuinfo_max_freq", "scaling_max_freq"))
        if not (governor and low and high and current):
            continue  # an offline CPU's policy: nothing to read or set
        listed = _read(path / "scaling_available_frequencies")
        scaling_min = _read(path / "scaling_min_freq")
        policies.append(Policy(
            name=path.name, path=str(path), cpus=_read(path / "affected_cpus") or "?",
            driver=_read(path / "scaling_driver"), governor=governor,
            governors=(_read(path / "scaling_available_governors") or governor).split(),
            min_khz=int(low), max_khz=int(high), scaling_max_khz=int(current),
            scaling_min_khz=int(scaling_min) if scaling_min else None,
            frequencies=sorted({int(f) for f in listed.split()}, reverse=True) if listed else None,
        ))
    if not policies:
        raise UsageError(f"no cpufreq here: {root} has no readable policy* directories (virtual machines and "
                         "many containers have no CPU frequency scaling)")
    return policies


@dataclass(frozen=True)
class CpuSetting:
    """One point of a CPU sweep: a governor and a maximum frequency for every policy."""

    governor: str
    max_mhz: int

    def label(self) -> str:
        return f"{self.governor}, max {self.max_mhz} MHz"

    def flags(self) -> list[str]:
        return ["--cpu", "--governors", self.governor, "--cpu-max-freqs", str(self.max_mhz)]


def frequency_choices(policies: list[Policy], count: int) -> list[int]:
    """Candidate maximum frequencies (MHz, highest first): the listed ones where every policy lists them,
    else ``count`` steps from the lowest to the highest hardware limit."""
    if all(p.frequencies for p in policies):
        return sorted({f // 1000 for p in policies for f in p.frequencies}, reverse=True)
    low, high = min(p.min_khz for p in policies) // 1000, max(p.max_khz for p in policies) // 1000
    steps = max(count, 2)
    return sorted({round(high - i * (high - low) / (steps - 1)) for i in range(steps)}, reverse=True)


def plan(policies: list[Policy], governors: str | None, max_freqs: str | None, max_settings: int) -> list[CpuSetting]:
    """Governors (default: the current one) times maximum frequencies (default: an evenly spread subset of
    the choices, ``max_settings`` settings in all), each checked against what every policy offers."""
    from cnnbench.config import split_list
    from cnnbench.system.dvfs import spread

    common = [g for g in policies[0].governors if all(g in p.governors for p in policies)]
    if governors:
        chosen = split_list("--governors", governors)
        for name in chosen:
            if name not in common:
                raise UsageError(f"unknown governor '{name}'; valid choices: {', '.join(common)}")
    else:
        chosen = [policies[0].governor]
    choices = frequency_choices(policies, max_settings)
    if max_freqs:
        freqs = []
        low, high = min(p.min_khz for p in policies) // 1000, max(p.max_khz for p in policies) // 1000
        for item in split_list("--cpu-max-freqs", max_freqs):
            if not item.isdigit():
                raise UsageError(f"--cpu-max-freqs takes MHz, e.g. {high}, not '{item}'")
            mhz = int(item)
            listed = all(p.frequencies for p in policies)
            if not low <= mhz <= high or (listed and mhz not in choices):
                nearest = sorted(choices, key=lambda f: abs(f - mhz))[:2]
                valid = f"nearest listed: {', '.join(map(str, nearest))} MHz" if listed else f"{low}-{high} MHz"
                raise UsageError(f"--cpu-max-freqs {item}: the CPUs here take {valid}")
            freqs.append(mhz)
    else:
        freqs = spread(choices, max(1, max_settings // len(chosen)))
    return [CpuSetting(g, f) for g in chosen for f in freqs]


def writable(path: str, who: Any) -> bool:
    """Whether ``who`` (a cnnbench.system.dvfs.Identity) may write ``path``: the process's own access (read-only
    mounts) and the file's owner and mode for that identity, as the kernel decides (ACLs aside)."""
    from cnnbench.system.dvfs import CAP_DAC_OVERRIDE

    if not os.access(path, os.W_OK):
        return False
    st = os.stat(path)
    if who.has(CAP_DAC_OVERRIDE):
        return True
    if st.st_uid == who.uid:
        return bool(st.st_mode & 0o200)
    if st.st_gid in who.gids:
        return bool(st.st_mode & 0o020)
    return bool(st.st_mode & 0o002)


def missing_permissions(policies: list[Policy], who: Any) -> list[str]:
    """What this process lacks to apply CPU settings (empty: nothing)."""
    blocked = [f"{p.name}/{name}" for p in policies for name in WRITTEN
               if not writable(os.path.join(p.path, name), who)]
    if not blocked:
        return []
    shown = ", ".join(blocked[:4]) + (f" and {len(blocked) - 4} more" if len(blocked) > 4 else "")
    return [f"writing {shown} under {cpufreq_root()} needs root (uid {who.uid} may not write them)"]


def originals(policies: list[Policy]) -> list[dict[str, Any]]:
    return [{"policy": p.name, "path": p.path, "governor": p.governor, "max_khz": p.scaling_max_khz}
            for p in policies]


def _write(path: str, value: str) -> None:
    from cnnbench.system.dvfs import ApplyError

    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        denied = exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        raise ApplyError(f"writing {value} to {path} failed: {exc.strerror}"
                         + (" (run as root; never on a shared or lent machine)" if denied else ""),
                         permission=denied) from None


def apply(policies: list[Policy], setting: CpuSetting) -> dict[str, Any]:
    """Set every policy's governor and maximum frequency (clamped to its own hardware range: hybrid CPUs
    have cores of different ranges); return what the files say afterwards."""
    from cnnbench.system.dvfs import ApplyError

    changed = False
    for p in policies:
        try:
            _write(os.path.join(p.path, "scaling_governor"), setting.governor)
            changed = True
            _write(os.path.join(p.path, "scaling_max_freq"),
                   str(min(max(setting.max_mhz * 1000, p.min_khz), p.max_khz)))
        except ApplyError as exc:
            exc.changed = changed
            raise
    return {"setting": {"governor": setting.governor, "max_mhz": setting.max_mhz},
            "policies": {p.name: {"governor": _read(Path(p.path, "scaling_governor")),
                                  "max_khz": _read(Path(p.path, "scaling_max_freq"))} for p in policies}}


def restore_policies(entries: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Put back each policy's governor and maximum frequency: (what was restored, what failed)."""
    from cnnbench.system.dvfs import ApplyError

    done: list[str] = []
    errors: list[str] = []
    for entry in entries:
        try:
            _write(os.path.join(entry["path"], "scaling_max_freq"), str(entry["max_khz"]))
            _write(os.path.join(entry["path"], "scaling_governor"), entry["governor"])
        except ApplyError as exc:
            errors.append(f"CPU {entry['policy']}: {exc}")
            continue
        done.append(f"CPU {entry['policy']}: governor {entry['governor']}, max {entry['max_khz'] // 1000} MHz")
    if len(done) > 1:
        # one line for a machine's worth of identical policies
        same = {d.split(": ", 1)[1] for d in done}
        if len(same) == 1:
            done = [f"CPU ({len(done)} policies): {same.pop()}"]
    return done, errors
