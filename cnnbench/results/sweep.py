"""The report of a ``dvfs`` sweep: one row per setting that ran (its clocks or governor, the workload's speed,
energy and energy-delay product), the energy valley the paper's Fig. 8 shows, and the table and JSON of both.
The valley is claimed only when every setting that ran has an energy figure."""

from __future__ import annotations

from typing import Any


def setting_cells(side: dict[str, Any], setting: Any) -> list[str]:
    if side["kind"] == "cpu":
        return [setting.governor, str(setting.max_mhz)]
    gpu = side["target"]
    power = f"{setting.power_limit_w:g}" if setting.power_limit_w is not None else (
        f"{gpu.power_limit_w:g} (as is)" if gpu.power_limit_w is not None else "as is")
    if setting.memory_mhz is None:
        return ["as is", "as is", power]
    return [str(setting.memory_mhz), str(setting.graphics_mhz), power]


def setting_heads(side: dict[str, Any]) -> list[str]:
    return ["governor", "max MHz"] if side["kind"] == "cpu" else ["memory MHz", "graphics MHz", "power limit W"]


def setting_rows(side: dict[str, Any], done: list) -> list[dict[str, Any]]:
    """One row per finished setting: its clocks, the workload's speed and energy, and the energy-delay product."""
    rows = []
    for setting, applied, grid_run in done:
        result = grid_run.results[0] if grid_run.results else None
        row: dict[str, Any] = {"setting": len(rows) + 1, "label": setting.label(),
                               "cells": setting_cells(side, setting), "group": None, "x": None, "applied": applied, "session": grid_run.session_id,
                               "status": "interrupted", "reason": None, "failed": False, "time_per_iter_ms": None,
                               "images_per_s": None, "energy_per_image_j": None, "power_w": None, "edp": None,
                               "energy_unavailable": None, "result": result}
        if side["kind"] == "gpu":
            row["group"], row["x"] = (setting.memory_mhz, setting.power_limit_w), setting.graphics_mhz
            if setting.power_limit_w is None and applied.get("power_limit_w") is not None:
                row["cells"][2] = f"{applied['power_limit_w']:g}"
        else:
            row["group"], row["x"] = setting.governor, setting.max_mhz
        if result is not None:
            row.update(status=result.status, reason=result.reason, failed=result.failed,
                       time_per_iter_ms=result.time_per_iter_ms, images_per_s=result.images_per_s)
            total = result.energy_total
            if total and total.get("energy_per_image_j") is not None:
                row["energy_per_image_j"], row["power_w"] = total["energy_per_image_j"], total["power_w"]
                if result.images_per_s:
                    # energy-delay product per image: J/image x s/image
                    row["edp"] = total["energy_per_image_j"] / result.images_per_s
            elif result.status == "ok":
                errors = [f"{d}: {e['error']}" for d, e in result.energy.items() if e.get("error")]
                row["energy_unavailable"] = result.energy_unavailable or (errors[0] if errors else
                                                                          "no meter reading covers this run")
        rows.append(row)
    return rows


def energy_valley(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The setting with the least energy per image and the one with the least EDP, among the settings that
    ran; claimed only when every one of them has an energy figure (a valley over some of them could be an
    artefact of the ones missing)."""
    ok = [r for r in rows if r["status"] == "ok"]
    if len(ok) < 2:
        return {"claimed": False, "reason": "fewer than two settings ran to completion: nothing to compare"}
    missing = [r for r in ok if r["energy_per_image_j"] is None or r["edp"] is None]
    if missing:
        first = missing[0]
        return {"claimed": False, "reason": f"energy unavailable for setting {first['setting']} "
                                            f"({first['energy_unavailable'] or 'no energy figure'})"}
    least = min(ok, key=lambda r: r["energy_per_image_j"])
    fastest_cheapest = min(ok, key=lambda r: r["edp"])
    same_group = sorted(r["x"] for r in ok if r["group"] == least["group"] and r["x"] is not None)
    # The paper's valley has its bottom inside the range; a minimum at the edge may lie beyond it.
    edge = len(same_group) > 2 and least["x"] in (same_group[0], same_group[-1])
    return {"claimed": True, "least_energy": least["setting"], "least_edp": fastest_cheapest["setting"],
            "at_edge": edge, "failed": [r["setting"] for r in rows if r["status"] != "ok"]}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def sweep_table(side: dict[str, Any], rows: list[dict[str, Any]], valley: dict[str, Any]) -> str:
    from tabulate import tabulate

    if not rows:
        return "no setting finished"
    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    table = []
    for r in rows:
        marks = []
        if valley.get("claimed") and r["setting"] == valley["least_energy"]:
            marks.append("<- least J/image")
        if valley.get("claimed") and r["setting"] == valley["least_edp"]:
            marks.append("<- least EDP")
        if r["energy_per_image_j"] is not None:
            energy = [f"{r['energy_per_image_j']:.4g}", _fmt(r["power_w"], ".1f"), _fmt(r["edp"], ".4g")]
        elif r["energy_unavailable"]:
            from cnnbench.meters.session import reasons_here

            energy = [f"unavailable {note(reasons_here(r['energy_unavailable']))}", "-", "-"]
        else:
            energy = ["-", "-", "-"]
        status = r["status"] if not r["reason"] else f"{r['status']} {note(r['reason'])}"
        table.append([r["setting"], *r["cells"], _fmt(r["time_per_iter_ms"], ",.2f"), _fmt(r["images_per_s"], ",.1f"),
                      *energy, status, " ".join(marks)])
    heads = ["#", *setting_heads(side), "ms/iter", "images/s", "J/image", "W", "EDP J/img x s/img", "status", ""]
    lines = [f"workload: {_workload_of(rows)}", tabulate(table, headers=heads, disable_numparse=True)]
    if notes:
        lines += [""] + [f"[{i}] {text}" for i, text in enumerate(notes, 1)]
    lines.append("")
    if valley.get("claimed"):
        least = rows[valley["least_energy"] - 1]
        best = rows[valley["least_edp"] - 1]
        lines.append(f"energy valley: least energy per image at setting {least['setting']} ({least['label']}): "
                     f"{least['energy_per_image_j']:.4g} J/image; least energy-delay product at setting "
                     f"{best['setting']} ({best['label']})")
        if valley["at_edge"]:
            lines.append("  the least energy lies at the edge of the swept range: the valley's bottom may be beyond it")
        if valley["failed"]:
            lines.append(f"  settings {', '.join(map(str, valley['failed']))} did not run to completion and are "
                         "not in the comparison")
    else:
        lines.append(f"no energy valley claimed: {valley['reason']}")
    lines.append("J/image and W: package + DRAM + the run's GPU over the timed windows (as cnnbench run reports "
                 "them); EDP: energy-delay product, J/image x s/image.")
    return "\n".join(lines)


def _workload_of(rows: list[dict[str, Any]]) -> str:
    result = next((r["result"] for r in rows if r["result"] is not None), None)
    if result is None:
        return "none finished"
    return (f"{result.framework} {result.network} bs{result.batch_size} {result.device} {result.precision} "
            f"{result.kernels}")


def sweep_json(side: dict[str, Any], rows: list[dict[str, Any]], valley: dict[str, Any], outcome) -> dict[str, Any]:
    from dataclasses import asdict

    from cnnbench.results.record import SCHEMA_VERSION

    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "side": side["kind"], "applied": True,
        "plan": [asdict(s) for s in side["settings"]],
        "settings": [{**{k: v for k, v in r.items() if k not in ("result", "cells", "group", "x")},
                      "result": r["result"].to_dict() if r["result"] is not None else None} for r in rows],
        "valley": valley, "restored": outcome.restored, "restore_errors": outcome.restore_errors,
        "error": outcome.error, "interrupted": outcome.interrupted,
    }
    if side["kind"] == "gpu":
        data["gpu"] = side["target"].to_dict()
    else:
        data["policies"] = [p.to_dict() for p in side["policies"]]
    return data
