"""The ``rapl`` meter: CPU package, core, uncore, DRAM (and psys on request) through Linux powercap.

The tree is read at ``$CNNBENCH_POWERCAP_ROOT`` (default ``/sys/class/powercap``), so tests and users in
containers can point it at another tree of the same format (``cnnbench.testing`` builds one).

**Layout.** ``/sys/class/powercap`` lists every zone flat (``intel-rapl:0``, ``intel-rapl:0:0``, ...: symlinks
into ``/sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/intel-rapl:0:0``), and the same zones appear
nested under their parents and under the control type (``intel-rapl/``). Zones are identified by real path,
so each is counted once, and named by their ``name`` file, never by index: ``package-N`` (or
``package-N-die-M`` on multi-die parts), and below it ``core``, ``uncore``, ``dram``; ``psys`` (``psys-N``)
is a top-level zone. Domains are ``cpu_packageN``, ``cpu_coreN``, ``cpu_uncoreN``, ``dramN``, ``psysN``
(``_dieM`` appended on multi-die parts). The same package seen through another interface
(``intel-rapl-mmio:0``, TPMI) is an alias: the MSR view wins and the alias is listed, not counted.
AMD Zen uses the same driver (``intel_rapl_msr``): ``package-N`` with one ``core`` child and no DRAM.

**psys** contains the other domains (it is the whole platform), so it is measured only on request:
``--meters rapl:psys`` (setting ``psys=True``).

**Wraparound.** ``energy_uj`` wraps to 0 after ``max_energy_range_uj``. Each sample adds the increase since
the previous one, corrected for one wrap; more than one wrap between two samples cannot be seen, so the
sampling period is at most a quarter of the shortest worst-case wrap time, ``max_energy_range_uj`` at the
zone's power bound. Real ranges (2^32 units of 15.3-61 µJ: 65-262 kJ, and 4.3 kJ for the smallest 2^32 µJ
ones) wrap after 4-260 s at 1000 W, so the default 50 ms period is the binding one; a gap between samples
longer than the wrap time is flagged on the readings it touches. A zone whose ``max_energy_range_uj`` cannot
be read is unavailable: without it a wrap cannot be corrected, and guessing the range would silently produce
a wrong figure.

**Restart, not wrap.** A counter also goes backwards when it restarts (the driver reloaded, a CPU came back
from hotplug or the machine resumed): read as a wrap, a restart from 0 adds most of the range at once, e.g.
262 kJ in 50 ms, a reading of megawatts. So a backward step is a wrap only if the power it implies over the
interval (the wrapped delta over the time between the two reads) is within the zone's power bound; otherwise
the interval is an error (the windows it touches get no figure, with the reason) and the total carries on from
the new value. The bound is twice the largest ``constraint_N_max_power_uw`` the zone declares (the kernel fills
them from the part's thermal spec power for PL1, its maximum power for PL2, and twice that for PL4), so bursts
up to the peak limit pass; where a zone declares none, :data:`DEFAULT_POWER_BOUNDS_W` for its kind. Both are
far below what a restart implies with any real range (kilowatts to megawatts); with a tiny range (test trees)
the two cannot be told apart, and a restart reads as a wrap.

**Failed reads.** A read of ``energy_uj`` that fails after the meter opened (the zone vanished with its
driver, EIO) is an error on the interval from the last good read to the next one: no window across it gets a
figure, and no value is repeated or carried across the gap.

**Permissions.** Since the 2020 PLATYPUS fix (CVE-2020-8694) ``energy_uj`` is readable by root only. A zone
that cannot be read is unavailable with the exact fix (a ``chmod`` line and a persistent udev rule),
never 0. The counter refreshes about every millisecond (976 µs on Intel).

**Containers.** For the same reason container runtimes mask ``/sys/devices/virtual/powercap`` (Docker and
containerd since 2023, GHSA-jq35-85cj-fj4p; Podman 4.7.2; Kubernetes, kubernetes/kubernetes#125970): the flat
links in ``/sys/class/powercap`` then point into an empty directory. Links that dangle, or an empty tree inside
a container, are said to be masked, with the container fixes, never "load the driver".
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from typing import Any

from cnnbench.meters.base import DomainInfo, Meter, MeterError, Sample
from cnnbench.meters.integrate import wrap_delta
from cnnbench.plural import count

ENV_ROOT = "CNNBENCH_POWERCAP_ROOT"
DEFAULT_ROOT = "/sys/class/powercap"
#: A plausible upper bound on a zone's power where it declares no ``constraint_N_max_power_uw``: for the
#: worst-case wrap time and to tell a wrap from a restart (see the module docstring). 1000 W is twice the
#: largest socket TDP sold today (500 W) and above any socket's DRAM (24 DDR5 RDIMMs at ~20 W); psys is the
#: whole platform of a client machine, with room for a workstation's.
DEFAULT_POWER_BOUNDS_W = {"cpu_package": 1000.0, "core": 1000.0, "uncore": 1000.0, "dram": 1000.0, "psys": 2000.0}
DEFAULT_POWER_BOUND_W = DEFAULT_POWER_BOUNDS_W["cpu_package"]
#: The bound is this many times the largest power a zone declares: the kernel's PL4 entry is already twice
#: PL2's maximum, and an interval of a few ms can hold a burst at the peak limit.
DECLARED_POWER_MARGIN = 2.0
#: Read each zone at least this many times per worst-case wrap period.
SAMPLES_PER_WRAP = 4
#: RAPL refreshes its counters about every millisecond: sampling faster only burns CPU.
UPDATE_PERIOD_S = 0.001
MIN_PERIOD_S = UPDATE_PERIOD_S
DEFAULT_PERIOD_S = 0.05

_MAX_POWER_RE = re.compile(r"^constraint_\d+_max_power_uw$")
_ZONE_RE = re.compile(r"^(?P<type>[A-Za-z][\w.-]*?)(?P<ids>(?::\d+)+)$")
_CONTROL_TYPE_RE = re.compile(r"^[A-Za-z][\w.-]*$")
_PACKAGE_RE = re.compile(r"^package-(\d+)(?:-die-(\d+))?$")
_PSYS_RE = re.compile(r"^psys(?:-(\d+))?$")
#: Interfaces to the same hardware counters, best first: the MSR driver, then TPMI, then MMIO.
_INTERFACE_PREFERENCE = {"intel-rapl": 0, "intel-rapl-tpmi": 1, "intel-rapl-mmio": 2}
_SUBZONES = {"core": ("cpu_core", "core"), "uncore": ("cpu_uncore", "uncore"), "dram": ("dram", "dram")}


def read_file(path: str) -> str:
    """Read one sysfs attribute. Every read of the tree goes through here, so a test running as root
    (which file modes do not stop) can make it fail exactly as it fails for a non-root user."""
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def x86_linux() -> bool:
    """RAPL is a feature of Intel and AMD x86 CPUs, read through Linux's powercap (or pyRAPL, on Linux too)."""
    import platform
    import sys

    return sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def powercap_root(settings: dict[str, Any] | None = None) -> str:
    return str((settings or {}).get("root") or os.environ.get(ENV_ROOT) or DEFAULT_ROOT)


@dataclass
class Zone:
    """One powercap zone directory."""

    zone_id: str  # "intel-rapl:0:2"
    control_type: str  # "intel-rapl"
    ids: tuple[int, ...]  # (0, 2)
    path: str  # as found under the root (the flat alias where there is one)
    real: str
    name: str | None  # the ``name`` file; None if it could not be read
    parent_id: str | None = None
    #: The zone's line in the inventory.
    status: str = ""
    domain: str | None = None


def discover(root: str) -> list[Zone]:
    """Every zone under ``root``, each once (by real path), flat aliases preferred as paths.

    Only entries named like zones (``type:N[:M...]``) or control types at the top level are followed,
    never ``device`` or ``subsystem`` (which in sysfs lead back up the tree).
    """
    seen: dict[str, Zone] = {}

    def visit(path: str, entry: str, recurse: bool) -> None:
        m = _ZONE_RE.match(entry)
        if m is None or not os.path.isdir(path):
            return
        real = os.path.realpath(path)
        if real not in seen:
            try:
                name = read_file(os.path.join(path, "name")).strip() or None
            except OSError:
                name = None
            ids = tuple(int(i) for i in m.group("ids")[1:].split(":"))
            control_type = m.group("type")
            parent_id = f"{control_type}:{':'.join(map(str, ids[:-1]))}" if len(ids) > 1 else None
            seen[real] = Zone(entry, control_type, ids, path, real, name, parent_id)
        elif not recurse or real in walked:
            return
        if recurse:
            walked.add(real)
            for child in _listdir(path):
                visit(os.path.join(path, child), child, True)

    walked: set[str] = set()
    top = _listdir(root)
    for entry in top:  # the flat view first: its paths are the ones users know
        visit(os.path.join(root, entry), entry, False)
    for entry in top:  # then nested zones, for trees without a complete flat listing
        path = os.path.join(root, entry)
        if _ZONE_RE.match(entry):
            visit(path, entry, True)
        elif _CONTROL_TYPE_RE.match(entry) and os.path.isdir(path):
            for child in _listdir(path):
                visit(os.path.join(path, child), child, True)
    return sorted(seen.values(), key=lambda z: (_INTERFACE_PREFERENCE.get(z.control_type, 9), z.control_type, z.ids))


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def name_domain(zone: Zone, parent: Zone | None) -> tuple[str, str, str] | None:
    """(domain, kind, label) of a zone from its name and its parent's, or None if not a known zone."""
    name = zone.name or ""
    m = _PACKAGE_RE.match(name)
    if m:
        return f"cpu_package{_suffix(m)}", "cpu_package", name
    m = _PSYS_RE.match(name)
    if m and parent is None:
        return f"psys{m.group(1) or 0}", "psys", name
    if name in _SUBZONES and parent is not None:
        pm = _PACKAGE_RE.match(parent.name or "")
        if pm:
            prefix, kind = _SUBZONES[name]
            return f"{prefix}{_suffix(pm)}", kind, f"{parent.name}/{name}"
    return None


def _suffix(m: re.Match) -> str:
    package, die = m.group(1), m.group(2)
    return package if die is None else f"{package}_die{die}"


class PermissionDenied(MeterError):
    """A file of the tree is readable by root only; ``path`` is the file."""

    def __init__(self, path: str, control_type: str = "intel-rapl"):
        super().__init__(
            f"permission denied: {path} is readable by root only (since the 2020 PLATYPUS fix, CVE-2020-8694)",
            _permission_fix([path], control_type),
        )
        self.path = path
        self.control_type = control_type


def _permission_fix(paths: list[str], control_type: str) -> str:
    filenames = list(dict.fromkeys(os.path.basename(p) for p in paths))
    if len(paths) <= 2:
        targets = " ".join(paths)
    else:  # a glob over the flat listing covers every zone of this interface
        root = os.path.dirname(os.path.dirname(paths[0]))
        targets = " ".join(os.path.join(root, f"{control_type}:*", name) for name in filenames)
    runs = ", ".join(f'RUN+="/bin/chmod a+r /sys%p/{name}"' for name in filenames)
    rule = f'ACTION=="add", SUBSYSTEM=="powercap", KERNEL=="{control_type}:*", {runs}'
    return (
        f"sudo chmod a+r {targets} (until reboot), or to persist it a udev rule in "
        f"/etc/udev/rules.d/99-powercap.rules: {rule} "
        "(either lets every local user read the counters again)"
    )


def _no_tree_error(root: str) -> MeterError:
    if root != DEFAULT_ROOT:
        return MeterError(f"no powercap tree at {root} (from ${ENV_ROOT})", f"point ${ENV_ROOT} at a powercap tree")
    why = "the kernel exposes no RAPL here"
    try:
        with open("/proc/cpuinfo") as f:
            if " hypervisor" in f.read():
                why = "this is a virtual machine, and hypervisors rarely pass RAPL through"
    except OSError:
        pass
    return MeterError(
        f"no powercap tree at {root} ({why})",
        "on bare metal with an Intel or AMD x86 CPU: sudo modprobe intel_rapl_msr; "
        f"elsewhere set ${ENV_ROOT} to a tree of the same format",
    )


#: What lets a container read the host's counters; each also reopens the side channel the masking closes.
CONTAINER_FIX = (
    "run cnnbench on the host; or unmask the path and read as root (docker run --security-opt "
    "systempaths=unconfined, podman run --security-opt unmask=/sys/devices/virtual/powercap, or --privileged); "
    "or bind-mount the host's tree read-only elsewhere and point cnnbench at it: docker run "
    "-v /sys/devices/virtual/powercap:/host/powercap:ro -e CNNBENCH_POWERCAP_ROOT=/host/powercap"
)


def in_container() -> str | None:
    """Why this process looks like it runs in a container (the evidence, one phrase), or None."""
    if os.environ.get("container"):  # set by Podman, systemd-nspawn, LXC
        return f"$container is {os.environ['container']!r}"
    for marker in ("/.dockerenv", "/run/.containerenv"):
        if os.path.exists(marker):
            return f"{marker} exists"
    try:
        with open("/proc/1/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    for word in ("docker", "kubepods", "containerd", "libpod", "lxc"):
        if word in text:
            return f"/proc/1/cgroup names {word}"
    return None


def _dangling_links(root: str) -> list[str]:
    """Zone and control-type links in ``root`` whose target does not exist (a masked tree)."""
    out = []
    for entry in _listdir(root):
        path = os.path.join(root, entry)
        if (_ZONE_RE.match(entry) or _CONTROL_TYPE_RE.match(entry)) and os.path.islink(path) and not os.path.exists(path):
            out.append(entry)
    return out


def _no_zones_error(root: str, container: str | None = None) -> MeterError:
    """No zone in a tree that exists: a masked tree (links that dangle, or empty in a container), or no driver.

    ``container`` overrides the detection (the ``container`` setting, for tests); it is only consulted for
    the default root, since masking concerns the host's ``/sys``.
    """
    dangling = _dangling_links(root)
    if dangling:
        target = os.readlink(os.path.join(root, dangling[0]))
        names = ", ".join(dangling[:3]) + (f" and {len(dangling) - 3} more" if len(dangling) > 3 else "")
        return MeterError(
            f"no RAPL zones in {root}: the powercap tree is masked, as container runtimes do since the 2020 "
            f"PLATYPUS fix (its links {names} point to {target}, which does not exist here)",
            CONTAINER_FIX,
        )
    evidence = container if container is not None else (in_container() if root == DEFAULT_ROOT else None)
    if evidence:
        return MeterError(
            f"no RAPL zones in {root}: it is empty inside this container ({evidence}), as container runtimes "
            "mask the powercap tree since the 2020 PLATYPUS fix",
            CONTAINER_FIX,
        )
    return MeterError(
        f"no RAPL zones in {root} (no directory like intel-rapl:0 with a name file)",
        "load the driver (sudo modprobe intel_rapl_msr) or point $CNNBENCH_POWERCAP_ROOT at a powercap tree",
    )


def _cpu_vendor() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


@dataclass
class _Counter:
    """A readable zone and its wrap-corrected running total."""

    path: str  # the energy_uj file
    max_range_uj: int
    bound_w: float  # the most power this zone can plausibly draw
    bound_source: str  # where bound_w comes from, for messages and the inventory
    total_uj: int = 0
    previous_uj: int | None = None
    previous_t: float = 0.0
    wraps: int = 0
    #: (previous sample, sample) monotonic times of the intervals in which a wrap was corrected.
    wrap_intervals: list[tuple[float, float]] = field(default_factory=list)
    #: The same for the backward steps that were restarts of the counter, not wraps.
    restart_intervals: list[tuple[float, float]] = field(default_factory=list)

    @property
    def wrap_s(self) -> float:
        """Worst-case time between two wraps, at the power bound."""
        return self.max_range_uj / 1e6 / self.bound_w


def declared_max_power_w(zone_path: str) -> float | None:
    """The largest ``constraint_N_max_power_uw`` of a zone, in W; None where it declares none (or only 0)."""
    best = 0
    for entry in _listdir(zone_path):
        if _MAX_POWER_RE.match(entry):
            try:
                best = max(best, int(read_file(os.path.join(zone_path, entry)).strip()))
            except (OSError, ValueError):
                continue  # an optional attribute; a zone that cannot say falls back to its kind's default
    return best / 1e6 if best > 0 else None


class RaplMeter(Meter):
    name = "rapl"
    description = "CPU package, core, uncore and DRAM energy through Linux powercap (Intel and AMD RAPL)"
    options = {"psys": "also measure psys, the whole platform (it contains the other domains)"}
    default_period_s = DEFAULT_PERIOD_S

    @classmethod
    def could_apply_here(cls) -> bool:
        return x86_linux() or bool(os.environ.get(ENV_ROOT))

    def open(self) -> None:
        self.root = powercap_root(self.settings)
        #: A user's bound for every zone (``{"rapl": {"power_bound_w": W}}``); None: each zone's own.
        self.power_bound_w = float(self.settings["power_bound_w"]) if self.settings.get("power_bound_w") else None
        psys = bool(self.settings.get("psys"))
        if not os.path.isdir(self.root):
            raise _no_tree_error(self.root)
        self.zones = discover(self.root)
        if not self.zones:
            raise _no_zones_error(self.root, self.settings.get("container"))
        by_id = {z.zone_id: z for z in self.zones}
        self._counters: dict[str, _Counter] = {}
        denied: list[PermissionDenied] = []
        for zone in self.zones:
            parent = by_id.get(zone.parent_id) if zone.parent_id else None
            named = name_domain(zone, parent)
            if named is None:
                zone.status = f"not measured: unknown zone name {zone.name!r}"
                continue
            domain, kind, label = named
            zone.domain = domain
            if kind == "psys" and not psys:
                zone.status = "not measured: psys contains the other domains; ask for it with --meters rapl:psys"
                continue
            first = next((z for z in self.zones if z is not zone and z.domain == domain and z.status.startswith(("measured", "unavailable"))), None)
            if first is not None:
                zone.status = f"alias of {first.zone_id} (the same counter through {zone.control_type}): counted once"
                continue
            try:
                counter = self._open_zone(zone, kind)
            except MeterError as exc:
                self.unavailable[domain] = exc
                zone.status = f"unavailable: {exc.reason}"
                if isinstance(exc, PermissionDenied):
                    denied.append(exc)
                continue
            self._counters[domain] = counter
            zone.status = "measured"
            self.domains[domain] = DomainInfo(
                meter=self.name, kind=kind, device=label, source=zone.path,
                update_period_s=UPDATE_PERIOD_S, energy_counter=True, power_samples=False,
            )
        if not self.domains:
            self._raise_none_readable(denied)
        self._period = self._choose_period()
        vendor = self.settings.get("cpu_vendor") or _cpu_vendor()
        if vendor == "AuthenticAMD" and any(i.kind == "core" for i in self.domains.values()):
            self.notes.append(
                "rapl: on AMD Zen the 'core' zone reads the core-energy register of one core (the package's "
                "first CPU), not the sum of all cores: treat cpu_core as a lower bound"
            )

    def _bound(self, zone: Zone, kind: str) -> tuple[float, str]:
        if self.power_bound_w is not None:
            return self.power_bound_w, "the power_bound_w setting"
        declared = declared_max_power_w(zone.path)
        if declared is not None:
            return DECLARED_POWER_MARGIN * declared, f"twice the {declared:g} W its constraint_*_max_power_uw declares"
        return DEFAULT_POWER_BOUNDS_W.get(kind, DEFAULT_POWER_BOUND_W), f"the default for a {kind} zone"

    def _open_zone(self, zone: Zone, kind: str) -> _Counter:
        energy_path = os.path.join(zone.path, "energy_uj")
        range_path = os.path.join(zone.path, "max_energy_range_uj")
        try:
            max_range = int(read_file(range_path).strip())
        except PermissionError:
            raise PermissionDenied(range_path, zone.control_type) from None
        except (OSError, ValueError) as exc:
            raise MeterError(
                f"cannot read {range_path} ({_describe(exc)}): without the counter's range its wraparound "
                "cannot be corrected"
            ) from None
        if max_range <= 0:
            raise MeterError(f"{range_path} says {max_range}: without a positive range a wraparound cannot be corrected")
        try:
            int(read_file(energy_path).strip())
        except PermissionError:
            raise PermissionDenied(energy_path, zone.control_type) from None
        except (OSError, ValueError) as exc:
            raise MeterError(f"cannot read {energy_path} ({_describe(exc)})") from None
        bound, source = self._bound(zone, kind)
        return _Counter(energy_path, max_range, bound, source)

    def _raise_none_readable(self, denied: list[PermissionDenied]) -> None:
        reasons = list(self.unavailable.values())
        if denied and len(denied) == len(reasons):
            files = " and ".join(dict.fromkeys(os.path.basename(e.path) for e in denied))
            raise MeterError(
                f"permission denied: {files} is readable by root only (since the 2020 PLATYPUS fix, "
                f"CVE-2020-8694), in {count(len(denied), 'zone')} under {self.root}",
                _permission_fix([e.path for e in denied], denied[0].control_type),
            )
        if reasons:
            detail = "; ".join(f"{d}: {e.reason}" for d, e in self.unavailable.items())
            raise MeterError(f"no RAPL zone can be read ({detail})", next((e.fix for e in reasons if e.fix), None))
        found = ", ".join(f"{z.zone_id} {z.name!r}" for z in self.zones)
        raise MeterError(f"no measurable RAPL zone in {self.root} (found {found})")

    def _choose_period(self) -> float:
        requested = super().period()
        fastest = min(self._counters.values(), key=lambda c: c.wrap_s)
        shortest = fastest.wrap_s
        period = min(requested, shortest / SAMPLES_PER_WRAP)
        if period < MIN_PERIOD_S:
            self.notes.append(
                f"rapl: a counter can wrap every {shortest * 1e3:.1f} ms at {fastest.bound_w:g} W; sampling "
                f"every {MIN_PERIOD_S * 1e3:g} ms (the counters' update period) may miss wraps, which are flagged"
            )
            period = MIN_PERIOD_S
        return period

    def period(self) -> float:
        return self._period

    def sample(self, now: float) -> dict[str, Sample]:
        out: dict[str, Sample] = {}
        for domain, c in self._counters.items():
            try:
                raw = int(read_file(c.path).strip())
            except (OSError, ValueError) as exc:
                # No value at all, never the last one again: the sampler makes the interval from the last
                # good read to the next one an error, so no window across the gap gets a figure.
                out[domain] = Sample(error=f"could not read {c.path}: {_describe(exc)}")
                continue
            warning = error = None
            if c.previous_uj is None:
                c.previous_uj, c.previous_t = raw, now
                out[domain] = Sample(energy_j=0.0)
                continue
            gap = now - c.previous_t
            if gap > c.wrap_s:
                warning = (
                    f"{gap * 1e3:.0f} ms between two reads of {c.path} is longer than its shortest wrap time "
                    f"({c.wrap_s * 1e3:.0f} ms at {c.bound_w:g} W): wraps may have been missed"
                )
            delta, wrapped = wrap_delta(c.previous_uj, raw, c.max_range_uj)
            # Two reads are at least one counter update apart; a shorter gap must not make any step implausible.
            implied_w = delta / 1e6 / max(gap, UPDATE_PERIOD_S)
            if wrapped and implied_w > c.bound_w:
                error = (
                    f"counter restart: {c.path} went back from {c.previous_uj} to {raw} µJ in {gap * 1e3:.0f} ms; "
                    f"as a wraparound that would be {implied_w:,.0f} W, above this zone's plausible "
                    f"{c.bound_w:g} W ({c.bound_source}), so the counter was reset (a driver reload, CPU hotplug "
                    "or resume) and the energy of this interval is unknown"
                )
                if len(c.restart_intervals) < 10_000:
                    c.restart_intervals.append((c.previous_t, now))
                # The running total carries on from the new value; only this interval is lost.
                c.previous_uj, c.previous_t = raw, now
                out[domain] = Sample(energy_j=c.total_uj / 1e6, error=error)
                continue
            c.total_uj += delta
            if wrapped:
                c.wraps += 1
                if len(c.wrap_intervals) < 10_000:  # diagnostics only; bounded
                    c.wrap_intervals.append((c.previous_t, now))
            c.previous_uj, c.previous_t = raw, now
            # Joules relative to the first sample keep full µJ resolution in a float for years.
            out[domain] = Sample(energy_j=c.total_uj / 1e6, warning=warning)
        return out

    def wraps(self, domain: str) -> int:
        """How many wraps of this domain's counter the sampler has corrected so far."""
        return self._counters[domain].wraps

    def wrap_intervals(self, domain: str) -> list[tuple[float, float]]:
        """The (read, next read) monotonic times between which each corrected wrap happened."""
        return list(self._counters[domain].wrap_intervals)

    def restart_intervals(self, domain: str) -> list[tuple[float, float]]:
        """The (read, next read) monotonic times between which the counter restarted instead of wrapping."""
        return list(self._counters[domain].restart_intervals)

    def inventory(self) -> dict[str, Any]:
        def counter(z: Zone) -> _Counter | None:
            return self._counters.get(z.domain) if z.domain and z.status == "measured" else None

        return {
            "root": self.root,
            "power_bound_w": self.power_bound_w,
            "period_s": self._period,
            "zones": [
                {
                    "zone": z.zone_id,
                    "name": z.name,
                    "path": z.path,
                    "domain": z.domain,
                    "max_energy_range_uj": c.max_range_uj if c else None,
                    "power_bound_w": c.bound_w if c else None,
                    "power_bound_source": c.bound_source if c else None,
                    "status": z.status,
                }
                for z in self.zones
                for c in [counter(z)]
            ],
        }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
