"""``cnnbench layers``: time and energy by layer and by layer type (the paper's Fig. 5), with the check that
the layers add up to the whole network's training step.

Every layer of the network runs alone in one worker, forward and backward separately, in timed windows
the meters integrate; then the whole network's step in the same worker (``cnnbench.execution.layer_timing``). The
axes take one value each; the measurement flags mean what they mean for ``run``.

Exit codes as for ``run``: 0 when the layers were measured, or the framework cannot run single layers
(``unsupported``: a status, said in one line, not a failure); 1 when the worker failed (error, oom,
timeout); 2 for bad usage; 130 / 143 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cnnbench.cli.options import add_measurement, add_option, add_python
from cnnbench.config import PRECISIONS, memory_size, positive_float
from cnnbench.errors import UsageError, interrupted_code
from cnnbench.planning.requests import MAX_MIN_TIME_S, MAX_TIMEOUT_S, LayersRequest

DEFAULTS = LayersRequest()

#: The flags that take one value here (``compare`` is the command for grids).
_SINGLE = (("batch_size", "--batch-size"), ("device", "--device"), ("precision", "--precision"),
           ("kernels", "--kernels"), ("threads", "--threads"))


def add_layers_parser(sub) -> None:
    p = sub.add_parser("layers", help="time and energy by layer and by layer type (the paper's Fig. 5)",
                       description="Run every layer of the network alone, forward and backward, then the whole "
                                   "training step in the same worker: time and energy per layer and per layer type, "
                                   "and whether the layers add up to the network.")
    p.add_argument("--framework", metavar="F", help="framework name (see cnnbench list); required unless --preset")
    p.add_argument("--preset", metavar="NAME", help="layers: the paper's Fig. 5 (caffe, alexnet), scaled to this "
                                                     "machine; flags given as well override its settings")
    p.add_argument("--network", metavar="N", default=DEFAULTS.network,
                   help=f"network name or spec file (default {DEFAULTS.network})")
    p.add_argument("--batch-size", metavar="B", help="images per iteration; default: the network's")
    p.add_argument("--device", metavar="D", help="cpu, cuda or cuda:N; default: cuda if an NVIDIA GPU is present, else cpu")
    p.add_argument("--precision", metavar="P", default=DEFAULTS.precision,
                   help=f"{', '.join(PRECISIONS)} (default {DEFAULTS.precision})")
    p.add_argument("--kernels", metavar="K", help="vendor (cuDNN/oneDNN) or native (im2col+GEMM); default: the "
                                                  "framework's first")
    p.add_argument("--threads", metavar="T", help="compute threads: a number, physical or logical; default: the framework's")
    add_python(p)
    add_option(p)
    add_measurement(p.add_argument_group("measurement (per layer and direction, and for the whole network)"),
                    repeats="timed windows", timeout="seconds for the whole layer run", worker="the layer run's worker",
                    meter_examples="rapl,nvml", idle="measured first, for above-idle energy", cooldown="before the run")
    p.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    p.add_argument("--plot", metavar="FILE", help="write the breakdown by layer type as a figure (.png, .svg or .pdf)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")


def cmd_layers(args: argparse.Namespace) -> int:
    from cnnbench.cli.grid import request
    from cnnbench.execution.cooldown import Cooldown, parse_cooldown
    from cnnbench.execution.layer_timing import progress_events, run_layers
    from cnnbench.execution.progress import Progress
    from cnnbench.execution.session import meters_record, open_meters, start_meters
    from cnnbench.errors import Terminated
    from cnnbench.planning.cells import plan, pythons_for
    from cnnbench.plugins import get_host

    req = request(args, LayersRequest)
    if req.preset:
        from cnnbench.planning.presets import apply_preset

        apply_preset(req, "layers", req.given)
    if not req.framework:
        raise UsageError("cnnbench layers: --framework is required (or --preset layers)")
    for attr, flag in _SINGLE:
        value = getattr(req, attr)
        if value is not None and "," in value:
            raise UsageError(f"{flag} takes one value with 'layers', not '{value}'")
    host = get_host()
    (cell,), measurement = plan(req, host, single=True)
    if req.plot:
        from cnnbench.results.plots import check_figure_path

        check_figure_path(req.plot)  # before minutes of measuring, not after
    python = pythons_for(req.python, [cell.config.framework], host).get(cell.config.framework)
    timeout = positive_float("--timeout", req.timeout, MAX_TIMEOUT_S)
    idle_s = positive_float("--idle", req.idle, MAX_MIN_TIME_S, allow_zero=True)
    memory_limit = memory_size("--memory-limit", req.memory_limit) if req.memory_limit else None
    cooldown = parse_cooldown(req.cooldown)
    meters = open_meters(req.meters, host)
    show = sys.stderr.isatty() and not args.json and not args.quiet
    progress = Progress(len(cell.spec.layers) + 1, sys.stderr, enabled=show)
    try:
        start_meters(meters, idle_s, progress.say)
        waited = None
        if cooldown is not None:
            waited = Cooldown(cooldown, meters.gpu_temperatures if meters.domains else None,
                              lambda text: print(text, file=sys.stderr)).wait()
        report = run_layers(cell, measurement, host, timeout=timeout, meters=meters, python=python,
                            memory_limit=memory_limit,
                            on_event=progress_events(progress, len(cell.spec.layers) + 1))
    except (KeyboardInterrupt, Terminated) as exc:
        print("cnnbench: layers: interrupted; nothing was measured to the end", file=sys.stderr)
        return interrupted_code(exc)
    finally:
        progress.close()
        meters.close()
    if waited is not None:
        report["cooldown"] = waited
    report["meters"] = meters_record(meters, idle_s)
    report["meters"]["idle_s"] = report["meters"].pop("idle_s")  # last, where the layers document has it
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    elif report["status"] == "ok":
        print(layers_text(report))
    if report["status"] != "ok":
        # One line, whatever went wrong; the JSON document (if asked for) has the details.
        print(f"cnnbench: layers: {report['framework']}: {report['status']}: {report['reason']}", file=sys.stderr)
        return 1 if report["status"] in ("error", "oom", "timeout") else 0
    if req.plot:
        from cnnbench.results.plots import save_layers_figure

        save_layers_figure(report, req.plot)
        print(f"figure written to {req.plot}", file=sys.stderr)
    return 0


# -- the tables -----------------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    from cnnbench.execution.layer_timing import fmt_ms

    return fmt_ms(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def layers_text(report: dict[str, Any]) -> str:
    """The per-layer table, the by-type table and the coherence line of a report (``status`` ok)."""
    from tabulate import tabulate

    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    metered = report["totals"]["total"]["energy_per_image_j"] is not None
    unavailable = report.get("energy_unavailable") or "some layer has no energy reading"

    def energy(entry: dict[str, Any]) -> list[str]:
        if entry["energy_per_image_j"] is None:
            return [f"unavailable {note(unavailable)}"] + (["", ""] if metered else [])
        return [f"{entry['energy_per_image_j']:.4g}", _pct(entry["energy_pct"]),
                "-" if entry["power_w"] is None else f"{entry['power_w']:.1f}"]

    heads = ["J/image", "energy %", "W"] if metered else ["energy J/image"]
    rows = []
    for layer in report["layers"]:
        backward = "skipped" if "skipped" in layer["backward"] else _ms(layer["backward"]["time_ms"])
        rows.append([layer["name"], layer["type"], _ms(layer["forward"]["time_ms"]), backward,
                     _ms(layer["time_ms"]), _pct(layer["time_pct"]), *energy(layer)])
    totals = report["totals"]
    total_row = ["total", "", _ms(totals["forward"]["time_ms"]), _ms(totals["backward"]["time_ms"]),
                 _ms(totals["total"]["time_ms"]), _pct(totals["total"]["time_pct"]), *energy(totals["total"])]
    rows.append(total_row)
    threads = report["threads"] or "default"
    lines = [f"framework: {report['framework']}  network: {report['network']}  batch: {report['batch_size']}  "
             f"device: {report['device']}  precision: {report['precision']}  kernels: {report['kernels']}  "
             f"threads: {threads}", "", "by layer"]
    timing = ["forward ms", "backward ms", "ms/iter", "time %"]
    lines.append(tabulate(rows, headers=["layer", "type", *timing, *heads], disable_numparse=True))
    rows = [[t["type"], str(len(t["layers"])), _ms(t["forward"]["time_ms"]), _ms(t["backward"]["time_ms"]),
             _ms(t["total"]["time_ms"]), _pct(t["total"]["time_pct"]), *energy(t["total"])] for t in report["types"]]
    rows.append(["total", str(len(report["layers"])), *total_row[2:]])
    lines += ["", "by layer type"]
    lines.append(tabulate(rows, headers=["type", "layers", *timing, *heads], disable_numparse=True))
    lines += ["", f"coherence: {report['coherence']['text']}"]
    if report["coherence"].get("warning"):
        lines.append(f"warning: {report['coherence']['warning']}")
    lines.append("times: median over the windows of each window's time per iteration; a sum is the sum of medians. "
                 "time % and energy %: share of the sum over all layers. other: dropout, flatten and the softmax "
                 "loss (timed, as the training step computes it too).")
    if metered:
        lines.append("J/image and W: package + DRAM + the run's GPU over each layer's timed windows; W of a sum: "
                     "its energy per iteration over its time per iteration.")
    lines += report.get("notes") or []
    if notes:
        lines.append("")
        lines.extend(f"[{i}] {text}" for i, text in enumerate(notes, 1))
    return "\n".join(lines)
