"""A cell's energy: each domain integrated over the cell's timed windows, idle subtracted, totals summed.

Domains add up only where they do not overlap: the CPU package contains its cores and uncore, and psys
contains everything, so the total is package + DRAM + the GPU the cell ran on.
"""

from __future__ import annotations

from typing import Any

from cnnbench.meters.integrate import message_kind
from cnnbench.results.record import Result

#: Disjoint domain kinds whose sum is what the machine measurably drew for the cell.
TOTAL_KINDS = ("cpu_package", "dram", "gpu")
CPU_KINDS = ("cpu_package", "dram")
#: A total is only as good as its weakest part.
_METHOD_RANK = {"counter": 0, "integrated": 1, "estimated": 2}


def _weakest(methods: list[str]) -> str:
    return max(methods, key=lambda m: _METHOD_RANK.get(m, len(_METHOD_RANK)))


def attach_energy(result: Result, session: Any, gpu_domain: str | None) -> None:
    """Fill ``result.energy`` and ``result.energy_total`` from the meter session's samples.

    ``gpu_domain`` is the NVML domain of the device the worker ran on (found by UUID or PCI bus id);
    other GPUs' domains are left out. A reading that cannot be trusted (a GPU lost during a window,
    no samples) gives that domain an ``error`` and no figures; a lost GPU fails the cell.
    """
    if result.status != "ok" or not result.windows or not session.domains:
        return
    images = sum(int(w["iterations"]) for w in result.windows) * result.batch_size
    readings: dict[str, list[Any]] = {}
    for window in result.windows:
        for domain, reading in session.energy(window["start"], window["end"]).items():
            readings.setdefault(domain, []).append(reading)
    idle = getattr(session, "idle_power", {}) or {}
    baseline = getattr(session, "idle_baseline", None) or {}
    if baseline and not baseline.get("trusted"):
        result.warn(f"idle baseline not used, so no above-idle energy: {baseline.get('reason')}")
    entries: dict[str, dict[str, Any]] = {}
    for domain, parts in readings.items():
        info = session.domains[domain]
        if info.kind == "gpu" and domain != gpu_domain:
            continue
        _warn_windows(result, domain, parts)
        errors = [r.error for r in parts if r.error]
        if errors or any(r.joules is None for r in parts):
            entries[domain] = {"kind": info.kind, "meter": info.meter, "power_w": None, "energy_per_image_j": None,
                               "method": None, "error": errors[0] if errors else "no reading"}
            continue
        if baseline.get("trusted"):
            _warn_idle(result, domain, (baseline.get("domains") or {}).get(domain) or {}, baseline)
        joules = sum(r.joules for r in parts)
        seconds = sum(r.seconds for r in parts)
        entry: dict[str, Any] = {
            "kind": info.kind,
            "meter": info.meter,
            "power_w": joules / seconds,
            "energy_per_image_j": joules / images,
            "method": _weakest([r.method for r in parts]),
            "joules": joules,
            "seconds": seconds,
            "idle_power_w": idle.get(domain),
            "dynamic_energy_per_image_j": None,
            "warnings": sorted({w for r in parts for w in r.warnings}),
        }
        if idle.get(domain) is not None:
            entry["dynamic_energy_per_image_j"] = (joules - idle[domain] * seconds) / images
        entries[domain] = entry
    result.energy = entries
    result.energy_total = _totals(entries)
    # The domain's own error (and the cell's warnings) has the whole reason; its first clause names it here.
    missing = [f"{d} ({e['error'].split(':')[0]})" for d, e in sorted(entries.items())
               if e["kind"] in TOTAL_KINDS and e.get("error") and d != gpu_domain]
    if result.energy_total and result.device.startswith("cuda") and (
            gpu_domain is None or not (entries.get(gpu_domain) or {}).get("method")):
        # The GPU drew most of a GPU cell's energy: a total without it must say so, never pass for whole.
        missing.insert(0, _gpu_missing(session, gpu_domain, entries))
    if result.energy_total and missing:
        # A package or DRAM figure thrown out (a counter restart, a failed read) leaves a total that is
        # smaller than what was drawn: it says what it lacks.
        result.energy_total["missing"] = "; ".join(missing)
    if result.energy_total:
        # The same total per window, so a comparison against a baseline can give energy an uncertainty
        # the way the windows give time one.
        summed = result.energy_total["domains"]
        per_window = []
        for index, window in enumerate(result.windows):
            images_in_window = int(window["iterations"]) * result.batch_size
            per_window.append(sum(readings[d][index].joules for d in summed) / images_in_window)
        result.energy_per_image_j_windows = per_window
    lost = [f"{d}: {e['error']}" for d, e in entries.items() if e.get("error") and "lost" in e["error"].lower()]
    if lost:
        result.status, result.reason = "error", f"energy reading invalid: {lost[0]}"


def _windows_text(indexes: list[int], count: int) -> str:
    if len(indexes) == count and count > 1:
        return f"all {count} windows"
    return f"window{'s' if len(indexes) > 1 else ''} {', '.join(str(i) for i in indexes)} of {count}"


def _warn_windows(result: Result, domain: str, parts: list[Any]) -> None:
    """Every error and warning of this domain's readings, once per kind of message, on the result: the table,
    the reports and the figures show ``result.warnings`` with the number they qualify."""
    groups: dict[tuple[str, str], tuple[str, list[int]]] = {}
    for index, reading in enumerate(parts, start=1):
        messages = ([("error", reading.error)] if reading.error else []) + [("warning", w) for w in reading.warnings]
        for severity, text in messages:
            # Messages differing only in their figures (a window's length in ms) are one kind: the first
            # one's figures are shown, with every window it concerns.
            key = (severity, message_kind(text))
            groups.setdefault(key, (text, []))[1].append(index)
    for (severity, _), (text, indexes) in groups.items():
        where = _windows_text(indexes, len(parts))
        if severity == "error":
            result.warn(f"{domain}: no figure: {text} ({where})")
        else:
            result.warn(f"{domain}: {text} ({where})")


def _warn_idle(result: Result, domain: str, entry: dict[str, Any], baseline: dict[str, Any]) -> None:
    from cnnbench.meters.idle import IDLE_CV_WARN

    if entry.get("error") or entry.get("power_w") is None:
        result.warn(f"{domain}: no above-idle figure: its idle baseline could not be read "
                    f"({entry.get('error') or 'no reading'})")
    elif entry.get("cv") is not None and entry["cv"] > IDLE_CV_WARN:
        result.warn(f"{domain}: the idle baseline varied by {entry['cv'] * 100:.0f} % (CV) across its "
                    f"{baseline.get('windows')} windows: the above-idle figure is uncertain")


def _gpu_missing(session: Any, gpu_domain: str | None, entries: dict[str, dict[str, Any]]) -> str:
    if gpu_domain is not None:
        return f"the GPU ({gpu_domain}): {entries.get(gpu_domain, {}).get('error') or 'no reading'}"
    gpus = [d for d, info in session.domains.items() if info.kind == "gpu"]
    if gpus:
        return ("the GPU: the worker's GPU could not be matched to a metered one "
                f"({', '.join(gpus)}) by UUID or PCI bus id")
    why = "; ".join(f"{k}: {v}" for k, v in (getattr(session, "unavailable", {}) or {}).items() if k.startswith("nvml"))
    return f"the GPU: no GPU meter{' (' + why + ')' if why else ''}"


def _totals(entries: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    parts = {d: e for d, e in entries.items() if e["kind"] in TOTAL_KINDS and e.get("method")}
    if not parts:
        return None
    total: dict[str, Any] = {
        "domains": sorted(parts),
        "energy_per_image_j": sum(e["energy_per_image_j"] for e in parts.values()),
        "power_w": sum(e["power_w"] for e in parts.values()),
        "method": _weakest([e["method"] for e in parts.values()]),
        "dynamic_energy_per_image_j": None,
        "cpu_share": None,
    }
    if all(e["dynamic_energy_per_image_j"] is not None for e in parts.values()):
        total["dynamic_energy_per_image_j"] = sum(e["dynamic_energy_per_image_j"] for e in parts.values())
    kinds = {e["kind"] for e in parts.values()}
    if "gpu" in kinds and kinds & set(CPU_KINDS):
        # The paper's point: in GPU training the (mostly idle) CPU still draws 22-40 % of the energy.
        cpu = sum(e["energy_per_image_j"] for e in parts.values() if e["kind"] in CPU_KINDS)
        total["cpu_share"] = cpu / total["energy_per_image_j"]
    return total
