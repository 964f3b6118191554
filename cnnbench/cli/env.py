"""``cnnbench env create|list|remove FRAMEWORK``: an isolated interpreter per framework.

The work happens in :mod:`cnnbench.system.envs`; this module is the command line around it. Usage errors are
:class:`~cnnbench.config.UsageError` (one line naming the valid choices); a failing venv or pip is
printed with its command and last lines, exit code 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from cnnbench.config import UsageError

ACTIONS = ("create", "list", "remove")


def add_env_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``env`` with its actions to the CLI's subparsers; returns the ``env`` parser."""
    p = subparsers.add_parser(
        "env",
        help="an isolated interpreter per framework: create|list|remove FRAMEWORK",
        description="cnnbench env create FRAMEWORK   a virtual environment with cnnbench and that framework; its\n"
        "                                 workers then run there (e.g. mxnet, which needs numpy<1.24)\n"
        "cnnbench env list               the environments, their interpreters and framework versions\n"
        "cnnbench env remove FRAMEWORK   delete an environment",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="env_action", metavar="ACTION")
    c = actions.add_parser("create", help="make (or update) the environment of FRAMEWORK")
    c.add_argument("framework", metavar="FRAMEWORK", help="a framework name (see cnnbench list)")
    c.add_argument("--python", metavar="PATH",
                   help="the base interpreter of the venv (default: the one running cnnbench)")
    c.add_argument("--clear", action="store_true", help="start from an empty venv instead of updating it")
    ls = actions.add_parser("list", help="the environments")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    r = actions.add_parser("remove", help="delete the environment of FRAMEWORK")
    r.add_argument("framework", metavar="FRAMEWORK")
    return p


def cmd_env(args: argparse.Namespace) -> int:
    from cnnbench.system import envs

    action = getattr(args, "env_action", None)
    if action is None:
        raise UsageError(f"cnnbench env: choose an action: {', '.join(ACTIONS)}")
    if action == "create":
        return _create(args)
    if action == "list":
        infos = envs.list_envs()
        if args.json:
            print(json.dumps({"data_dir": str(envs.data_dir()), "environments": [i.as_dict() for i in infos]},
                             indent=2))
        else:
            print(_table(infos, envs.envs_root()))
        return 0
    envs.remove_env(args.framework)
    print(f"removed the {args.framework} environment ({envs.env_dir(args.framework)})")
    return 0


def _create(args: argparse.Namespace) -> int:
    from cnnbench.system import envs
    from cnnbench.plugins import get_host

    python = sys.executable
    if args.python:
        python = shutil.which(args.python) or ""
        if not python:
            raise UsageError(f"--python {args.python}: no such interpreter (give a path or a command on PATH)")
    started = time.monotonic()
    try:
        info = envs.create_env(args.framework, get_host(), python=python, clear=args.clear,
                               progress=lambda line: print(line, file=sys.stderr, flush=True))
    except envs.EnvError as exc:
        print(f"cnnbench env create {args.framework}: {exc}", file=sys.stderr)
        return 1
    versions = ", ".join(f"{name} {version}" for name, version in info.packages.items())
    print(f"created the {args.framework} environment in {time.monotonic() - started:.0f} s: {info.path}\n"
          f"  python: {info.python}\n  packages: {versions}")
    if info.problem:
        print(f"  problem: {info.problem}")
        return 1
    print(f"{args.framework} workers now run with this interpreter")
    return 0


def _table(infos: list, root: Any) -> str:
    if not infos:
        return f"no framework environments in {root}; make one with: cnnbench env create FRAMEWORK"
    from tabulate import tabulate

    rows = [
        [i.framework, i.python or i.path,
         ", ".join(f"{name} {version or '(missing)'}" for name, version in i.packages.items()) or "-",
         i.problem or "ok"]
        for i in infos
    ]
    return f"environments in {root}:\n" + tabulate(rows, headers=["framework", "python", "packages", "status"])
