"""Tables of results for the terminal (tabulate), and the JSON document of ``--json``."""

from __future__ import annotations

import json
from typing import Any, Callable

from cnnbench.results.quality import ONE_WINDOW
from cnnbench.results.record import SCHEMA_VERSION, Result

AXES = (
    ("framework", "framework"),
    ("network", "network"),
    ("batch_size", "batch"),
    ("device", "device"),
    ("precision", "precision"),
    ("kernels", "kernels"),
    ("threads", "threads"),
    ("options", "options"),
)


def axis_value(result: Result, attr: str) -> str:
    value = getattr(result, attr)
    if attr == "threads" and value is None:
        return "default"
    if attr == "options":
        return " ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def threads_used(result: Result) -> int | None:
    """The threads the cell's framework reported using (None: not reported, or no worker ran)."""
    used = (result.provenance.get("worker") or {}).get("threads_used")
    return used if isinstance(used, int) else None


def cell_warnings(result: Result) -> list[str]:
    """Every warning on the cell's time or energy, in the order they were attached: the record's own,
    and those a record from before the quality gate implies (one window: spread unknown)."""
    warnings = list(result.warnings)
    if result.time_per_iter_ms is not None and len(result.windows) == 1 and ONE_WINDOW not in warnings:
        warnings.append(ONE_WINDOW)
    return warnings


def _no_figure_warning(result: Result, domain: str) -> str | None:
    """The cell's warning that already says why ``domain`` has no figure (with the windows it concerns), so
    the table points to that one note instead of printing the same reason twice."""
    return next((w for w in result.warnings if w.startswith(f"{domain}: no figure: ")), None)


def is_noisy(result: Result) -> bool:
    return bool((result.quality or {}).get("noisy"))


def status_text(result: Result, note: Callable[[str], str]) -> str:
    """The status column: the status, ``noisy`` where the quality gate marked the cell, the reason and
    every warning as footnote markers (the texts go once under the table)."""
    text = result.status + (" noisy" if is_noisy(result) else "")
    markers = ([note(result.reason)] if result.reason else []) + [note(w) for w in cell_warnings(result)]
    return f"{text} {''.join(markers)}" if markers else text


def _unavailable_here(reason: str | None) -> str:
    """Why a row has no energy, as a table shows it: the reasons of meters that could apply here."""
    from cnnbench.meters.session import reasons_here

    return reasons_here(reason) if reason else "no meter reading"


def results_table(results: list[Result], tablefmt: str = "simple") -> str:
    """The comparison table; axes that are the same in every row go into a header line, reasons into
    numbered notes under the table, so the table stays narrow enough to read."""
    from tabulate import tabulate

    if not results:
        return "no results"
    varying = [(attr, head) for attr, head in AXES if len({axis_value(r, attr) for r in results}) > 1]
    fixed = [(head, axis_value(results[0], attr)) for attr, head in AXES
             if (attr, head) not in varying and not (attr == "options" and not results[0].options)]
    if not varying:
        varying = [AXES[0]]
    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    # the threads each cell really used, wherever they differ between cells or from what was asked
    used = {threads_used(r) for r in results if threads_used(r) is not None}
    show_used = len(used) > 1 or any(
        threads_used(r) is not None and r.threads is not None and threads_used(r) != r.threads for r in results)
    metered = any(r.energy_total for r in results)
    dynamic = any(r.energy_total and r.energy_total.get("dynamic_energy_per_image_j") is not None for r in results)
    shares = any(r.energy_total and r.energy_total.get("cpu_share") is not None for r in results)
    rows = []
    for r in results:
        row = [axis_value(r, attr) for attr, _ in varying]
        if r.time_per_iter_ms is not None:
            # one window has no spread to show: "± ?" and its footnote, never a reassuring "± 0.00"
            spread = " ± ?" if len(r.windows) == 1 or r.time_per_iter_ms_stdev is None else f" ± {r.time_per_iter_ms_stdev:.2f}"
            row += [f"{r.time_per_iter_ms:,.2f}{spread}", _fmt(r.images_per_s, 1), _fmt(r.gflops_per_s, 1)]
        else:
            row += ["-", "-", "-"]
        total = r.energy_total
        if total:
            partial = f" {note('without ' + total['missing'])}" if total.get("missing") else ""
            row += [f"{total['energy_per_image_j']:.4g}{partial}", f"{total['power_w']:.1f}", total["method"]]
            if dynamic:
                value = total.get("dynamic_energy_per_image_j")
                row.append("-" if value is None else f"{value:.4g}")
            if shares:
                row.append("-" if total.get("cpu_share") is None else f"{total['cpu_share']:.0%}")
            row.append(", ".join(
                f"{d} {e['energy_per_image_j']:.3g}" if e.get("energy_per_image_j") is not None
                else f"{d} error {note(_no_figure_warning(r, d) or e.get('error') or 'no reading')}"
                for d, e in r.energy.items()
            ))
        elif r.status == "ok":
            row.append(f"unavailable {note(_unavailable_here(r.energy_unavailable))}")
            row += [""] * ((3 + dynamic + shares) if metered else 0)
        else:
            row.append("-")
            row += [""] * ((3 + dynamic + shares) if metered else 0)
        if show_used:
            row.insert(len(varying), "-" if threads_used(r) is None else str(threads_used(r)))
        row.append(status_text(r, note))
        rows.append(row)
    energy_heads = ["energy J/image"]
    if metered:
        energy_heads = ["J/image", "W", "method"] + (["above idle J/image"] if dynamic else []) + (
            ["CPU share"] if shares else []) + ["by domain J/image"]
    headers = [head for _, head in varying] + (["threads used"] if show_used else []) + [
        "ms/iter (median ± sd)",
        "images/s",
        "GFLOP/s",
        *energy_heads,
        "status",
    ]
    lines = []
    if fixed:
        lines.append("  ".join(f"{head}: {value}" for head, value in fixed))
        if tablefmt == "github":
            lines.append("")  # a paragraph of its own in Markdown
    lines.append(tabulate(rows, headers=headers, disable_numparse=True, colalign=None, tablefmt=tablefmt))
    # In Markdown, lines run together into one paragraph: each note and legend is a list item of its own.
    item = "- " if tablefmt == "github" else ""
    if notes:
        lines.append("")
        lines.extend(f"{item}[{i}] {text}" for i, text in enumerate(notes, 1))
    legend_start = len(lines)
    if metered:
        lines.append(
            "J/image and W: package + DRAM + the run's GPU over the timed windows; method: counter (energy "
            "counter), integrated (power samples) or estimated; above idle: minus the idle power measured first."
        )
    if any(r.gflops_per_s is not None for r in results):
        lines.append(
            "GFLOP/s: the spec's counted training FLOPs (2 x multiply-adds of conv and fc, forward and backward) "
            "per second of median iteration time."
        )
    lines[legend_start:] = [item + line for line in lines[legend_start:]]
    return "\n".join(lines)


def results_json(results: list[Result], extra: dict[str, Any] | None = None) -> str:
    document = {"schema_version": SCHEMA_VERSION, **(extra or {}), "results": [r.to_dict() for r in results]}
    return json.dumps(document, indent=2, default=str)


#: The flat columns of ``--format csv``: one row per cell, energy per domain in columns of its own.
CSV_COLUMNS = (
    "framework", "network", "batch_size", "device", "precision", "kernels", "threads", "options", "status", "reason",
    "time_per_iter_ms", "time_per_iter_ms_stdev", "time_per_iter_ms_min", "time_per_iter_ms_max", "windows",
    "iterations", "images_per_s", "gflops_per_s", "energy_per_image_j", "power_w", "energy_method",
    "dynamic_energy_per_image_j", "cpu_share", "energy_missing", "energy_unavailable", "peak_memory_bytes",
    "peak_memory_kind",
    "framework_version", "threads_used", "cpu_model", "cv", "noisy", "warnings",
)

#: The columns above that hold words; the others (and each domain's figures) are numbers.
TEXT_COLUMNS = ("framework", "network", "device", "precision", "kernels", "options", "status", "reason",
                "energy_method", "energy_missing", "energy_unavailable", "peak_memory_kind", "framework_version", "cpu_model",
                "noisy", "warnings")

#: Columns that hold whole numbers.
INTEGER_COLUMNS = ("batch_size", "threads", "windows", "iterations", "peak_memory_bytes", "threads_used")


def flat_rows(results: list[Result]) -> list[dict[str, Any]]:
    """One flat dict per cell (the CSV columns, plus ``<domain>_energy_per_image_j``, ``<domain>_power_w``
    and ``<domain>_method`` per energy domain); None where a cell lacks a figure: unmeasured, never 0."""
    domains = sorted({d for r in results for d in r.energy})
    rows = []
    for r in results:
        total = r.energy_total or {}
        worker = r.provenance.get("worker") or {}
        host = r.provenance.get("host") or {}
        row: dict[str, Any] = {
            **{attr: getattr(r, attr) for attr in CSV_COLUMNS if hasattr(r, attr)},
            "options": " ".join(f"{k}={v}" for k, v in r.options.items()),
            "windows": len(r.windows) or None,
            "iterations": sum(int(w["iterations"]) for w in r.windows) or None,
            "energy_per_image_j": total.get("energy_per_image_j"),
            "power_w": total.get("power_w"),
            "energy_method": total.get("method"),
            "dynamic_energy_per_image_j": total.get("dynamic_energy_per_image_j"),
            "cpu_share": total.get("cpu_share"),
            "energy_missing": total.get("missing"),
            "framework_version": worker.get("framework_version"),
            "threads_used": worker.get("threads_used"),
            "cpu_model": host.get("cpu_model"),
            "cv": (r.quality or {}).get("cv"),
            # "" where the gate did not assess the cell: unknown, not clean
            "noisy": ("yes" if is_noisy(r) else "no") if r.quality else None,
            "warnings": " | ".join(cell_warnings(r)) or None,
        }
        for d in domains:
            entry = r.energy.get(d) or {}
            row[f"{d}_energy_per_image_j"] = entry.get("energy_per_image_j")
            row[f"{d}_power_w"] = entry.get("power_w")
            row[f"{d}_method"] = entry.get("method")
        rows.append({column: row.get(column) for column in list(CSV_COLUMNS) + [
            f"{d}_{k}" for d in domains for k in ("energy_per_image_j", "power_w", "method")]})
    return rows


def results_csv(results: list[Result]) -> str:
    """CSV of ``flat_rows``; empty fields where a cell lacks a figure."""
    import csv
    import io

    rows = flat_rows(results)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = list(rows[0]) if rows else list(CSV_COLUMNS)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if row[column] is None else row[column] for column in header])
    return out.getvalue()
