"""Compare the cells of a run against a baseline run: the change in time and energy, with a 95% interval.

Each cell of the new run is matched to the baseline's cell with the same ``cell_key``. For time the samples
are the per-window times per iteration, for energy the per-window J/image (``energy_per_image_j_windows``).

Method, and the choice it makes: the reported ``ratio`` is the ratio of geometric means, exp(mean log new
- mean log baseline), and its interval is Welch's t interval of that difference of mean logs (standard
error sqrt(s1²/n1 + s2²/n2), Welch–Satterthwaite degrees of freedom), exponentiated. Ratio and interval
are therefore one estimate and the ratio always lies inside. It is not exactly the ratio of the report
table's medians (close to it when windows are steady): an interval placed around the median ratio with
the mean's standard error was tried and covered the true ratio in only 80-89% of simulated runs (uniform
and log-normal window noise, 10-30 windows), since a median scatters more than a mean. The interval covers
window-to-window variation within each run only, not the variation between runs in separate processes,
which on a noisy machine can be larger.

A pair in which either cell failed the quality gate (``quality.noisy``) is still compared, but its verdict is
``noisy``, never ``slower`` or ``faster``, and it is never called significant: the interval assumes windows of a
quiet machine, and a change measured against noise may be the noise (issue 15).

Standard library only (no scipy): the t quantile comes from the regularised incomplete beta function.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from cnnbench.results.report import AXES, axis_value
from cnnbench.results.record import Result

CONFIDENCE = 0.95
FOOTNOTE = (
    "time, energy: change of the new run's geometric mean over the baseline's (per-window ms/iter; J/image), with "
    "a 95% Welch t interval on the log values.\nThe interval reflects window-to-window variation within each run, "
    "not run-to-run variation between processes, which on a noisy machine can be larger."
)


def cell_key(result: Result) -> tuple:
    """What makes two cells the same experiment; options sorted so that {"a", "b"} order does not matter."""
    return (result.framework, result.network, result.batch_size, result.device, result.precision,
            result.kernels, result.threads, tuple(sorted((result.options or {}).items())))


# --- Student's t quantile -------------------------------------------------------------------------------

def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes, betacf)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    # The continued fraction converges fast only below this point; above it use the symmetry I_x(a,b) = 1 - I_1-x(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if df > 1e7:  # the continued fraction slows as df grows, and t is the normal here to 7 digits
        return statistics.NormalDist().inv_cdf(p)
    target = 2.0 * (1.0 - p)  # P(|T| > t) = I_{df/(df+t²)}(df/2, 1/2), which falls as t grows

    def two_tailed(t: float) -> float:
        return betainc(df / 2.0, 0.5, df / (df + t * t))

    lo, hi = 0.0, 1.0
    while two_tailed(hi) > target:
        lo, hi = hi, hi * 2.0
    for _ in range(200):  # bisection: slow but sure, and a few hundred calls cost nothing here
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if two_tailed(mid) > target else (lo, mid)
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2.0


# --- the comparison -------------------------------------------------------------------------------------

@dataclass
class Delta:
    """New / baseline of geometric means, with its 95% interval (None with fewer than 2 windows on a side)."""

    ratio: float
    low: float | None
    high: float | None
    significant: bool
    n_new: int
    n_base: int

    @property
    def change_pct(self) -> float:
        return (self.ratio - 1.0) * 100.0


def _exp(x: float) -> float:
    return math.exp(min(x, 700.0))  # an absurdly wide interval should print as huge, not raise OverflowError


def delta(new: list[float], base: list[float]) -> Delta:
    """Delta of two samples of positive values (see the module docstring for the method)."""
    log_new, log_base = [math.log(v) for v in new], [math.log(v) for v in base]
    diff = statistics.fmean(log_new) - statistics.fmean(log_base)
    ratio = math.exp(diff)
    if len(new) < 2 or len(base) < 2:
        return Delta(ratio, None, None, False, len(new), len(base))
    v_new = statistics.variance(log_new) / len(log_new)
    v_base = statistics.variance(log_base) / len(log_base)
    se = math.sqrt(v_new + v_base)
    if se == 0.0:  # every window identical on both sides: no spread to put an interval on
        return Delta(ratio, ratio, ratio, ratio != 1.0, len(new), len(base))
    df = (v_new + v_base) ** 2 / (v_new ** 2 / (len(new) - 1) + v_base ** 2 / (len(base) - 1))
    half = t_quantile(1.0 - (1.0 - CONFIDENCE) / 2.0, df) * se
    low, high = _exp(diff - half), _exp(diff + half)
    return Delta(ratio, low, high, low > 1.0 or high < 1.0, len(new), len(base))


@dataclass
class Change:
    """One cell of the new run against its baseline cell; ``result`` or ``baseline`` is None when absent."""

    key: tuple
    result: Result | None
    baseline: Result | None
    #: "compared", "new" (no baseline cell), "missing" (no new cell) or "not comparable" (a side not ok).
    status: str
    reason: str | None = None
    time: Delta | None = None
    time_reason: str | None = None
    energy: Delta | None = None
    energy_reason: str | None = None
    #: Why a side failed the quality gate, one line per reason naming the side; empty: both sides passed.
    noisy: list[str] = field(default_factory=list)


def _times(result: Result) -> list[float]:
    return [(w["end"] - w["start"]) / w["iterations"] for w in result.windows if w["iterations"]]


def _no_energy(result: Result) -> str | None:
    """Why ``result`` has no per-window energy to compare, or None when it has."""
    values = result.energy_per_image_j_windows
    if values and all(v is not None and v > 0 for v in values):
        return None
    if values:
        return "a zero, negative or missing window reading"
    if result.energy_unavailable:
        return f"energy unavailable ({result.energy_unavailable})"
    if result.energy_total:  # a version-1 record kept only the total over all windows
        return "an older record without per-window energy"
    return "no energy figures"


def _energy_reason_here(change: Change) -> str | None:
    """``energy_reason`` as the table shows it: of the meters' reasons, those that could apply here
    (``cnnbench.meters.session.reasons_here``); ``changes_json`` keeps the whole text."""
    why = change.energy_reason
    if not why:
        return why
    from cnnbench.meters.session import reasons_here

    for side in (change.result, change.baseline):
        if side is not None and side.energy_unavailable:
            why = why.replace(side.energy_unavailable, reasons_here(side.energy_unavailable))
    return why


def _compare(key: tuple, new: Result, base: Result) -> Change:
    if new.status != "ok" or base.status != "ok":
        sides = [f"{side} {r.status}" + (f" ({r.reason})" if r.reason else "")
                 for side, r in (("new run", new), ("baseline", base))]
        return Change(key, new, base, "not comparable", ", ".join(sides))
    change = Change(key, new, base, "compared")
    change.noisy = [f"{side} noisy: {reason}" for side, r in (("new run", new), ("baseline", base))
                    if (r.quality or {}).get("noisy") for reason in (r.quality.get("reasons") or ["quality gate"])]
    times = {"new run": _times(new), "baseline": _times(base)}
    empty = [side for side, values in times.items() if not values]
    if empty:
        change.time_reason = f"no timed windows in the {' and the '.join(empty)}"
    elif min(min(v) for v in times.values()) <= 0:
        change.time_reason = "a window has a non-positive duration"
    else:
        change.time = delta(times["new run"], times["baseline"])
    why_new, why_base = _no_energy(new), _no_energy(base)
    if why_new == why_base and why_new:
        change.energy_reason = f"both runs: {why_new}"
    elif why_new or why_base:
        sides = (("new run", why_new), ("baseline", why_base))
        change.energy_reason = "; ".join(f"{side}: {why}" for side, why in sides if why)
    else:
        change.energy = delta(new.energy_per_image_j_windows, base.energy_per_image_j_windows)
    return change


def compare_results(results: list[Result], baseline: list[Result]) -> list[Change]:
    """A Change per cell of ``results``, in order, then one per baseline cell the new run lacks.

    A key repeated in the baseline matches its first cell; the new run's repeats each compare against it."""
    base_by_key: dict[tuple, Result] = {}
    for b in baseline:
        base_by_key.setdefault(cell_key(b), b)
    changes, seen = [], set()
    for r in results:
        key = cell_key(r)
        seen.add(key)
        base = base_by_key.get(key)
        changes.append(_compare(key, r, base) if base else Change(key, r, None, "new", "no baseline cell"))
    changes += [Change(key, None, b, "missing", "no cell in the new run")
                for key, b in base_by_key.items() if key not in seen]
    return changes


# --- output ---------------------------------------------------------------------------------------------

NOISY = "noisy: not judged"


def verdict(d: Delta | None, up: str, down: str, noisy: bool = False) -> str:
    if d is None:
        return "-"
    if noisy:
        return NOISY
    if d.low is None:
        return f"n/a ({min(d.n_new, d.n_base)} window)"
    if not d.significant:
        return "no significant change"
    return up if d.ratio > 1.0 else down


def _pct(ratio: float) -> str:
    return f"{(ratio - 1.0) * 100.0:+.1f}"


def format_delta(d: Delta) -> str:
    """E.g. "+12.3 % [+8.1, +16.6]"; the interval left out when unknown."""
    interval = "" if d.low is None else f" [{_pct(d.low)}, {_pct(d.high)}]"
    return f"{_pct(d.ratio)} %{interval}"


def changes_table(changes: list[Change], tablefmt: str = "simple") -> str:
    """Axes that vary as columns, the rest in a header line; reasons as numbered notes, then the method."""
    from tabulate import tabulate

    if not changes:
        return "no cells to compare"
    cells = [c.result or c.baseline for c in changes]
    varying = [(attr, head) for attr, head in AXES if len({axis_value(r, attr) for r in cells}) > 1] or [AXES[0]]
    fixed = [(head, axis_value(cells[0], attr)) for attr, head in AXES
             if (attr, head) not in varying and not (attr == "options" and not cells[0].options)]
    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    rows = []
    for change, cell in zip(changes, cells):
        row = [axis_value(cell, attr) for attr, _ in varying]
        for d, why, up, down in ((change.time, change.time_reason, "slower", "faster"),
                                 (change.energy, _energy_reason_here(change), "more", "less")):
            if d is not None:
                judged = verdict(d, up, down, bool(change.noisy)) + "".join(f" {note(r)}" for r in change.noisy)
                row += [format_delta(d), judged]
            else:
                row += [f"- {note(why)}" if why else "-", ""]
        windows = change.time or change.energy
        row.append(f"{windows.n_new}/{windows.n_base}" if windows else "-")
        row.append(change.status if change.status == "compared" else f"{change.status} {note(change.reason)}")
        rows.append(row)
    headers = [head for _, head in varying] + ["time", "time verdict", "energy", "energy verdict", "windows new/base",
                                               "match"]
    lines = ["  ".join(f"{head}: {value}" for head, value in fixed)] if fixed else []
    if fixed and tablefmt == "github":
        lines.append("")  # a paragraph of its own in Markdown
    lines.append(tabulate(rows, headers=headers, disable_numparse=True, tablefmt=tablefmt))
    if notes:
        lines += [""] + [f"[{i}] {text}" for i, text in enumerate(notes, 1)]
    lines.append(FOOTNOTE)
    return "\n".join(lines)


def _delta_json(d: Delta | None, up: str, down: str, noisy: bool) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"ratio": d.ratio, "low": d.low, "high": d.high, "significant": d.significant and not noisy,
            "change_pct": d.change_pct, "n_new": d.n_new, "n_base": d.n_base, "verdict": verdict(d, up, down, noisy)}


def changes_json(changes: list[Change]) -> list[dict[str, Any]]:
    """Plain dicts (json.dumps-able) in the order of ``changes``."""
    names = ("framework", "network", "batch_size", "device", "precision", "kernels", "threads")
    return [
        {**dict(zip(names, c.key[:7])), "options": dict(c.key[7]), "status": c.status, "reason": c.reason,
         "time": _delta_json(c.time, "slower", "faster", bool(c.noisy)), "time_reason": c.time_reason,
         "energy": _delta_json(c.energy, "more", "less", bool(c.noisy)), "energy_reason": c.energy_reason,
         "noisy": c.noisy}
        for c in changes
    ]
