"""From timestamped samples to the energy of a window: wraparound, interpolation, integration, flags.

Pure functions over sorted sequences (``array('d')`` or lists) so that they can be tested on exact,
synthetic samples. The session calls :func:`window_reading` once per domain and window.

- A cumulative counter (RAPL energy_uj after wrap correction, NVML's total-energy counter) gives the
  energy of ``[start, end]`` as ``E(end) - E(start)``, each edge interpolated linearly between the two
  samples around it. Only the two edge intervals rest on the assumption of constant power.
- Power samples (NVML's power usage) give it as the trapezoid integral over the samples inside the
  window plus the two interpolated edge pieces.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from typing import Sequence

from cnnbench.meters.base import DomainInfo, Reading

#: A counter and the integral of power that differ by more than this are flagged (the issue's 5 %).
CROSS_CHECK_TOLERANCE = 0.05


def wrap_delta(previous: int, current: int, max_range: int) -> tuple[int, bool]:
    """The increase of a counter that wraps to 0 after ``max_range`` (RAPL's ``max_energy_range_uj``).

    A smaller ``current`` means exactly one wrap happened in between; more than one cannot be seen,
    which is why the sampler reads every zone several times per worst-case wrap period. The kernel's
    counter really wraps at ``max_range`` plus one energy unit (61 µJ or 15.3 µJ), so each wrap
    undercounts by that unit: at most 61 µJ in 4 kJ or more, well below anything else here.
    """
    if current >= previous:
        return current - previous, False
    return current + max_range - previous, True


def interpolate(times: Sequence[float], values: Sequence[float], t: float) -> float | None:
    """The value at ``t``, linear between the two samples around it; None outside the samples."""
    n = len(times)
    if n == 0 or t < times[0] or t > times[-1]:
        return None
    i = bisect_left(times, t)
    if times[i] == t:
        return values[i]
    t0, t1 = times[i - 1], times[i]
    v0, v1 = values[i - 1], values[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def counter_energy(times: Sequence[float], energy: Sequence[float], start: float, end: float) -> float | None:
    """Energy over ``[start, end]`` from a cumulative (already unwrapped) counter; None if not covered."""
    e0 = interpolate(times, energy, start)
    e1 = interpolate(times, energy, end)
    if e0 is None or e1 is None:
        return None
    return e1 - e0


def integrate_power(times: Sequence[float], power: Sequence[float], start: float, end: float) -> float | None:
    """Trapezoid integral of power samples over ``[start, end]``; None if not covered."""
    p0 = interpolate(times, power, start)
    p1 = interpolate(times, power, end)
    if p0 is None or p1 is None:
        return None
    lo = bisect_right(times, start)
    hi = bisect_left(times, end)
    total = 0.0
    t_prev, p_prev = start, p0
    for i in range(lo, hi):
        total += (times[i] - t_prev) * (power[i] + p_prev) / 2
        t_prev, p_prev = times[i], power[i]
    total += (end - t_prev) * (p1 + p_prev) / 2
    return total


def samples_inside(times: Sequence[float], start: float, end: float) -> int:
    """Samples strictly inside ``(start, end)``."""
    return max(0, bisect_left(times, end) - bisect_right(times, start))


def window_reading(
    info: DomainInfo,
    times: Sequence[float],
    energy: Sequence[float] | None,
    power: Sequence[float] | None,
    events: Sequence[tuple[float, float, str, str]],
    start: float,
    end: float,
    period: float,
) -> Reading:
    """The Reading of one domain over ``[start, end]`` from its samples and its events.

    ``events`` are ``(from, to, severity, message)`` intervals recorded by the sampler: an ``error``
    overlapping the window invalidates it (no joules); a ``warning`` is passed on.
    """
    seconds = end - start
    method = "counter" if info.energy_counter else "integrated"
    overlapping = [(sev, msg) for t0, t1, sev, msg in events if t0 < end and t1 > start]
    errors = _unique(msg for sev, msg in overlapping if sev == "error")
    warnings = _unique(msg for sev, msg in overlapping if sev != "error")
    if errors:
        return Reading(None, seconds, method, tuple(warnings), "; ".join(_by_kind(errors)))
    if len(times) < 2 or start < times[0] or end > times[-1]:
        covered = f"[{times[0]:.3f}, {times[-1]:.3f}]" if len(times) else "nothing"
        return Reading(
            None, seconds, method, tuple(warnings),
            f"no samples cover the window [{start:.3f}, {end:.3f}] (samples cover {covered})",
        )
    integrated = None
    if info.energy_counter and energy is not None:
        joules = counter_energy(times, energy, start, end)
        if info.power_samples and power is not None and joules is not None:
            integrated = integrate_power(times, power, start, end)
            if integrated is not None and joules > 0:
                gap = abs(integrated - joules) / joules
                if gap > CROSS_CHECK_TOLERANCE:
                    warnings.append(
                        f"counter and power integration disagree by {gap * 100:.1f} % "
                        f"({joules:.4g} J vs {integrated:.4g} J)"
                    )
    elif power is not None:
        joules = integrated = integrate_power(times, power, start, end)
    else:
        joules = None
    if joules is None or not math.isfinite(joules) or joules < 0:
        return Reading(None, seconds, method, tuple(warnings), f"no valid energy over the window (got {joules!r})")
    inside = samples_inside(times, start, end)
    if inside == 0 and seconds > 0:
        method = "estimated"
        warnings.append(
            f"no sample inside the window ({seconds * 1e3:.1f} ms, sampling every {period * 1e3:.0f} ms): "
            "its energy is the surrounding interval's average power times its length"
        )
    if 0 < seconds < info.update_period_s:
        warnings.append(
            f"window shorter than the counter's update period ({seconds * 1e3:.1f} ms < "
            f"~{info.update_period_s * 1e3:.0f} ms)"
        )
    if info.power_samples and 0 < seconds < info.power_average_s:
        warnings.append(
            f"window shorter than the power reading's averaging period ({seconds:.3g} s < {info.power_average_s:g} s): "
            "its power integral " + ("is only indicative" if info.energy_counter else "cannot follow the window")
        )
    return Reading(joules, seconds, method, tuple(warnings), None, inside, integrated)


def _unique(messages) -> list[str]:
    return list(dict.fromkeys(messages))


def message_kind(text: str) -> str:
    """What a message says without its figures: two counter restarts in one window are one kind of error."""
    return re.sub(r"\d[\d.,]*", "#", text)


def _by_kind(messages: list[str]) -> list[str]:
    """The first message of each kind, with how many more of that kind there were."""
    kinds: dict[str, list[str]] = {}
    for text in messages:
        kinds.setdefault(message_kind(text), []).append(text)
    return [same[0] + (f" (and {len(same) - 1} more like it)" if len(same) > 1 else "") for same in kinds.values()]
