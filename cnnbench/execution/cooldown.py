"""``--cooldown auto|SECONDS``: before each cell, wait for the GPU to come back near its idle temperature, so a
cell does not start on a GPU its predecessor left hot (a hot GPU draws more power for the same work, and
throttles sooner).

The idle temperature of each metered GPU is the coolest it was at the start of any grid of this process (read
just after the idle baseline, when there is one): a ``dvfs`` sweep, whose settings are grids of their own,
cools every setting down to what the GPU read before the first. Before each cell that runs a worker, the wait lasts until every GPU is within
``TOLERANCE_C`` of it, or until the cap passes: ``SECONDS``, or ``AUTO_CAP_S`` for ``auto``. Each cell records
the wait (``timings["cooldown_s"]`` and ``provenance["cooldown"]``: seconds, reached or not, temperatures).
Without a GPU temperature to wait for, ``auto`` waits nothing and says why once; ``SECONDS`` is then a plain
pause of that length before each cell.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from cnnbench.config import UsageError

#: Within this many °C of the idle temperature counts as cooled down.
TOLERANCE_C = 2.0
#: The most ``--cooldown auto`` waits before a cell: long enough for a GPU at full load to return to within
#: 2 °C of idle under ordinary airflow (minutes), short enough that a GPU that never gets there (a warmer
#: room, a neighbour's job) costs a bounded delay per cell.
AUTO_CAP_S = 300.0
#: The most a number may ask for: an hour per cell.
MAX_COOLDOWN_S = 3600.0
#: Seconds between two temperature readings while waiting.
POLL_S = 1.0
#: The coolest reading of each GPU at a grid's start in this process (see the module docstring).
_idle_seen: dict[str, float] = {}


def idle_reference(now: dict[str, float]) -> dict[str, float]:
    """Record ``now`` (°C per GPU at a grid's start) and return the idle temperature of each of these GPUs."""
    for domain, celsius in now.items():
        _idle_seen[domain] = min(celsius, _idle_seen.get(domain, celsius))
    return {domain: _idle_seen[domain] for domain in now}


def forget_idle_reference() -> None:
    """Start again from no idle temperature (a new machine state, or a test)."""
    _idle_seen.clear()


@dataclass(frozen=True)
class CooldownSpec:
    mode: str  # "auto" or "seconds"
    cap_s: float


def parse_cooldown(text: str | None) -> CooldownSpec | None:
    """``--cooldown``'s value: None or "0" (no wait), "auto", or seconds; anything else is a usage error."""
    if text is None:
        return None
    value = str(text).strip()
    if value == "auto":
        return CooldownSpec("auto", AUTO_CAP_S)
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_COOLDOWN_S:
        raise UsageError(f"--cooldown takes auto or a number of seconds from 0 to {MAX_COOLDOWN_S:g}, not '{text}'")
    return CooldownSpec("seconds", seconds) if seconds > 0 else None


class Cooldown:
    """The wait before each cell. ``temperatures`` returns {GPU domain: °C} now ({} without a GPU meter)."""

    def __init__(self, spec: CooldownSpec, temperatures: Callable[[], dict[str, float]] | None,
                 say: Callable[[str], None] | None = None, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, poll_s: float = POLL_S):
        self.spec = spec
        self.temperatures = temperatures or (lambda: {})
        self.say = say or (lambda text: None)
        self.sleep = sleep
        self.clock = clock
        self.poll_s = poll_s
        self.idle_c: dict[str, float] = idle_reference(self._read())
        self.why_not: str | None = None
        if not self.idle_c:
            self.why_not = "no GPU temperature can be read here (no GPU meter)"
            if spec.mode == "auto":
                self.say(f"cnnbench: --cooldown auto waits nothing: {self.why_not}")
            else:
                self.say(f"cnnbench: --cooldown {spec.cap_s:g}: {self.why_not}, so it pauses "
                         f"{spec.cap_s:g} s before each cell")

    def _read(self) -> dict[str, float]:
        try:
            return dict(self.temperatures())
        except Exception:
            return {}

    def wait(self) -> dict[str, Any]:
        """Wait before a cell; the record of the wait, for the cell's result."""
        record: dict[str, Any] = {"mode": self.spec.mode, "cap_s": self.spec.cap_s, "tolerance_c": TOLERANCE_C,
                                  "idle_c": dict(self.idle_c)}
        started = self.clock()
        if not self.idle_c:
            if self.spec.mode == "seconds":
                self.sleep(self.spec.cap_s)
            record.update(waited_s=self.clock() - started, reached=None, reason=self.why_not)
            return record
        now = self._read()
        record["start_c"] = dict(now)
        while True:
            hot = {d: t for d, t in now.items() if d in self.idle_c and t > self.idle_c[d] + TOLERANCE_C}
            elapsed = self.clock() - started
            if not hot or elapsed >= self.spec.cap_s:
                break
            self.sleep(min(self.poll_s, self.spec.cap_s - elapsed))
            now = self._read()
        record.update(waited_s=self.clock() - started, reached=not hot, end_c=dict(now))
        if hot:
            record["reason"] = "cap reached with " + ", ".join(
                f"{d} at {t:.0f} °C (idle {self.idle_c[d]:.0f} °C)" for d, t in sorted(hot.items()))
        return record
