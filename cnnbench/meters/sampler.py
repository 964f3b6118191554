"""Host-side sampling: one thread per meter reads all its domains every period and keeps the samples.

Timestamps are ``time.monotonic()`` (CLOCK_MONOTONIC, shared with the worker process, whose window
edges use the same clock); each sample is stamped with the midpoint of the read, so a slow read
(NVML can take a millisecond) does not bias one edge. Samples are kept in ``array('d')`` (16 bytes per
sample and channel: a day at 20 Hz is under 30 MB per domain) for the whole session, so a window can
be integrated after the fact.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from typing import Callable

from cnnbench.meters.base import DomainInfo, Meter, Sample

Event = tuple[float, float, str, str]


class DomainSeries:
    """The samples of one domain, and the intervals the meter flagged (failed reads, lost devices)."""

    __slots__ = ("info", "times", "energy", "power", "events", "lost", "_pending", "_pending_severity")

    def __init__(self, info: DomainInfo):
        self.info = info
        self.times = array("d")
        self.energy = array("d") if info.energy_counter else None
        self.power = array("d") if info.power_samples else None
        #: (from, to, "warning" | "error", message)
        self.events: list[Event] = []
        self.lost = False
        self._pending: list[str] = []
        self._pending_severity = "warning"

    @property
    def last_time(self) -> float:
        return self.times[-1] if self.times else -math.inf

    def all_events(self) -> list[Event]:
        """The flagged intervals, and the one still open: failed reads since the last good sample, which
        no good sample has closed yet (a zone that stopped answering for good), reach to infinity."""
        if not self._pending:
            return list(self.events)
        return [*self.events, (self.last_time, math.inf, self._pending_severity, "; ".join(self._pending))]

    def add(self, t: float, sample: Sample) -> None:
        if self.lost:
            return
        complete = (self.energy is None or sample.energy_j is not None) and (
            self.power is None or sample.power_w is not None
        )
        if sample.lost:
            # Whatever overlaps the time since the last good sample is invalid, and so is everything after.
            self.lost = True
            self.events.append((self.last_time, math.inf, "error", sample.error or "the device was lost"))
            return
        if not complete:
            # A failed read: remember why, and attach it to the interval that the next good sample closes.
            message = sample.error or sample.warning or "a read returned no value"
            if message not in self._pending:
                self._pending.append(message)
            if sample.error:
                self._pending_severity = "error"
            return
        previous = self.last_time
        self.times.append(t)
        if self.energy is not None:
            self.energy.append(sample.energy_j)
        if self.power is not None:
            self.power.append(sample.power_w)
        if self._pending:
            self.events.append((previous, t, self._pending_severity, "; ".join(self._pending)))
            self._pending = []
            self._pending_severity = "warning"
        if sample.error:
            self.events.append((previous, t, "error", sample.error))
        elif sample.warning:
            self.events.append((previous, t, "warning", sample.warning))


class MeterSampler:
    """Samples one meter on its own daemon thread (a slow meter never delays another's timestamps)."""

    def __init__(self, meter: Meter, period: float, clock: Callable[[], float] = time.monotonic):
        self.meter = meter
        self.period = period
        self.clock = clock
        self.series = {name: DomainSeries(info) for name, info in meter.domains.items()}
        self.cond = threading.Condition()
        self.last_sample_time = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def sample_once(self) -> None:
        t0 = self.clock()
        try:
            samples = self.meter.sample(t0)
        except Exception as exc:  # a plugin meter's bug must not kill the sampling thread
            message = f"meter '{self.meter.name}' failed to sample: {type(exc).__name__}: {exc}"
            samples = {name: Sample(warning=message) for name in self.series}
        t1 = self.clock()
        t = (t0 + t1) / 2
        with self.cond:
            for name, sample in samples.items():
                series = self.series.get(name)
                if series is not None:
                    series.add(t, sample)
            self.last_sample_time = t
            self.cond.notify_all()

    def _run(self) -> None:
        # start() took the first sample; tick on a fixed grid from there, so the period does not drift.
        next_tick = self.clock() + self.period
        while not self._stop.wait(max(0.0, next_tick - self.clock())):
            self.sample_once()
            next_tick += self.period
            now = self.clock()
            if next_tick < now:
                # Fell behind (a stalled host): carry on from now rather than sampling in a burst.
                next_tick = now

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self.sample_once()  # a first sample before start() returns: windows may begin right away
        self._thread = threading.Thread(target=self._run, name=f"cnnbench-meter-{self.meter.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        with self.cond:
            self.cond.notify_all()
        self.sample_once()  # a last sample, so a window that ended just before stop() is covered

    def covered(self, t: float) -> bool:
        """Every live domain has a good sample at or after ``t``."""
        return all(s.lost or s.last_time >= t for s in self.series.values())

    def wait_for(self, t: float, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) for a sample taken after ``t``, then at most two more periods for
        every live domain to have a good one (a failed read is retried at the next tick, not forever)."""
        with self.cond:
            self.cond.wait_for(lambda: self.last_sample_time >= t or not self.running, timeout)
            self.cond.wait_for(lambda: self.covered(t) or not self.running, 2 * self.period)
            return self.covered(t)
