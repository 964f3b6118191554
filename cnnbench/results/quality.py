"""The quality gate: is a cell's time worth trusting? Its spread across windows, the machine's load around it,
and, for ``--stable``, the 95 % interval of its median.

A benchmark on a busy machine measures the machine, not the network (issue 15: 12.14 ± 18.87 ms on a loaded
2-core guest, printed as if it were a figure). So every cell carries:

- ``cv``: the coefficient of variation of the windows' times per iteration (None with one window: the spread
  is unknown, which is said, never shown as 0);
- ``load``: the 1-minute load average before and after the cell, the share of CPU time the hypervisor stole
  (where /proc/stat has the steal column), and the share of the CPUs cnnbench may use that *other* processes
  kept busy during the cell: the busy time of those CPUs (/proc/stat) minus what the host process and the
  worker's process tree used (getrusage), over the cell's wall time × those CPUs
  (``cnnbench.system.load.LoadProbe``). /proc is read twice per cell, at its start and its end, so the gate
  costs nothing inside the timed windows;
- ``noisy`` and ``reasons``: whether a threshold below was passed, one line per threshold with its figure.

The 1-minute load average is recorded but not gated on: it decays over minutes, so it still carries the
previous cell's own work, and it counts runnable threads rather than time taken from this cell.

This module is imported by the worker (the ``--stable`` loop), which may run under another interpreter: the
standard library only.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

#: A cell whose windows' coefficient of variation passes this is noisy: with 5 windows it puts the 95 % interval
#: of the mean at +- 6 %, too wide to tell apart configurations 10 % apart, the size of the paper's differences
#: (docs/concepts.md, "The quality gate", has the figures).
CV_LIMIT = 0.05
#: Other processes keeping more than this share of the CPUs cnnbench may use busy during the cell: they take
#: time slices, caches and memory bandwidth from the worker, which a spread across windows does not always show
#: (a steady competitor slows every window alike).
OTHERS_LIMIT = 0.10
#: The hypervisor taking more than this share of the guest's CPU time: the virtual CPUs were not the
#: cell's to measure with.
STEAL_LIMIT = 0.05
#: ``--stable``: the default target (half-width of the median's 95 % interval, relative to the median), and how
#: long a cell may keep adding windows (seconds from its first timed window) before it stops short of it.
STABLE_TARGET = 0.02
STABLE_MAX_TIME_S = 60.0
#: ``--stable`` also stops at this many windows: with ``--iterations`` and a fast step, windows of a millisecond
#: would otherwise pile up by the ten thousand in the record before the time cap.
STABLE_MAX_WINDOWS = 1000
CONFIDENCE = 0.95
#: The warning of a time measured in one window (the display shows ``± ?``, never ``± 0.00``).
ONE_WINDOW = "spread unknown: one window"


def per_iter_s(windows: list[dict[str, float]]) -> list[float]:
    """Each window's time per iteration, in seconds."""
    return [(w["end"] - w["start"]) / w["iterations"] for w in windows if w["iterations"]]


def cv(values: list[float]) -> float | None:
    """Sample standard deviation / mean; None with fewer than two values (the spread is unknown)."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean > 0 else None


def _order_rank(n: int, confidence: float = CONFIDENCE) -> int:
    """The largest k with P(Binomial(n, 1/2) <= k - 1) <= (1 - confidence) / 2, or 0 where none exists.

    The k-th smallest and the k-th largest of n values then bound the median with probability >= confidence,
    whatever the values' distribution (they need only be independent draws of one continuous distribution)."""
    tail, k, cumulative = (1.0 - confidence) / 2.0, 0, 0.0
    total = 2 ** n
    while k < n // 2:
        cumulative += math.comb(n, k) / total
        if cumulative > tail:
            break
        k += 1
    return k


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The distribution-free interval of the median from order statistics; None with too few values (fewer
    than 6 for 95 %: even the smallest and largest of 5 cover the median with probability 15/16 only).

    Order statistics rather than a bootstrap: the coverage is exact (at least ``confidence``) for any window
    distribution, including the skewed, heavy-tailed ones of a machine with interruptions; the answer is the
    same for the same windows (no resampling), and it costs a sort, so the worker can ask after every window."""
    k = _order_rank(len(values), confidence)
    if k < 1:
        return None
    ordered = sorted(values)
    return ordered[k - 1], ordered[len(values) - k]


def half_width(values: list[float]) -> float | None:
    """The wider side of the median's 95 % interval, relative to the median; None while there is none."""
    interval = median_interval(values)
    if interval is None:
        return None
    median = statistics.median(values)
    if median <= 0:
        return None
    return max(median - interval[0], interval[1] - median) / median


def keep_going(windows: list[dict[str, float]], target: float, max_time: float) -> bool:
    """``--stable``: whether another window should be timed after ``windows`` (the worker asks after each).

    No: the interval is within ``target``, or one more window as long as the longest so far would end past
    ``max_time`` seconds from the first window's start (so the cap is overrun only by a window longer than
    every one before it), or STABLE_MAX_WINDOWS are done."""
    width = half_width(per_iter_s(windows))
    if width is not None and width <= target:
        return False
    if len(windows) >= STABLE_MAX_WINDOWS:
        return False
    longest = max(w["end"] - w["start"] for w in windows)
    return windows[-1]["end"] + longest - windows[0]["start"] <= max_time


def stability(windows: list[dict[str, float]], target: float, max_time: float) -> dict[str, Any]:
    """What ``--stable`` did for a cell: which came first (the target, or the cap), the achieved half-width."""
    times = per_iter_s(windows)
    width = half_width(times)
    interval = median_interval(times)
    reached = width is not None and width <= target
    if reached:
        stopped = "target"
    elif len(windows) >= STABLE_MAX_WINDOWS:
        stopped = "window cap"
    else:
        stopped = "time cap"
    return {
        "target": target, "max_time_s": max_time, "reached": reached, "stopped": stopped, "half_width": width,
        "interval_ms": None if interval is None else [interval[0] * 1e3, interval[1] * 1e3],
        "windows": len(windows), "seconds": windows[-1]["end"] - windows[0]["start"] if windows else 0.0,
    }


# --- the gate -------------------------------------------------------------------------------------------

THRESHOLDS = {"cv": CV_LIMIT, "others_cpu_share": OTHERS_LIMIT, "steal_share": STEAL_LIMIT}


def gate(windows: list[dict[str, float]], load: dict[str, Any] | None) -> dict[str, Any]:
    """The ``quality`` record of a cell from its windows and the load around it (no ``stable`` yet)."""
    spread = cv(per_iter_s(windows))
    reasons = []
    if spread is not None and spread > CV_LIMIT:
        reasons.append(f"time varies across windows: CV {spread:.1%} > {CV_LIMIT:.0%}")
    if load:
        others, steal = load.get("others_cpu_share"), load.get("steal_share")
        if others is not None and others > OTHERS_LIMIT:
            reasons.append(f"other processes kept {others:.0%} of the {load['cpus']} CPUs cnnbench may use busy "
                           f"during the cell (> {OTHERS_LIMIT:.0%})")
        if steal is not None and steal > STEAL_LIMIT:
            reasons.append(f"the hypervisor stole {steal:.1%} of the CPU time during the cell (> {STEAL_LIMIT:.0%})")
    return {"cv": spread, "load": load or {}, "noisy": bool(reasons), "reasons": reasons, "stable": None,
            "thresholds": dict(THRESHOLDS)}


def assess(result: Any, load: dict[str, Any] | None, stable_target: float | None = None,
           stable_max_time: float | None = None) -> None:
    """Fill ``result.quality`` for a cell with timed windows, and attach its warnings: one per reason it is
    noisy, one for a single window, one for a ``--stable`` that reached its cap first."""
    if not result.windows:
        return
    quality = gate(result.windows, load)
    for reason in quality["reasons"]:
        result.warn(f"noisy: {reason}")
    if quality["cv"] is None:
        result.warn(ONE_WINDOW)
    if stable_target is not None:
        quality["stable"] = stable = stability(result.windows, stable_target, stable_max_time or STABLE_MAX_TIME_S)
        if not stable["reached"]:
            width = ("no interval yet (fewer than 6 windows)" if stable["half_width"] is None
                     else f"± {stable['half_width']:.1%}")
            cap = (f"the {STABLE_MAX_WINDOWS}-window cap" if stable["stopped"] == "window cap"
                   else f"the {stable['max_time_s']:g} s cap (--stable-max-time)")
            result.warn(f"--stable: the median's 95 % interval is {width} after {stable['windows']} windows "
                        f"({stable['seconds']:.1f} s), wider than the {stable_target:.1%} target: {cap} came first")
    result.quality = quality
