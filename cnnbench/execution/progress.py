"""The live progress bar of a grid on stderr: cell k/N, the cell running now, elapsed time and an ETA.

It is drawn only on a terminal (never into a pipe or a log file, never with ``--json`` or ``--quiet``),
redrawn twice a second by a daemon thread so the clock moves while a long cell runs, and always
erased before anything else is printed, so it never mixes with the results.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import TextIO

#: Seconds between redraws.
REFRESH_S = 0.5


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """``start(k, label)`` when cell k begins, ``done(status)`` when it ends, ``close()`` at the end."""

    def __init__(self, total: int, stream: TextIO, enabled: bool = True, clock=time.monotonic):
        self.total = total
        self.stream = stream
        self.enabled = enabled and total > 0
        self.clock = clock
        self.started = clock()
        self.finished = 0
        self.index = 0
        self.label = ""
        self.cell_started = self.started
        #: Seconds each finished cell took that started a worker (instant refusals would skew the ETA).
        self.durations: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False

    # -- what the grid reports ----------------------------------------------------------------------

    def start(self, index: int, label: str) -> None:
        with self._lock:
            self.index, self.label, self.cell_started = index, label, self.clock()
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="cnnbench-progress", daemon=True)
            self._thread.start()
        self.draw()

    def done(self, status: str) -> None:
        with self._lock:
            took = self.clock() - self.cell_started
            if took > 0.05:
                self.durations.append(took)
            self.finished += 1
        self.draw()

    def say(self, text: str) -> None:
        """A line above the bar (the bar is redrawn under it); nothing when the bar is off."""
        if not self.enabled:
            return
        with self._lock:
            self._erase()
            self.stream.write(text + "\n")
            self.stream.flush()
        self.draw()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            self._erase()

    # -- drawing ------------------------------------------------------------------------------------

    def eta(self) -> float | None:
        """Seconds left: the mean of the finished cells times the cells not finished, less the time the
        running cell has already had. None before any cell has finished."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        left = self.total - self.finished
        running = self.clock() - self.cell_started if self.finished <= self.index else 0.0
        return max(0.0, mean * left - min(running, mean))

    def line(self, width: int) -> str:
        now = self.clock()
        fraction = self.finished / self.total
        bar_width = 20
        filled = int(round(fraction * bar_width))
        bar = "#" * filled + "-" * (bar_width - filled)
        eta = self.eta()
        timing = f"{format_duration(now - self.started)} elapsed, " + (
            f"ETA {format_duration(eta)}" if eta is not None else "ETA after the first cell")
        head = f"[{bar}] {self.finished}/{self.total}  cell {self.index + 1}: "
        tail = f"  {timing}"
        room = width - len(head) - len(tail) - 1
        label = self.label if len(self.label) <= room else self.label[: max(0, room - 3)] + "..."
        return (head + label + tail)[: width - 1]

    def draw(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            width = shutil.get_terminal_size((100, 24)).columns
            self.stream.write("\r\x1b[K" + self.line(width))
            self.stream.flush()
            self._shown = True

    def _erase(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def _loop(self) -> None:
        while not self._stop.wait(REFRESH_S):
            self.draw()
