"""The ``cnnbench`` command line: one module per command (or command group), each adding its parser and
running its command; the option groups they share in ``cnnbench.cli.options``. A command builds a typed request
(``cnnbench.planning.requests``) from its arguments and hands it to the core, which never imports this package.
Only the standard library, pluggy and cnnbench's own light modules are imported here: ``cnnbench --help`` must
stay instant, and frameworks load only in worker processes.

Exit codes (``cnnbench.errors``): 0 every cell ok or unsupported; 1 some cell failed (error / oom / timeout);
2 bad usage; 130 interrupted (the cells that finished are still printed).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import Sequence

import cnnbench
from cnnbench.cli.options import Parser
from cnnbench.errors import EXIT_FAILED, EXIT_USAGE, PluginError, SpecError, StoreError, Terminated, UsageError

#: Each command's module in this package and the function that runs it, in the order ``--help`` lists them.
COMMANDS = {
    "list": ("listing", "cmd_list"),
    "networks": ("networks", "cmd_networks"),
    "run": ("grid", "cmd_grid"),
    "compare": ("grid", "cmd_grid"),
    "verify": ("verify", "cmd_verify"),
    "env": ("env", "cmd_env"),
    "layers": ("layers", "cmd_layers"),
    "dvfs": ("dvfs", "cmd_dvfs"),
    "history": ("store", "cmd_store"),
    "show": ("store", "cmd_store"),
    "report": ("store", "cmd_store"),
    "recommend": ("store", "cmd_store"),
}
#: The modules and functions that add the commands' parsers, in the order the subcommands appear.
PARSERS = (("listing", "add_parsers"), ("networks", "add_parser"), ("grid", "add_parsers"), ("env", "add_env_parser"),
           ("verify", "add_parsers"), ("grid", "add_compare_parser"), ("store", "add_parsers"),
           ("layers", "add_layers_parser"), ("dvfs", "add_dvfs_parser"))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cnnbench",
        description="Measure how fast and how energy-efficiently CNNs train, across frameworks and hardware settings.",
    )
    parser.add_argument("--version", action="version", version=f"cnnbench {cnnbench.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module, function in PARSERS:
        getattr(importlib.import_module(f"cnnbench.cli.{module}"), function)(sub)
    return parser


def given_dests(argv: Sequence[str]) -> set[str]:
    """The options ``argv`` gives explicitly (their ``dest`` names), told apart from defaults even where a
    value equals its default: a preset or a resumed run fills only what the user left out."""
    from cnnbench.cli.options import given_dests as given_in

    return given_in(build_parser(), list(argv))


def given(args: argparse.Namespace) -> set[str]:
    """``given_dests`` of the command line ``args`` came from (``args._argv``, set by main)."""
    return given_dests(getattr(args, "_argv", None) or [])


def plan(args: argparse.Namespace, host, single: bool):
    """The cells and measurement a parsed ``run`` or ``compare`` command line plans (its request, planned)."""
    from cnnbench.cli.grid import plan as plan_args

    return plan_args(args, host, single)


def thread_counts(values: list[str]) -> list[int]:
    """``--threads`` values as thread counts (``cnnbench.planning.cells.thread_counts``)."""
    from cnnbench.planning.cells import thread_counts as counts

    return counts(values)


def _terminate(signum, frame) -> None:
    raise Terminated(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # SIGTERM and SIGHUP unwind like Ctrl-C, so workers are stopped and finished cells printed.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        args = parser.parse_args(argv)
        args._argv = list(sys.argv[1:] if argv is None else argv)
        args._given = given_dests(args._argv)
        if args.command is None:
            raise UsageError(f"cnnbench: error: a command is required; valid choices: {', '.join(COMMANDS)}")
        module, function = COMMANDS[args.command]
        return getattr(importlib.import_module(f"cnnbench.cli.{module}"), function)(args)
    except BrokenPipeError:
        # The reader went away (``cnnbench compare | head``): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (UsageError, SpecError, PluginError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not message.startswith("cnnbench"):
            message = f"cnnbench: error: {message}"
        print(message, file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"cnnbench: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
