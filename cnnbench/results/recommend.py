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

import argparse
import json
from typing import Any

from cnnbench.config import UsageError
from cnnbench.results.record import Result


def add_parser(sub) -> None:
    from cnnbench.cli import add_db

    p = sub.add_parser("recommend", help="from stored results: the configuration with the least energy per image")
    p.add_argument("--framework", metavar="F", required=True, help="framework name")
    p.add_argument("--network", metavar="N", required=True, help="network name")
    p.add_argument("--device", metavar="D", help="only results on this device (cpu, cuda, cuda:N)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_db(p)


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


def _describe(entry: dict[str, Any]) -> str:
    threads = entry["threads"] if entry["threads"] is not None else "default"
    text = (f"batch {entry['batch_size']}, {entry['device']}, {entry['precision']}, {entry['kernels']} kernels, "
            f"threads {threads}")
    if entry["options"]:
        text += ", " + " ".join(f"{k}={v}" for k, v in entry["options"].items())
    if entry["clocks"]:
        text += f", {entry['clocks']}"
    if entry.get("noisy"):
        text += " (noisy)"
    return text


def cmd_recommend(args: argparse.Namespace) -> int:
    from cnnbench.cli.store import _open

    with _open(args) as store:
        stored = store.find(args.framework, args.network)
        frameworks, networks = store.names()
    if args.device:
        stored = [(s, r) for s, r in stored if r.device == args.device]
    if not stored:
        raise UsageError(
            f"no successful stored cell of {args.framework} on {args.network}"
            + (f" on {args.device}" if args.device else "")
            + f"; stored frameworks: {', '.join(frameworks) or 'none'}; networks: {', '.join(networks) or 'none'}")
    answer = recommend(stored)
    answer.update(framework=args.framework, network=args.network)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    fastest = answer["fastest"]
    print(f"{args.framework} {args.network}: {answer['configurations']} configurations stored "
          f"({answer['measurements']} measurements; the newest of each counts)")
    for entry in answer["noisy_ignored"]:
        print(f"left out, noisy: {_describe(entry)}, run {entry['run']}: {'; '.join(entry['noisy_reasons'])}")
    if answer["noisy_only"]:
        print("every stored configuration is noisy: the answers below are ranked from noisy figures; measure "
              "again on a quieter machine (cnnbench.results.quality's gate, docs/concepts.md)")
    print(f"fastest:      {_describe(fastest)}: {fastest['ms_per_image']:.3g} ms/image "
          f"({fastest['images_per_s']:,.1f} images/s), run {fastest['run']}")
    best = answer["least_energy"]
    if best is None:
        print(f"least energy: unavailable: no stored configuration has an energy figure "
              f"({answer['energy_unavailable']})")
        return 0
    print(f"least energy: {_describe(best)}: {best['energy_per_image_j']:.4g} J/image ({best['energy_method']}), "
          f"{best['power_w']:.1f} W, {best['ms_per_image']:.3g} ms/image, run {best['run']}")
    cost = answer["time_cost_vs_fastest"]
    saved = answer.get("energy_saved_vs_fastest")
    if best is not None and _describe(best) == _describe(fastest):
        print("the fastest configuration is also the one with the least energy per image")
    else:
        versus = (f"{saved:.0%} less energy per image than the fastest" if saved is not None
                  else "the fastest has no energy figure to compare")
        print(f"cost: {versus}, at {cost:+.0%} time per image ({answer['configurations_with_energy']} of "
              f"{answer['configurations']} configurations have energy)")
    return 0
