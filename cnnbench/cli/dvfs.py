"""``cnnbench dvfs``: sweep GPU application clocks and power limits (or, with ``--cpu``, the CPU's governor and
maximum frequency), run one workload at each setting, and find the energy valley of the paper's Fig. 8.

    NEVER pass ``--allow-clock-changes`` on a shared or lent machine. Without it this command only reads and
    plans; with it, it changes settings of the whole GPU (or CPU) that affect every other user.

Each setting's workload is one ``cnnbench run`` through ``cnnbench.api.execute``, so each setting is its own
stored run (its stored command line names the setting), with idle power measured at that setting. Restoring
the original settings on every way out is ``cnnbench.system.dvfs_state.sweep``'s job; ``--restore`` does it
from the state file after the host itself died. The sweep's table and JSON are ``cnnbench.results.sweep``'s.
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
from cnnbench.plural import count
from cnnbench.results.sweep import energy_valley, setting_cells, setting_heads, setting_rows, sweep_json, sweep_table

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
    as_json, quiet = args.json, args.quiet  # how this command prints; the rest is its request
    req = request(args, DvfsRequest)
    if req.preset:
        from cnnbench.planning.presets import apply_preset

        apply_preset(req, "dvfs", req.given)
    max_settings = positive_int("--max-settings", req.max_settings)
    for flag, attr, needs_cpu in (("--clocks", "clocks", False), ("--power-limits", "power_limits", False),
                                  ("--governors", "governors", True), ("--cpu-max-freqs", "cpu_max_freqs", True)):
        if getattr(req, attr) and needs_cpu != req.cpu:
            raise UsageError(f"{flag} is for {'--cpu sweeps' if needs_cpu else 'GPU sweeps (leave out --cpu)'}")
    if not req.cpu:
        req.device = req.device or "cuda"
        if not req.device.startswith("cuda"):
            raise UsageError(f"a GPU sweep runs its workload on the GPU: --device cuda or cuda:N, not "
                             f"'{req.device}' (the CPU side: cnnbench dvfs --cpu)")
    workload = _workload(req)
    from cnnbench.system.dvfs import identity

    who = identity()
    with contextlib.ExitStack() as stack:
        side = _cpu_side(req, max_settings, who) if req.cpu else _gpu_side(req, max_settings, who, stack)
        if not req.allow_clock_changes:
            _print_plan(req, side, workload, as_json)
            return 0
        if workload is None:
            raise UsageError("--allow-clock-changes runs a workload at each setting: give --framework F "
                             "(cnnbench list names them)")
        if side["missing"]:
            raise UsageError(f"cannot apply the plan: {'; '.join(side['missing'])}; nothing was changed")
        _precheck(req)
        return _run_sweep(req, side, workload, as_json, quiet)


def _workload(req: DvfsRequest) -> dict[str, Any] | None:
    """The one cell run at each setting (checked now, before anything changes); None without --framework."""
    if not req.framework:
        return None
    from cnnbench.planning.cells import plan
    from cnnbench.plugins import get_host

    cells, measurement = plan(req, get_host(), single=True)
    config = cells[0].config
    m = measurement
    timing = f"{m.iterations} iterations" if m.iterations else f">= {m.min_time:g} s"
    return {"config": config, "cells": len(cells), "label": config.label(),
            "measurement": f"warm-up {m.warmup}, {m.repeats} windows of {timing} each, idle {req.idle} s and "
                           f"timeout {req.timeout} s per setting",
            "argv": ["dvfs", "--framework", config.framework, "--network", req.network, "--batch-size",
                     str(config.batch_size), "--device", config.device, "--precision", config.precision,
                     "--kernels", config.kernels, "--warmup", str(m.warmup), "--min-time", f"{m.min_time:g}",
                     "--repeats", str(m.repeats)]
                    + (["--iterations", str(m.iterations)] if m.iterations else [])
                    + (["--threads", str(config.threads)] if config.threads else [])
                    + [arg for k, v in config.options for arg in ("--option", f"{k}={v}")]}


def _gpu_side(req: DvfsRequest, max_settings: int, who, stack: contextlib.ExitStack) -> dict[str, Any]:
    from cnnbench.system import dvfs, dvfs_state

    nvml = stack.enter_context(dvfs.nvml_library())
    gpus = dvfs.read_gpus(nvml)
    gpu = dvfs.target_gpu(gpus, req.device)
    settings = dvfs.plan(gpu, req.clocks, req.power_limits, max_settings)
    clocks = any(s.memory_mhz is not None for s in settings)
    power = any(s.power_limit_w is not None for s in settings)
    return {"kind": "gpu", "gpus": gpus, "target": gpu, "settings": settings,
            "missing": dvfs.missing_privileges(gpu, who, clocks, power),
            "state": dvfs_state.new_state(gpus=[dvfs_state.gpu_originals(gpu, clocks, power)]),
            "apply": lambda s: dvfs_state.apply_gpu(nvml, gpu, s)}


def _cpu_side(req: DvfsRequest, max_settings: int, who) -> dict[str, Any]:
    from cnnbench.system import cpufreq, dvfs_state

    policies = cpufreq.read_policies()
    settings = cpufreq.plan(policies, req.governors, req.cpu_max_freqs, max_settings)
    return {"kind": "cpu", "policies": policies, "settings": settings,
            "missing": cpufreq.missing_permissions(policies, who),
            "state": dvfs_state.new_state(cpu=cpufreq.originals(policies)),
            "apply": lambda s: cpufreq.apply(policies, s)}


def _precheck(req: DvfsRequest) -> None:
    """What would fail in the first setting's run is said now, before anything changes."""
    from cnnbench.execution.session import open_store

    store = open_store(req)
    if store is not None:
        store.close()
    if req.meters not in ("auto", "none"):
        from cnnbench.execution.session import open_meters

        open_meters(req.meters).close()  # a named meter that cannot be read: an error before any change
    from cnnbench.execution.cooldown import parse_cooldown

    parse_cooldown(req.cooldown)


# -- the plan -----------------------------------------------------------------------------------------


def _print_plan(req: DvfsRequest, side: dict[str, Any], workload: dict[str, Any] | None, as_json: bool) -> None:
    from tabulate import tabulate

    settings = side["settings"]
    if as_json:
        print(json.dumps(_plan_json(side, workload), indent=2))
        return
    if side["kind"] == "gpu":
        for gpu in side["gpus"]:
            _print_gpu(gpu, gpu is side["target"], req.device)
        where = f"GPU {side['target'].index} ({req.device})"
    else:
        _print_cpu(side["policies"])
        where = f"every CPU ({len(side['policies'])} cpufreq policies)"
    print(f"\nplan: {len(settings)} settings on {where}")
    rows = [[i, *setting_cells(side, s)] for i, s in enumerate(settings, 1)]
    print(tabulate(rows, headers=["#", *setting_heads(side)], disable_numparse=True))
    if workload:
        print(f"\nworkload: {workload['label']}; {workload['measurement']}")
        print(f"estimated cells: {len(settings) * workload['cells']} ({count(len(settings), 'setting')} x "
              f"{count(workload['cells'], 'cell')}; each setting is stored as its own run)")
    else:
        print("\nworkload: none given (--framework F, with --network, --batch-size, ... as for cnnbench run)")
        print(f"estimated cells: {len(settings)} ({count(len(settings), 'setting')} x 1 cell) once a workload is given")
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


def _run_sweep(req: DvfsRequest, side: dict[str, Any], workload: dict[str, Any], as_json: bool, quiet: bool) -> int:
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
    quiet = quiet or as_json

    def run(setting, applied):
        index = settings.index(setting) + 1
        if not quiet:
            print(f"cnnbench: setting {index}/{len(settings)}: {setting.label()}", file=sys.stderr)
        run_request = req.but(command="run", preset=None, resume=None, baseline=None,
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
    if as_json:
        print(json.dumps(sweep_json(side, rows, valley, outcome), indent=2, default=str))
    else:
        print(sweep_table(side, rows, valley))
    _say_restored(outcome.restored, outcome.restore_errors)
    if outcome.error:
        print(f"cnnbench: error: {outcome.error}; the sweep stopped there", file=sys.stderr)
    sessions = [r["session"] for r in rows if r["session"] is not None]
    if sessions and not as_json:
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
