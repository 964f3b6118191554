"""``cnnbench run`` (one cell) and ``cnnbench compare`` (the grid): their options, the request they build,
and the table or JSON they print."""

from __future__ import annotations

import argparse
import sys

from cnnbench.cli.options import DEFAULTS, add_axes
from cnnbench.planning.requests import GridRequest
from cnnbench.plural import count


def add_parsers(sub) -> None:
    p = sub.add_parser("run", help="one run: one framework, one network, one value per axis")
    p.add_argument("--framework", metavar="F", required=True, help="framework name (see cnnbench list)")
    p.add_argument("--network", metavar="N", default=DEFAULTS.network,
                   help=f"network name or spec file (default {DEFAULTS.network})")
    add_axes(p, single=True)


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="the grid: every axis flag takes a comma list")
    p.add_argument("--frameworks", metavar="F1,F2", help="frameworks (default: every available one)")
    p.add_argument("--networks", "--network", dest="networks", metavar="N1,N2", default=DEFAULTS.networks,
                   help=f"network names or spec files (default {DEFAULTS.networks})")
    add_axes(p, single=False)
    p.add_argument("--preset", metavar="NAME", help="one of the paper's experiments, scaled to this machine (see "
                                                     "cnnbench list); flags given as well override its settings")
    p.add_argument("--baseline", metavar="RUN", help="also show each cell's change in time and energy against "
                                                      "stored run RUN, with its uncertainty")
    p.add_argument("--resume", metavar="RUN", help="run only the cells of stored run RUN that are missing "
                                                    "(after Ctrl-C, a crash, ...), with its settings")


def request(args: argparse.Namespace, cls=GridRequest):
    """The typed request of a parsed command line: its values, and which of them it gave (``main`` finds
    those; arguments parsed without it gave none)."""
    return cls.from_values(vars(args), argv=getattr(args, "_argv", None), given=getattr(args, "_given", set()))


def plan(args: argparse.Namespace, host, single: bool):
    """The cells and measurement a parsed ``run`` or ``compare`` command line plans."""
    from cnnbench.planning.cells import plan as plan_request

    return plan_request(request(args), host, single)


def cmd_grid(args: argparse.Namespace) -> int:
    from cnnbench.api import execute
    from cnnbench.results.report import results_json, results_table

    run = execute(request(args), show_progress=sys.stderr.isatty() and not args.json and not args.quiet)
    if run.interrupted:
        print(f"cnnbench: interrupted; {len(run.results)} of {count(run.cells_planned, 'cell')} finished", file=sys.stderr)
    changes = None
    if run.baseline is not None:
        from cnnbench.results.baseline import changes_json, changes_table, compare_results

        changes = compare_results(run.results, run.baseline)
    if args.json:
        extra = dict(run.extra)
        if changes is not None:
            extra["baseline"] = {"session": run.baseline_session.id, "changes": changes_json(changes)}
        print(results_json(run.results, extra))
    else:
        print(results_table(run.results))
        if changes is not None:
            print(f"\nagainst run {run.baseline_session.id} (started {run.baseline_session.started})")
            print(changes_table(changes))
    if run.nothing_measured and not run.interrupted:
        print(f"cnnbench: nothing was measured: {'the one cell was' if len(run.results) == 1 else f'every one of the {len(run.results)} cells was'} "
              "unsupported or unavailable here (see the status column)", file=sys.stderr)
    if run.store_error:
        print(f"cnnbench: {run.store_error}; the results above were not all stored", file=sys.stderr)
    elif run.session_id is not None and not args.json:
        stored = f"stored as run {run.session_id} in {run.db_path}"
        if run.interrupted:
            stored += f"; finish it with: cnnbench compare --resume {run.session_id}"
        print(stored, file=sys.stderr)
    return run.exit_code
