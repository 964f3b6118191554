"""``cnnbench dvfs``: sweep GPU application clocks and power limits (or, with ``--cpu``, the CPU's governor and
maximum frequency), run one workload at each setting, and find the energy valley of the paper's Fig. 8.

    NEVER pass ``--allow-clock-changes`` on a shared or lent machine. Without it this command only reads and
    plans; with it, it changes settings of the whole GPU (or CPU) that affect every other user.

Each setting's workload is one ``cnnbench run`` through ``grid.execute``, so each setting is its own stored
run (its stored command line names the setting), with idle power measured at that setting. Restoring the
original settings on every way out is ``cnnbench.system.dvfs_state.sweep``'s job; ``--restore`` does it from the state
file after the host itself died.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

from cnnbench.cli.options import add_axes
from cnnbench.config import positive_int
from cnnbench.errors import UsageError
from cnnbench.planning.requests import DEFAULT_MAX_SETTINGS, DvfsRequest

DEFAULTS = DvfsRequest()
NEVER_SHARED = "never pass --allow-clock-changes on a shared or lent machine: the settings are the whole machine's"


def add_dvfs_parser(sub) -> None:
    p = sub.add_parser(
        "dvfs", help="GPU clock / power-limit sweep (reads and plans unless allowed)",
        description="Plan (always) and run (only with --allow-clock-changes) a sweep of GPU application clocks "
                    "and power limits, or with --cpu of the CPU governor and maximum frequency, with one workload "
                    "at each setting; the original settings are restored afterwards. NEVER pass "
                    "--allow-clock-changes on a shared or lent machine.")
    p.add_argument("--framework", metavar="F", help="the workload's framework (needed to run the sweep)")
    p.add_argument("--network", metavar="N", default=DEFAULTS.network, help=f"network (default {DEFAULTS.network})")
    add_axes(p, single=True)
    g = p.add_argument_group("the sweep")
    g.add_argument("--clocks", metavar="MEM:SM,...", help="memory:graphics MHz pairs (or current, default); "
                   "default: every memory clock with an evenly spread subset of its graphics clocks")
    g.add_argument("--max-settings", metavar="N", default=DEFAULTS.max_settings,
                   help=f"clock settings in the default plan (default {DEFAULT_MAX_SETTINGS})")
    g.add_argument("--power-limits", metavar="W,...", help="power limits in watts, each with every clock pair")
    g.add_argument("--cpu", action="store_true", help="sweep the CPU's cpufreq governor and maximum frequency instead")
    g.add_argument("--governors", metavar="G,...", help="with --cpu: governors (default: the current one)")
    g.add_argument("--cpu-max-freqs", metavar="MHZ,...", help="with --cpu: maximum frequencies in MHz")
    g.add_argument("--allow-clock-changes", action="store_true",
                   help="apply the plan and run the workload at each setting (root); NEVER on a shared or lent machine")
    g.add_argument("--restore", action="store_true",
                   help="put back the settings a sweep that died (e.g. SIGKILL) left changed, from its state file")
    p.add_argument("--preset", metavar="NAME", help="the paper's Fig. 8 (dvfs), scaled to this machine")


# -- the command --------------------------------------------------------------------------------------


def cmd_dvfs(args: argparse.Namespace) -> int:
    from cnnbench.cli.grid import request

    if args.restore:
        return _cmd_restore()
    output = args
    args = request(args, DvfsRequest)
    args.json, args.quiet = output.json, output.quiet  # how this command prints, not part of the request
    if args.preset:
        from cnnbench.planning.presets import apply_preset

        apply_preset(args, "dvfs", args.given)
    max_settings = positive_int("--max-settings", args.max_settings)
    for flag, attr, needs_cpu in (("--clocks", "clocks", False), ("--power-limits", "power_limits", False),
                                  ("--governors", "governors", True), ("--cpu-max-freqs", "cpu_max_freqs", True)):
        if getattr(args, attr) and needs_cpu != args.cpu:
            raise UsageError(f"{flag} is for {'--cpu sweeps' if needs_cpu else 'GPU sweeps (leave out --cpu)'}")
    if not args.cpu:
        args.device = args.device or "cuda"
        if not args.device.startswith("cuda"):
            raise UsageError(f"a GPU sweep runs its workload on the GPU: --device cuda or cuda:N, not "
                             f"'{args.device}' (the CPU side: cnnbench dvfs --cpu)")
    workload = _workload(args)
    from cnnbench.system.dvfs import identity

    who = identity()
    with contextlib.ExitStack() as stack:
        side = _cpu_side(args, max_settings, who) if args.cpu else _gpu_side(args, max_settings, who, stack)
        if not args.allow_clock_changes:
            _print_plan(args, side, workload)
            return 0
        if workload is None:
            raise UsageError("--allow-clock-changes runs a workload at each setting: give --framework F "
                             "(cnnbench list names them)")
        if side["missing"]:
            raise UsageError(f"cannot apply the plan: {'; '.join(side['missing'])}; nothing was changed")
        _precheck(args)
        return _run_sweep(args, side, workload)


def _workload(args: argparse.Namespace) -> dict[str, Any] | None:
    """The one cell run at each setting (checked now, before anything changes); None without --framework."""
    if not args.framework:
        return None
    from cnnbench.planning.cells import plan
    from cnnbench.plugins import get_host

    cells, measurement = plan(args, get_host(), single=True)
    config = cells[0].config
    m = measurement
    timing = f"{m.iterations} iterations" if m.iterations else f">= {m.min_time:g} s"
    return {"config": config, "cells": len(cells), "label": config.label(),
            "measurement": f"warm-up {m.warmup}, {m.repeats} windows of {timing} each, idle {args.idle} s and "
                           f"timeout {args.timeout} s per setting",
            "argv": ["dvfs", "--framework", config.framework, "--network", args.network, "--batch-size",
                     str(config.batch_size), "--device", config.device, "--precision", config.precision,
                     "--kernels", config.kernels, "--warmup", str(m.warmup), "--min-time", f"{m.min_time:g}",
                     "--repeats", str(m.repeats)]
                    + (["--iterations", str(m.iterations)] if m.iterations else [])
                    + (["--threads", str(config.threads)] if config.threads else [])
                    + [arg for k, v in config.options for arg in ("--option", f"{k}={v}")]}


def _gpu_side(args, max_settings: int, who, stack: contextlib.ExitStack) -> dict[str, Any]:
    from cnnbench.system import dvfs, dvfs_state

    nvml = stack.enter_context(dvfs.nvml_library())
    gpus = dvfs.read_gpus(nvml)
    gpu = dvfs.target_gpu(gpus, args.device)
    settings = dvfs.plan(gpu, args.clocks, args.power_limits, max_settings)
    clocks = any(s.memory_mhz is not None for s in settings)
    power = any(s.power_limit_w is not None for s in settings)
    return {"kind": "gpu", "gpus": gpus, "target": gpu, "settings": settings,
            "missing": dvfs.missing_privileges(gpu, who, clocks, power),
            "state": dvfs_state.new_state(gpus=[dvfs_state.gpu_originals(gpu, clocks, power)]),
            "apply": lambda s: dvfs_state.apply_gpu(nvml, gpu, s)}


def _cpu_side(args, max_settings: int, who) -> dict[str, Any]:
    from cnnbench.system import cpufreq, dvfs_state

    policies = cpufreq.read_policies()
    settings = cpufreq.plan(policies, args.governors, args.cpu_max_freqs, max_settings)
    return {"kind": "cpu", "policies": policies, "settings": settings,
            "missing": cpufreq.missing_permissions(policies, who),
            "state": dvfs_state.new_state(cpu=cpufreq.originals(policies)),
            "apply": lambda s: cpufreq.apply(policies, s)}


def _precheck(args) -> None:
    """What would fail in the first setting's run is said now, before anything changes."""
    from cnnbench.execution.session import open_store

    store = open_store(args)
    if store is not None:
        store.close()
    if args.meters not in ("auto", "none"):
        from cnnbench.execution.session import open_meters

        open_meters(args.meters).close()  # a named meter that cannot be read: an error before any change
    from cnnbench.execution.cooldown import parse_cooldown

    parse_cooldown(args.cooldown)


# -- the plan -----------------------------------------------------------------------------------------


def _setting_cells(side: dict[str, Any], setting: Any) -> list[str]:
    if side["kind"] == "cpu":
        return [setting.governor, str(setting.max_mhz)]
    gpu = side["target"]
    power = f"{setting.power_limit_w:g}" if setting.power_limit_w is not None else (
        f"{gpu.power_limit_w:g} (as is)" if gpu.power_limit_w is not None else "as is")
    if setting.memory_mhz is None:
        return ["as is", "as is", power]
    return [str(setting.memory_mhz), str(setting.graphics_mhz), power]


def _heads(side: dict[str, Any]) -> list[str]:
    return ["governor", "max MHz"] if side["kind"] == "cpu" else ["memory MHz", "graphics MHz", "power limit W"]


def _print_plan(args, side: dict[str, Any], workload: dict[str, Any] | None) -> None:
    from tabulate import tabulate

    settings = side["settings"]
    if args.json:
        print(json.dumps(_plan_json(side, workload), indent=2))
        return
    if side["kind"] == "gpu":
        for gpu in side["gpus"]:
            _print_gpu(gpu, gpu is side["target"], args.device)
        where = f"GPU {side['target'].index} ({args.device})"
    else:
        _print_cpu(side["policies"])
        where = f"every CPU ({len(side['policies'])} cpufreq policies)"
    print(f"\nplan: {len(settings)} settings on {where}")
    rows = [[i, *_setting_cells(side, s)] for i, s in enumerate(settings, 1)]
    print(tabulate(rows, headers=["#", *_heads(side)], disable_numparse=True))
    if workload:
        print(f"\nworkload: {workload['label']}; {workload['measurement']}")
        print(f"estimated cells: {len(settings) * workload['cells']} ({len(settings)} settings x "
              f"{workload['cells']} cell; each setting is stored as its own run)")
    else:
        print("\nworkload: none given (--framework F, with --network, --batch-size, ... as for cnnbench run)")
        print(f"estimated cells: {len(settings)} ({len(settings)} settings x 1 cell) once a workload is given")
    print("\nnothing was changed: without --allow-clock-changes, cnnbench dvfs only reads and plans.")
    from cnnbench.system.dvfs_state import read_state, state_path

    if read_state() is not None:
        print(f"WARNING: a sweep left changed settings behind ({state_path()}): the settings shown above may be "
              "its leftovers; put the originals back with: cnnbench dvfs --restore")
    if side["missing"]:
        print("to apply it, this process lacks: " + "; ".join(side["missing"]))
    else:
        print("this process has the privileges to apply it (with --allow-clock-changes).")
    print(f"NOTE: {NEVER_SHARED}.")


def _print_gpu(gpu, target: bool, device: str) -> None:
    import textwrap

    mark = f"  <- {device}, the workload's GPU" if target else ""
    print(f"GPU {gpu.index}: {gpu.name} ({gpu.uuid}, {gpu.pci_bus_id}){mark}")
    if gpu.clocks_error:
        print(f"  application clocks: {gpu.clocks_error}")
    else:
        app, default = gpu.application, gpu.default_application
        print(f"  application clocks now {app[0]}:{app[1]} MHz (memory:graphics), default {default[0]}:{default[1]} MHz"
              + ("" if gpu.clocks_restricted is not False else "; NVML lets any user set them"))
        print("  supported memory:graphics clocks (MHz):")
        for mem, graphics in gpu.clocks.items():
            print(textwrap.fill(", ".join(map(str, graphics)), width=100, initial_indent=f"    {mem}: ",
                                subsequent_indent=" " * (6 + len(str(mem)))))
    if gpu.power_error:
        print(f"  power limit: {gpu.power_error}")
    else:
        print(f"  power limit now {gpu.power_limit_w:g} W, default {gpu.power_default_w:g} W, "
              f"range {gpu.power_min_w:g}-{gpu.power_max_w:g} W")


def _print_cpu(policies) -> None:
    groups: dict[str, list] = {}
    for p in policies:
        listed = ", ".join(str(f // 1000) for f in p.frequencies) if p.frequencies else "not listed by the driver"
        text = (f"driver {p.driver or '?'}): governor {p.governor} (available: {', '.join(p.governors)}); max "
                f"{p.scaling_max_khz // 1000} MHz of {p.min_khz // 1000}-{p.max_khz // 1000} MHz; frequencies "
                f"(MHz): {listed}")
        groups.setdefault(text, []).append(p)
    for text, group in groups.items():  # one line per kind of policy: a 64-core machine has 64 alike
        cpus = ",".join(p.cpus for p in group)
        names = group[0].name if len(group) == 1 else f"{len(group)} policies, {group[0].name}-{group[-1].name}"
        print(f"CPU {names} (CPUs {cpus}, {text}")


def _plan_json(side: dict[str, Any], workload: dict[str, Any] | None) -> dict[str, Any]:
    from dataclasses import asdict

    data: dict[str, Any] = {"side": side["kind"], "applied": False, "missing_privileges": side["missing"],
                            "plan": [asdict(s) for s in side["settings"]],
                            "workload": workload and {"config": workload["config"].to_dict(),
                                                      "measurement": workload["measurement"]},
                            "estimated_cells": len(side["settings"]) * (workload["cells"] if workload else 1)}
    if side["kind"] == "gpu":
        data["gpus"] = [g.to_dict() for g in side["gpus"]]
        data["target_gpu"] = side["target"].index
    else:
        data["policies"] = [p.to_dict() for p in side["policies"]]
    return data


# -- the sweep and its report -------------------------------------------------------------------------


def _run_sweep(args, side: dict[str, Any], workload: dict[str, Any]) -> int:
    from cnnbench import api
    from cnnbench.system import dvfs_state

    settings = side["settings"]
    order = os.environ.get("CUDA_DEVICE_ORDER")
    if side["kind"] == "gpu":
        # cuda:N must be the GPU whose clocks are set: the workers number GPUs the way target_gpu() does.
        if order not in (None, "PCI_BUS_ID"):
            print("cnnbench: CUDA_DEVICE_ORDER set to PCI_BUS_ID for the sweep (cuda:N = NVML's PCI order)",
                  file=sys.stderr)
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    quiet = args.quiet or args.json

    def run(setting, applied):
        index = settings.index(setting) + 1
        if not quiet:
            print(f"cnnbench: setting {index}/{len(settings)}: {setting.label()}", file=sys.stderr)
        run_request = args.but(command="run", preset=None, resume=None, baseline=None,
                               argv=workload["argv"] + setting.flags())
        # the setting goes into each result before it is stored, so stored runs say what they ran at
        return api.execute(run_request,
                       show_progress=sys.stderr.isatty() and not quiet,
                       annotate=lambda result: result.provenance.__setitem__("dvfs", {"side": side["kind"], **applied}))

    try:
        outcome = dvfs_state.sweep(side["state"], settings, side["apply"], run)
    finally:
        if order is None:
            os.environ.pop("CUDA_DEVICE_ORDER", None)
        else:
            os.environ["CUDA_DEVICE_ORDER"] = order
    rows = setting_rows(side, outcome.done)
    if outcome.error and not rows and not outcome.interrupted:
        # refused at the first setting: no table, one line (exit 2 when it is a missing privilege)
        _say_restored(outcome.restored, outcome.restore_errors)
        if outcome.permission and not outcome.restore_errors:
            after = "the originals are back" if outcome.restored else "nothing was changed"
            raise UsageError(f"{outcome.error}; {after}")
        print(f"cnnbench: error: {outcome.error}", file=sys.stderr)
        return 1
    valley = energy_valley(rows)
    if args.json:
        print(json.dumps(_sweep_json(side, rows, valley, outcome), indent=2, default=str))
    else:
        print(sweep_table(side, rows, valley))
    _say_restored(outcome.restored, outcome.restore_errors)
    if outcome.error:
        print(f"cnnbench: error: {outcome.error}; the sweep stopped there", file=sys.stderr)
    sessions = [r["session"] for r in rows if r["session"] is not None]
    if sessions and not args.json:
        print(f"stored as run{'s' if len(sessions) > 1 else ''} {', '.join(map(str, sessions))} in "
              f"{outcome.done[0][2].db_path}", file=sys.stderr)
    if outcome.interrupted:
        finished = sum(r["result"] is not None for r in rows)
        print(f"cnnbench: interrupted; {finished} of {len(settings)} settings finished", file=sys.stderr)
        return outcome.interrupted
    failed = outcome.restore_errors or outcome.error or any(r["failed"] for r in rows)
    return 1 if failed else 0


def _say_restored(done: list[str], errors: list[str]) -> None:
    for line in done:
        print(f"cnnbench: restored {line}", file=sys.stderr)
    for line in errors:
        print(f"cnnbench: NOT restored: {line}", file=sys.stderr)
    if errors:
        from cnnbench.system.dvfs_state import state_path

        print(f"cnnbench: the originals are kept in {state_path()}; fix the cause and run: cnnbench dvfs --restore",
              file=sys.stderr)


def setting_rows(side: dict[str, Any], done: list) -> list[dict[str, Any]]:
    """One row per finished setting: its clocks, the workload's speed and energy, and the energy-delay product."""
    rows = []
    for setting, applied, grid_run in done:
        result = grid_run.results[0] if grid_run.results else None
        row: dict[str, Any] = {"setting": len(rows) + 1, "label": setting.label(),
                               "cells": _setting_cells(side, setting), "group": None, "x": None, "applied": applied, "session": grid_run.session_id,
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
            energy = [f"unavailable {note(r['energy_unavailable'])}", "-", "-"]
        else:
            energy = ["-", "-", "-"]
        status = r["status"] if not r["reason"] else f"{r['status']} {note(r['reason'])}"
        table.append([r["setting"], *r["cells"], _fmt(r["time_per_iter_ms"], ",.2f"), _fmt(r["images_per_s"], ",.1f"),
                      *energy, status, " ".join(marks)])
    heads = ["#", *_heads(side), "ms/iter", "images/s", "J/image", "W", "EDP J/img x s/img", "status", ""]
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


def _sweep_json(side: dict[str, Any], rows: list[dict[str, Any]], valley: dict[str, Any], outcome) -> dict[str, Any]:
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


# -- --restore ----------------------------------------------------------------------------------------


def _cmd_restore() -> int:
    import socket

    from cnnbench.system import dvfs_state

    state = dvfs_state.read_state()
    path = dvfs_state.state_path()
    if state is None:
        print(f"nothing to restore: no dvfs state file at {path}")
        return 0
    if state.get("hostname") != socket.gethostname():
        raise UsageError(f"the state file {path} was written on host {state.get('hostname')}: run "
                         "'cnnbench dvfs --restore' there")
    pid = state.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and dvfs_state.alive(pid):
        raise UsageError(f"the sweep that wrote {path} (pid {pid}) is still running and restores on its own; "
                         f"stop it with 'kill {pid}' (it restores first)")
    with dvfs_state.deferred_signals():
        done, errors = dvfs_state.restore(state)
    print(f"restored from {path} (left by pid {pid}, started {state.get('started')}):")
    for line in done:
        print(f"  {line}")
    if not done and not errors:
        print("  (it recorded no change)")
    for line in errors:
        print(f"cnnbench: NOT restored: {line}", file=sys.stderr)
    if errors:
        print(f"cnnbench: {path} is kept; fix the cause and run cnnbench dvfs --restore again", file=sys.stderr)
        return 1
    return 0
