"""``cnnbench recommend``: from the stored results of one framework and network, the configuration with the
least energy per image, and what it costs in time against the fastest one.

Each configuration (batch, device, precision, kernels, threads, options, GPU clocks and power limit) counts
once, with its newest stored measurement: a re-run after a driver update replaces the old figure rather than
being averaged with it. Energy is compared per image; a total measured by counters and one integrated from
power samples are both measurements and are compared as such, while estimates are named as estimates.

Configurations whose newest measurement failed the quality gate (``quality.noisy``) are left out of the ranking
and listed with their reasons: a recommendation is acted on, and picking the fastest of noisy figures is
picking the quietest moment of the machine (issue 15). Only when every configuration is noisy are they ranked,
and then every answer says it is noisy.
"""

from __future__ import annotations

import json
from typing import Any

from cnnbench.results.record import Result


def _clocks(result: Result) -> str | None:
    """The GPU's application clocks and power limit the cell ran at, as NVML recorded them."""
    gpu = result.provenance.get("gpu") or {}
    clocks = gpu.get("clocks_mhz") or {}
    parts = []
    if clocks.get("mem_application") and clocks.get("sm_application"):
        parts.append(f"{clocks['mem_application']}/{clocks['sm_application']} MHz")
    if gpu.get("power_limit_w"):
        parts.append(f"{gpu['power_limit_w']:g} W limit")
    return ", ".join(parts) or None


def configuration(result: Result) -> dict[str, Any]:
    return {"batch_size": result.batch_size, "device": result.device, "precision": result.precision,
            "kernels": result.kernels, "threads": result.threads, "options": dict(result.options),
            "clocks": _clocks(result)}


def _key(result: Result) -> str:
    return json.dumps(configuration(result), sort_keys=True)


def ms_per_image(result: Result) -> float:
    return result.time_per_iter_ms / result.batch_size


def _noisy(result: Result) -> bool:
    return bool((result.quality or {}).get("noisy"))


def recommend(stored: list[tuple[int, Result]]) -> dict[str, Any]:
    """The newest result per configuration; the least energy per image among those with energy; the fastest.
    Noisy configurations are ranked only when there is nothing else (see the module docstring)."""
    newest: dict[str, tuple[int, Result]] = {}
    for session, result in stored:  # oldest first: later ones replace earlier ones
        newest[_key(result)] = (session, result)
    everything = list(newest.values())
    clean = [sr for sr in everything if not _noisy(sr[1])]
    candidates = clean or everything
    fastest = min(candidates, key=lambda sr: ms_per_image(sr[1]))
    metered = [sr for sr in candidates if sr[1].energy_total]
    answer: dict[str, Any] = {"configurations": len(everything), "measurements": len(stored),
                              "fastest": _entry(*fastest), "least_energy": None, "energy_unavailable": None,
                              "noisy_ignored": [_entry(*sr) for sr in everything if clean and _noisy(sr[1])],
                              "noisy_only": not clean}
    if not metered:
        answer["energy_unavailable"] = fastest[1].energy_unavailable or "no stored cell has an energy figure"
        if any(r.energy_total for _, r in everything):
            answer["energy_unavailable"] += "; only noisy configurations, left out, have one"
        return answer
    best = min(metered, key=lambda sr: sr[1].energy_total["energy_per_image_j"])
    answer["least_energy"] = _entry(*best)
    answer["configurations_with_energy"] = len(metered)
    if fastest[1].energy_total:
        answer["energy_saved_vs_fastest"] = 1 - (best[1].energy_total["energy_per_image_j"]
                                                 / fastest[1].energy_total["energy_per_image_j"])
    answer["time_cost_vs_fastest"] = ms_per_image(best[1]) / ms_per_image(fastest[1]) - 1
    return answer


def _entry(session: int, result: Result) -> dict[str, Any]:
    total = result.energy_total or {}
    return {"run": session, **configuration(result), "ms_per_image": ms_per_image(result),
            "images_per_s": result.images_per_s, "energy_per_image_j": total.get("energy_per_image_j"),
            "energy_method": total.get("method"), "power_w": total.get("power_w"), "noisy": _noisy(result),
            "noisy_reasons": list((result.quality or {}).get("reasons") or [])}
