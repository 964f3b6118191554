"""Fake powercap (RAPL) trees for testing meters without hardware or root.

- :class:`PowercapTree` writes a powercap tree in the real sysfs layout (``/sys/devices/virtual/powercap/...``
  nested zones, ``/sys/class/powercap`` flat symlinks, the ``subsystem`` links that lead back up): Intel
  client and server layouts, several sockets and dies, psys, the MMIO alias, and AMD's (package and core,
  no DRAM). Point ``$CNNBENCH_POWERCAP_ROOT`` at ``tree.root``.
- :class:`CounterDriver` advances the tree's ``energy_uj`` counters in real time at known watts, from a
  background thread, wrapping at ``max_energy_range_uj``; ``driver.joules(zone, start, end)`` is the truth.
  ``driver.restart(zone)`` (or ``restart_every={zone: seconds}``) sets a counter back to 0 as a driver reload
  does; ``tree.vanish(zone)`` removes a zone's ``energy_uj`` as an unloaded driver does.
- :func:`unreadable` makes files of the tree fail to read with EACCES, as they do for a non-root user.
- :func:`masked` builds what a container sees of a masked tree: flat links that point nowhere.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import math
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

# -- powercap trees ---------------------------------------------------------------------------------

#: 2^32 units of 61.035 µJ, as Intel client and server packages report it.
INTEL_RANGE_UJ = 262143328850
#: 2^32 units of 15.3 µJ, as AMD Zen reports it.
AMD_RANGE_UJ = 65712999613

_ZONE_ID = re.compile(r"^(?P<type>[a-z][a-z-]*)(?P<ids>(?::\d+)+)$")


@dataclass
class FakeZone:
    zone_id: str  # "intel-rapl:0:2"
    name: str  # "dram"
    dir: Path  # the real (nested) directory
    max_energy_range_uj: int
    watts: float
    #: The counter's value when the driver starts.
    energy_uj: int = 0
    #: The domain cnnbench's rapl meter gives this zone ("dram0"), or None for aliases.
    domain: str | None = None
    #: Its energy_uj was removed (``PowercapTree.vanish``): the driver does not write it.
    vanished: bool = False

    @property
    def energy_path(self) -> Path:
        return self.dir / "energy_uj"

    @property
    def range_path(self) -> Path:
        return self.dir / "max_energy_range_uj"


class PowercapTree:
    """A powercap tree under ``base``, in the layout Linux gives ``/sys``::

        base/sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/intel-rapl:0:0/...   the zones, nested
        base/sys/class/powercap/intel-rapl:0 -> ../../devices/virtual/powercap/...     flat symlinks
        base/sys/class/powercap/intel-rapl   -> ../../devices/virtual/powercap/intel-rapl

    ``tree.root`` is the ``/sys/class/powercap`` equivalent. Without ``base`` the tree goes to a new
    directory on tmpfs (``/dev/shm``) where there is one, removed by ``cleanup()`` or at the end of a
    ``with`` block: there the driver's atomic renames cost microseconds, where on ext4 each rename over an
    existing file flushes its data (~0.3 ms), which starves the driver of time on a small machine.
    """

    def __init__(self, base: str | os.PathLike | None = None):
        self._owned = base is None
        if base is None:
            shm = "/dev/shm"
            base = tempfile.mkdtemp(prefix="cnnbench-powercap-", dir=shm if os.access(shm, os.W_OK) else None)
        self.base = Path(base)
        self.sys = self.base / "sys"
        self.devices = self.sys / "devices" / "virtual" / "powercap"
        self.root = self.sys / "class" / "powercap"
        self.devices.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self.zones: dict[str, FakeZone] = {}

    def cleanup(self) -> None:
        """Remove the tree if this object created its directory."""
        if self._owned:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PowercapTree:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.cleanup()

    # -- building ---------------------------------------------------------------------------------

    def add_control_type(self, control_type: str = "intel-rapl") -> Path:
        path = self.devices / control_type
        if not path.exists():
            path.mkdir(parents=True)
            _write(path / "enabled", "1")
            _write(path / "uevent", "")
            _symlink(self.root / control_type, path)
        return path

    def add_zone(
        self,
        zone_id: str,
        name: str,
        *,
        max_energy_range_uj: int = INTEL_RANGE_UJ,
        energy_uj: int = 0,
        watts: float = 0.0,
        domain: str | None = None,
        flat: bool = True,
        max_power_w: tuple[float, ...] = (),
    ) -> FakeZone:
        """One zone with the files the kernel writes; its parent (``intel-rapl:0`` for ``intel-rapl:0:2``)
        must exist already. ``flat=False`` leaves out the ``/sys/class/powercap`` symlink. ``max_power_w``
        gives constraint 0, 1, ... a ``constraint_N_max_power_uw`` (PL1's thermal spec power, PL2's maximum);
        without it the zone declares none, as DRAM and AMD zones often do."""
        m = _ZONE_ID.match(zone_id)
        if m is None:
            raise ValueError(f"not a zone id: {zone_id!r}")
        control_type, ids = m.group("type"), m.group("ids")[1:].split(":")
        if len(ids) == 1:
            parent_dir = self.add_control_type(control_type)
        else:
            parent_dir = self.zones[f"{control_type}:{':'.join(ids[:-1])}"].dir
        path = parent_dir / zone_id
        path.mkdir()
        _write(path / "name", name)
        _write(path / "energy_uj", str(energy_uj % max_energy_range_uj))
        _write(path / "max_energy_range_uj", str(max_energy_range_uj))
        _write(path / "enabled", "1")
        _write(path / "uevent", "")
        _write(path / "constraint_0_name", "long_term")
        _write(path / "constraint_0_power_limit_uw", str(int(max(watts, 1.0) * 2e6)))
        _write(path / "constraint_0_time_window_us", "976")
        for index, watts_max in enumerate(max_power_w):
            _write(path / f"constraint_{index}_max_power_uw", str(int(watts_max * 1e6)))
        (path / "power").mkdir()
        _write(path / "power" / "control", "auto")
        # sysfs links every zone back to its class: a walker that follows it loops forever.
        _symlink(path / "subsystem", self.sys / "class" / "powercap")
        if flat:
            _symlink(self.root / zone_id, path)
        zone = FakeZone(zone_id, name, path, max_energy_range_uj, watts, energy_uj, domain)
        self.zones[zone_id] = zone
        return zone

    @classmethod
    def intel(
        cls,
        base: str | os.PathLike | None = None,
        *,
        sockets: int = 1,
        dies: int = 1,
        core: bool = True,
        uncore: bool = True,
        dram: bool = True,
        psys: bool = False,
        mmio: bool = False,
        max_energy_range_uj: int = INTEL_RANGE_UJ,
        watts: Mapping[str, float] | None = None,
    ) -> PowercapTree:
        """An Intel layout: per socket (and die) ``package-N[-die-M]`` with ``core``, ``uncore``, ``dram``
        children numbered in that order; ``psys`` after the packages; ``mmio`` adds the
        ``intel-rapl-mmio:0`` alias of package 0 that client parts have."""
        w = {"package": 40.0, "core": 25.0, "uncore": 2.0, "dram": 6.0, "psys": 60.0, **(watts or {})}
        tree = cls(base)
        index = 0
        for socket in range(sockets):
            for die in range(dies):
                name = f"package-{socket}" if dies == 1 else f"package-{socket}-die-{die}"
                suffix = f"{socket}" if dies == 1 else f"{socket}_die{die}"
                zone_id = f"intel-rapl:{index}"
                tree.add_zone(zone_id, name, max_energy_range_uj=max_energy_range_uj, watts=w["package"],
                              domain=f"cpu_package{suffix}")
                children = [(n, p) for n, p, on in (("core", "cpu_core", core), ("uncore", "cpu_uncore", uncore),
                                                    ("dram", "dram", dram)) if on]
                for sub, (child, prefix) in enumerate(children):
                    tree.add_zone(f"{zone_id}:{sub}", child, max_energy_range_uj=max_energy_range_uj,
                                  watts=w[child], domain=f"{prefix}{suffix}")
                index += 1
        if psys:
            tree.add_zone(f"intel-rapl:{index}", "psys", max_energy_range_uj=max_energy_range_uj,
                          watts=w["psys"], domain="psys0")
        if mmio:
            tree.add_zone("intel-rapl-mmio:0", "package-0", max_energy_range_uj=max_energy_range_uj,
                          watts=w["package"], domain=None)
        return tree

    @classmethod
    def amd(
        cls,
        base: str | os.PathLike | None = None,
        *,
        sockets: int = 1,
        max_energy_range_uj: int = AMD_RANGE_UJ,
        watts: Mapping[str, float] | None = None,
    ) -> PowercapTree:
        """AMD Zen under ``intel_rapl_msr``: ``package-N`` with one ``core`` child, no uncore, no DRAM."""
        w = {"package": 90.0, "core": 8.0, **(watts or {})}
        tree = cls(base)
        for socket in range(sockets):
            tree.add_zone(f"intel-rapl:{socket}", f"package-{socket}", max_energy_range_uj=max_energy_range_uj,
                          watts=w["package"], domain=f"cpu_package{socket}")
            tree.add_zone(f"intel-rapl:{socket}:0", "core", max_energy_range_uj=max_energy_range_uj,
                          watts=w["core"], domain=f"cpu_core{socket}")
        return tree

    # -- using ------------------------------------------------------------------------------------

    def zone(self, key: str) -> FakeZone:
        """A zone by id (``intel-rapl:0:2``) or by the domain the meter gives it (``dram0``)."""
        if key in self.zones:
            return self.zones[key]
        for zone in self.zones.values():
            if zone.domain == key:
                return zone
        raise KeyError(f"no zone {key!r}; zones: {', '.join(self.zones)}")

    def flat_path(self, key: str) -> Path:
        """The zone's directory as ``/sys/class/powercap/<zone>`` names it."""
        return self.root / self.zone(key).zone_id

    def set_max_energy_range(self, key: str, max_energy_range_uj: int) -> None:
        """Give one zone another counter range (e.g. to make only DRAM wrap quickly)."""
        zone = self.zone(key)
        zone.max_energy_range_uj = int(max_energy_range_uj)
        _write(zone.range_path, str(zone.max_energy_range_uj))
        self.write_energy(key, zone.energy_uj)

    def write_energy(self, key: str, energy_uj: int) -> None:
        zone = self.zone(key)
        _write_atomic(zone.energy_path, str(int(energy_uj) % zone.max_energy_range_uj))

    def vanish(self, key: str) -> None:
        """Remove the zone's ``energy_uj``, as unloading the driver does: reads fail with ENOENT."""
        zone = self.zone(key)
        zone.vanished = True
        for _ in range(2):  # a driver's write in flight when the flag changed may bring the file back once
            with contextlib.suppress(FileNotFoundError):
                zone.energy_path.unlink()
            time.sleep(0.01)

    def reappear(self, key: str) -> None:
        """Let a :class:`CounterDriver` write a vanished zone's ``energy_uj`` again, from its next tick, at the
        value the power since it started implies (as a counter that kept counting while unreadable)."""
        self.zone(key).vanished = False


def masked(base: str | os.PathLike, zone_ids: tuple[str, ...] = ("intel-rapl:0", "intel-rapl:0:0")) -> Path:
    """What a container sees of a masked tree: ``/sys/devices/virtual/powercap`` an empty directory (the
    runtime's read-only tmpfs), and ``/sys/class/powercap``'s links into it pointing nowhere. Returns the
    ``/sys/class/powercap`` equivalent."""
    base = Path(base)
    devices = base / "sys" / "devices" / "virtual" / "powercap"
    root = base / "sys" / "class" / "powercap"
    devices.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    _symlink(root / "intel-rapl", devices / "intel-rapl")
    for zone_id in zone_ids:
        ids = zone_id.split(":")[1:]
        nested = devices / "intel-rapl"
        for depth in range(1, len(ids) + 1):
            nested = nested / ("intel-rapl:" + ":".join(ids[:depth]))
        _symlink(root / zone_id, nested)
    return root


def _write(path: Path, text: str) -> None:
    path.write_text(text + "\n")


def _write_atomic(path: Path, text: str) -> None:
    """Readers see the old value or the new one, never an empty or torn file (as sysfs reads are)."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _symlink(link: Path, target: Path) -> None:
    link.symlink_to(os.path.relpath(target, link.parent))


# -- driving the counters ---------------------------------------------------------------------------


class CounterDriver:
    """Advances ``energy_uj`` of a tree's zones in real time at known watts, from a background thread.

    Every ``tick`` seconds each counter is set to its start value plus the integral of its watts since
    ``start()``, modulo ``max_energy_range_uj`` (the kernel's counter wraps at that range plus one energy
    unit; the difference is below a microjoule per wrap here). Like RAPL's (which refreshes every ~1 ms),
    the counter is a staircase: between ticks it holds its value.

        with CounterDriver(tree, {"cpu_package0": 40.0}) as driver:
            ...
            driver.joules("cpu_package0", start, end)   # the truth over [start, end]
    """

    def __init__(self, tree: PowercapTree, watts: Mapping[str, float] | None = None, *, tick: float = 0.002,
                 restart_every: Mapping[str, float] | None = None):
        self.tree = tree
        self.tick = tick
        #: zone id -> (time, counter value in µJ then): the counter reads that value plus the energy since.
        self._base: dict[str, tuple[float, float]] = {}
        #: zone id -> seconds between restarts from 0, and when each happened (monotonic)
        self._restart_every = {tree.zone(k).zone_id: float(v) for k, v in (restart_every or {}).items()}
        self.restarts: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started: float | None = None
        # zone id -> [(from time, watts)], the power history that defines the truth
        self._history: dict[str, list[tuple[float, float]]] = {}
        self._initial = {zone_id: zone.watts for zone_id, zone in tree.zones.items()}
        for key, value in (watts or {}).items():
            self._initial[tree.zone(key).zone_id] = float(value)
        self.writes = 0
        #: When each write happened: a long gap means the machine stalled, and the counter fell behind.
        self.write_times: collections.deque[float] = collections.deque(maxlen=200_000)

    def longest_pause(self, start: float, end: float, margin: float = 0.3) -> float:
        """The longest time, in seconds, between two writes around ``[start, end]``: on a stalled virtual
        machine the counter falls behind the truth, and a window's reading cannot be compared with it."""
        times = [t for t in list(self.write_times) if start - margin <= t <= end + margin]
        return max((b - a for a, b in zip(times, times[1:])), default=end - start + 2 * margin)

    def start(self) -> CounterDriver:
        now = time.monotonic()
        self.started = now
        with self._lock:
            self._history = {zone_id: [(now, w)] for zone_id, w in self._initial.items()}
            self._base = {zone_id: (now, float(zone.energy_uj)) for zone_id, zone in self.tree.zones.items()}
        self._write_all(now)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cnnbench-counter-driver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __enter__(self) -> CounterDriver:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def restart(self, key: str, energy_uj: int = 0) -> float:
        """Set the zone's counter back to ``energy_uj`` now, as a driver reload does (the power, and so the
        truth, carry on). Returns when it happened."""
        zone_id = self.tree.zone(key).zone_id
        now = time.monotonic()
        with self._lock:
            self._base[zone_id] = (now, float(energy_uj))
        self.restarts.setdefault(zone_id, []).append(now)
        # The driver's thread writes it within a tick: one writer, so no two renames race.
        return now

    def restart_times(self, key: str) -> list[float]:
        return list(self.restarts.get(self.tree.zone(key).zone_id, []))

    def set_watts(self, key: str, watts: float) -> None:
        """Change a zone's power from now on."""
        zone_id = self.tree.zone(key).zone_id
        with self._lock:
            self._history.setdefault(zone_id, [(time.monotonic(), 0.0)]).append((time.monotonic(), float(watts)))

    def joules(self, key: str, start: float, end: float) -> float:
        """The true energy of a zone over ``[start, end]`` (monotonic seconds) from its power history."""
        zone_id = self.tree.zone(key).zone_id
        with self._lock:
            history = list(self._history.get(zone_id, []))
        total = 0.0
        for i, (t0, w) in enumerate(history):
            t1 = history[i + 1][0] if i + 1 < len(history) else math.inf
            lo, hi = max(t0, start), min(t1, end)
            if hi > lo:
                total += w * (hi - lo)
        return total

    def watts(self, key: str) -> float:
        zone_id = self.tree.zone(key).zone_id
        with self._lock:
            return self._history[zone_id][-1][1]

    def _write_all(self, now: float) -> None:
        for zone_id, zone in self.tree.zones.items():
            if zone_id not in self._history or zone.vanished:
                continue
            with self._lock:
                t0, e0 = self._base.get(zone_id, (self.started, float(zone.energy_uj)))
            energy = e0 + self.joules(zone_id, t0, now) * 1e6
            _write_atomic(zone.energy_path, str(int(energy) % zone.max_energy_range_uj))
        self.writes += 1
        self.write_times.append(now)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            for zone_id, every in self._restart_every.items():
                last = (self.restarts.get(zone_id) or [self.started])[-1]
                if now - last >= every:
                    self.restart(zone_id)
            self._write_all(time.monotonic())


@contextlib.contextmanager
def unreadable(*paths: str | os.PathLike) -> Iterator[None]:
    """Make these files of a powercap tree fail to read with EACCES, as ``energy_uj`` does for a
    non-root user since the PLATYPUS fix.

    File modes cannot do it when the tests run as root (root reads a mode-000 file), so the rapl meter's
    one read function (``cnnbench.meters.rapl.read_file``) is wrapped to raise exactly what ``open()``
    raises for a non-root user on a root-only file: ``PermissionError(EACCES, ..., path)``. Every other
    file is read for real.
    """
    import cnnbench.meters.rapl as rapl

    targets = {os.path.realpath(p) for p in paths}
    original = rapl.read_file

    def read(path: str) -> str:
        if os.path.realpath(path) in targets:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return original(path)

    rapl.read_file = read
    try:
        yield
    finally:
        rapl.read_file = original


