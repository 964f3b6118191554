"""``cnnbench list``: frameworks (available?, version, interpreter, why not), plugin errors, meters, networks
and presets."""

from __future__ import annotations

import argparse
import sys


def add_parsers(sub) -> None:
    p = sub.add_parser("list", help="frameworks (available?, version, why not), plugin errors, networks")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_list(args: argparse.Namespace) -> int:
    import json

    from cnnbench.spec.catalog import all_networks
    from cnnbench.plugins import get_host

    host = get_host()
    from cnnbench.system.envs import env_info, existing

    with_env = set(existing())
    frameworks = []
    for name in host.adapters():
        availability = host.availability(name)
        entry = {
            "name": name,
            "available": availability.available,
            "version": availability.version,
            "reason": availability.reason,
            "install_hint": availability.install_hint,
            "plugin": host.adapter_plugin(name),
            "interpreter": sys.executable,
        }
        if name in with_env:
            # its own environment: what counts is what imports there, not here
            info = env_info(name)
            adapter = host.adapters()[name]
            version = (info.packages or {}).get(adapter.package)
            version = adapter.version_label(version) if version else None
            entry.update(interpreter=info.python, available=bool(info.exists and version), version=version,
                         reason=None if version else (info.problem or f"its environment {info.path} lacks it"))
        frameworks.append(entry)
    from cnnbench.meters import MeterSession

    meters = MeterSession.probe_all(host)
    networks = sorted(all_networks())  # before the failures: a plugin's bad network is one of them
    failures = [f.__dict__ for f in host.failures]
    if args.json:
        from cnnbench.planning.presets import PRESETS

        presets = [{"name": p.name, "figure": p.figure, "question": p.question, "command": p.command,
                    "needs_gpu": p.needs_gpu} for p in PRESETS.values()]
        print(json.dumps({"frameworks": frameworks, "plugin_errors": failures, "meters": meters,
                          "networks": networks, "presets": presets}, indent=2))
        return 0
    from tabulate import tabulate

    rows = [
        [f["name"], "yes" if f["available"] else "no", f["version"] or "-", f["plugin"],
         "this one" if f["interpreter"] == sys.executable else f["interpreter"],
         "" if f["available"] else f["reason"] if f["install_hint"] and f["install_hint"] in (f["reason"] or "")
         else f"{f['reason']}; install: {f['install_hint']}"]
        for f in frameworks
    ]
    print("frameworks")
    print(tabulate(rows, headers=["name", "available", "version", "plugin", "interpreter", "why not"]))
    if failures:
        print("\nplugins that failed to load (skipped)")
        for f in failures:
            print(f"  {f['plugin']} ({f['origin']}): {f['error']}")
    print("\nmeters")
    for m in meters:
        if m["readable"]:
            line = f"  {m['name']}: readable: {', '.join(m['domains'])}"
        else:
            fix = f"; fix: {m['fix']}" if m.get("fix") else ""
            line = f"  {m['name']}: not readable: {m['reason']}{fix}"
        print(line)
        for key, why in (m.get("unavailable") or {}).items():
            if m["readable"]:
                print(f"    {key}: {why}")
        for note in m.get("notes") or []:
            print(f"    note: {note}")
    print("\nnetworks\n  " + ", ".join(networks))
    from cnnbench.planning.presets import preset_lines

    print("\npresets (--preset NAME: the paper's experiments, scaled to this machine)")
    for line in preset_lines():
        print(f"  {line}")
    return 0
