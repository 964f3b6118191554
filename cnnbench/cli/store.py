"""``cnnbench history``, ``cnnbench show RUN``, ``cnnbench report RUN`` and ``cnnbench recommend``: what the
results store holds."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cnnbench.cli.options import add_db
from cnnbench.config import UsageError, check_output_path, positive_int
from cnnbench.plural import count

REPORT_FORMATS = ("md", "csv", "json")
PLOT_KINDS = ("auto", "energy", "batch")


def add_parsers(sub) -> None:
    add_recommend_parser(sub)
    p = sub.add_parser("history", help="the stored runs: when, what, how many cells")
    p.add_argument("--limit", metavar="N", default="20", help="the N newest runs (default 20; 0: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_db(p)

    p = sub.add_parser("show", help="one stored run: its settings and its results table")
    p.add_argument("run", metavar="RUN", help="a run id from 'cnnbench history', latest, or -K (K-th newest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_db(p)

    p = sub.add_parser("report", help="a stored run as Markdown, CSV or JSON, with a figure and a baseline")
    p.add_argument("run", metavar="RUN", help="a run id from 'cnnbench history', latest, or -K (K-th newest)")
    p.add_argument("--format", metavar="F", default="md", help=f"{', '.join(REPORT_FORMATS)} (default md)")
    p.add_argument("--plot", metavar="FILE", help="also draw the figure into FILE (.png, .svg or .pdf)")
    p.add_argument("--kind", metavar="K", default="auto",
                   help=f"the figure: {', '.join(PLOT_KINDS)} (default auto: batch when the run sweeps batch "
                        "sizes, else energy)")
    p.add_argument("--baseline", metavar="OTHER", help="each cell's change in time and energy against run OTHER")
    p.add_argument("-o", "--output", metavar="PATH", help="write the report here instead of stdout")
    add_db(p)


def open_store(args: argparse.Namespace):
    from cnnbench.results.store import Store, default_path

    path = args.db or default_path()
    if not os.path.exists(path):
        raise UsageError(f"no results database at {path}; 'cnnbench run' and 'cnnbench compare' store runs "
                         "there, or give --db PATH")
    return Store(path, create=False)


def cmd_store(args: argparse.Namespace) -> int:
    if args.command == "history":
        return cmd_history(args)
    if args.command == "show":
        return cmd_show(args)
    if args.command == "recommend":
        return cmd_recommend(args)
    return cmd_report(args)


def _when(iso: str | None) -> str:
    return "-" if not iso else iso.replace("T", " ").replace("+00:00", " UTC")


def _cells(session) -> str:
    done = f"{session.cells_stored}/{session.cells_planned}"
    bad = {s: n for s, n in session.statuses.items() if s != "ok"}
    return done + (" (" + ", ".join(f"{n} {s}" for s, n in sorted(bad.items())) + ")" if bad else "")


def cmd_history(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from cnnbench.results.store import default_path

    limit = positive_int("--limit", args.limit, allow_zero=True)
    if not os.path.exists(args.db or default_path()):
        print("[]" if args.json else f"no runs stored in {args.db or default_path()} yet")
        return 0
    with open_store(args) as store:
        sessions = store.sessions(limit or None)
    if args.json:
        print(json.dumps([s.to_dict() for s in sessions], indent=2))
        return 0
    if not sessions:
        print(f"no runs stored in {args.db or 'the results store'} yet")
        return 0
    rows = [[s.id, _when(s.started), s.command, ",".join(s.frameworks) or "-", ",".join(s.networks) or "-",
             _cells(s), s.shown_state] for s in sessions]
    print(tabulate(rows, headers=["run", "started", "command", "frameworks", "networks", "cells", "state"],
                   disable_numparse=True))
    return 0


def _header(session, results) -> list[str]:
    lines = [f"run {session.id}: {session.command}, started {_when(session.started)}, "
             f"{_cells(session)} {'cell' if session.cells_planned == 1 else 'cells'}, {session.shown_state}",
             f"command: {session.command_line()}"]
    host = next((r.provenance.get("host") for _, r in results if r.provenance.get("host")), None)
    if host:
        cpu = host.get("cpu_model") or host.get("machine")
        topology = f"{host.get('physical_cores')} cores / {host.get('logical_cpus')} threads"
        lines.append(f"machine: {session.hostname}, {cpu}, {topology}, {host.get('platform')}")
    measurement = session.settings.get("measurement")
    if measurement:
        lines.append("measurement: " + ", ".join(f"{k} {v}" for k, v in measurement.items() if v is not None))
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    from cnnbench.results.report import results_json, results_table

    with open_store(args) as store:
        session = store.resolve(args.run)
        stored = store.results(session.id)
    results = [r for _, r in stored]
    if args.json:
        print(results_json(results, {"session": session.to_dict()}))
        return 0
    print("\n".join(_header(session, stored)))
    print()
    print(results_table(results))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cnnbench.results.report import results_csv, results_json, results_table

    if args.format not in REPORT_FORMATS:
        raise UsageError(f"unknown report format '{args.format}'; valid choices: {', '.join(REPORT_FORMATS)}")
    if args.kind not in PLOT_KINDS:
        raise UsageError(f"unknown figure kind '{args.kind}'; valid choices: {', '.join(PLOT_KINDS)}")
    if args.plot:
        check_plot_path(args.plot)
    if args.output:
        check_output_path(args.output)
    with open_store(args) as store:
        session = store.resolve(args.run)
        results = [r for _, r in store.results(session.id)]
        base_session = store.resolve(args.baseline) if args.baseline else None
        baseline = [r for _, r in store.results(base_session.id)] if base_session else None
    changes = None
    if baseline is not None:
        from cnnbench.results.baseline import compare_results

        changes = compare_results(results, baseline)
    if args.format == "json":
        extra = {"session": session.to_dict()}
        if changes is not None:
            from cnnbench.results.baseline import changes_json

            extra["baseline"] = {"session": base_session.to_dict(), "changes": changes_json(changes)}
        text = results_json(results, extra)
    elif args.format == "csv":
        text = results_csv(results)
        if changes is not None:
            text += "\n" + changes_csv(changes)
    else:
        parts = [f"# cnnbench run {session.id}", "", *(f"- {line}" for line in _header(session, list(enumerate(results)))),
                 "", results_table(results, tablefmt="github")]
        if changes is not None:
            from cnnbench.results.baseline import changes_table

            parts += ["", f"## Against run {base_session.id} ({_when(base_session.started)})", "",
                      changes_table(changes, tablefmt="github")]
        if args.plot:
            # relative to where the report is written, so the link works wherever the pair is moved
            where = os.path.dirname(os.path.abspath(args.output)) if args.output else os.getcwd()
            parts += ["", f"![run {session.id}]({os.path.relpath(os.path.abspath(args.plot), where)})"]
        text = "\n".join(parts)
    if args.plot:
        from cnnbench.results.plots import save_figure

        kind = save_figure(results, args.plot, kind=args.kind, title=f"cnnbench run {session.id}")
        print(f"cnnbench: {kind} figure written to {args.plot}", file=sys.stderr)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
    else:
        print(text)
    return 0


def changes_csv(changes) -> str:
    """The baseline comparison as its own CSV block (a second header row follows the results)."""
    import csv
    import io

    from cnnbench.results.baseline import changes_json

    rows = changes_json(changes)
    out = io.StringIO()
    flat = [{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in _flatten(row).items()} for row in rows]
    columns = list(dict.fromkeys(k for row in flat for k in row))
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()


def _flatten(row: dict, prefix: str = "") -> dict:
    flat: dict = {}
    for key, value in row.items():
        if isinstance(value, dict) and key != "options":
            flat.update(_flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_plot_path(path: str) -> None:
    from cnnbench.results.plots import FORMATS

    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in FORMATS:
        raise UsageError(f"--plot {path}: unknown figure format '{extension or '(none)'}'; valid choices: "
                         f"{', '.join('.' + f for f in FORMATS)}")
    check_output_path(path)


# -- recommend ------------------------------------------------------------------------------------------


def add_recommend_parser(sub) -> None:
    p = sub.add_parser("recommend", help="from stored results: the configuration with the least energy per image")
    p.add_argument("--framework", metavar="F", required=True, help="framework name")
    p.add_argument("--network", metavar="N", required=True, help="network name")
    p.add_argument("--device", metavar="D", help="only results on this device (cpu, cuda, cuda:N)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_db(p)


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
    from cnnbench.results.recommend import recommend

    with open_store(args) as store:
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
    print(f"{args.framework} {args.network}: {count(answer['configurations'], 'configuration')} stored "
          f"({count(answer['measurements'], 'measurement')}; the newest of each counts)")
    for entry in answer["noisy_ignored"]:
        print(f"left out, noisy: {_describe(entry)}, run {entry['run']}: {'; '.join(entry['noisy_reasons'])}")
    if answer["noisy_only"]:
        print("every stored configuration is noisy: the answers below are ranked from noisy figures; measure "
              "again on a quieter machine (cnnbench.results.quality's gate, docs/concepts.md)")
    print(f"fastest:      {_describe(fastest)}: {fastest['ms_per_image']:.3g} ms/image "
          f"({fastest['images_per_s']:,.1f} images/s), run {fastest['run']}")
    best = answer["least_energy"]
    if best is None:
        from cnnbench.meters.session import reasons_here

        print(f"least energy: unavailable: no stored configuration has an energy figure "
              f"({reasons_here(answer['energy_unavailable'])})")
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
              f"{count(answer['configurations'], 'configuration')} {'has' if answer['configurations_with_energy'] == 1 else 'have'} energy)")
    return 0
