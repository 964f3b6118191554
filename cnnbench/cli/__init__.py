"""The ``cnnbench`` command line. Only the standard library, pluggy and cnnbench's own light modules are
imported here: ``cnnbench --help`` must stay instant, and frameworks load only in worker processes.

Exit codes: 0 every cell ok or unsupported; 1 some cell failed (error / oom / timeout); 2 bad usage;
130 interrupted (the cells that finished are still printed).
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
from typing import Sequence

import cnnbench
from cnnbench.config import (
    KERNELS,
    PRECISIONS,
    Measurement,
    RunConfig,
    UsageError,
    check_choice,
    check_device,
    positive_float,
    positive_int,
    positive_ints,
    split_list,
)

#: Upper bounds that keep timers in range and runs finite: a week per cell, an hour per window.
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_MIN_TIME_S = 3600.0


DEFAULT_NETWORK = "alexnet"


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line naming the problem (and the valid choices), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _add_axes(p: argparse.ArgumentParser, single: bool) -> None:
    many = "" if single else " (comma list)"
    p.add_argument("--batch-size", metavar="B", help=f"images per iteration{many}; default: the network's")
    p.add_argument("--device", metavar="D", help=f"cpu, cuda or cuda:N{many}; default: cuda if an NVIDIA GPU is present, else cpu")
    p.add_argument("--precision", metavar="P", default="fp32", help=f"{', '.join(PRECISIONS)}{many} (default fp32)")
    p.add_argument("--kernels", metavar="K", help=f"vendor (cuDNN/oneDNN) or native (im2col+GEMM){many}; default: each framework's first (vendor where it has one)")
    p.add_argument("--threads", metavar="T", help=f"compute threads{many}: a number, physical (one per core) or "
                                                  "logical (one per hardware thread); default: the physical cores cnnbench may use, "
                                                  "the same for every framework")
    _add_python(p)
    p.add_argument("--option", metavar="NAME=VALUE", action="append", default=[],
                   help="an adapter-specific switch, e.g. xla=on for tensorflow (repeatable; see cnnbench list)")
    g = p.add_argument_group("measurement")
    g.add_argument("--warmup", metavar="N", default="2", help="warm-up iterations, not timed (default 2)")
    g.add_argument("--min-time", metavar="S", default="1.0", help="each timed window lasts at least S seconds (default 1)")
    g.add_argument("--repeats", metavar="R", default="5", help="timed windows per cell (default 5)")
    g.add_argument("--iterations", metavar="N", help="fixed iterations per window instead of --min-time")
    add_stable(g)
    g.add_argument("--timeout", metavar="S", default="1800", help="seconds per cell before its worker is stopped (default 1800)")
    add_memory_limit(g, "each cell's worker")
    g.add_argument("--meters", metavar="M", default="auto",
                   help="auto (every meter readable here), none, or meter names, e.g. rapl,nvml or rapl:psys (default auto)")
    g.add_argument("--idle", metavar="S", default="5",
                   help="seconds of idle power measured before the grid, subtracted for above-idle energy; 0: none (default 5)")
    g.add_argument("--cooldown", metavar="auto|S",
                   help="before each cell, wait until the GPU is back within 2 °C of its idle temperature, at most "
                        "S seconds (auto: at most 300 s); default: no wait")
    p.add_argument("--json", action="store_true", help="machine-readable results on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")
    add_db(p)


def add_stable(g) -> None:
    from cnnbench.results.quality import STABLE_MAX_TIME_S, STABLE_TARGET

    g.add_argument("--stable", metavar="TARGET", nargs="?", const=f"{STABLE_TARGET * 100:g}",
                   help="after --repeats windows, add windows until the 95%% interval of the median time per "
                        f"iteration is within TARGET %% of the median (default {STABLE_TARGET * 100:g}), or "
                        "--stable-max-time passes")
    g.add_argument("--stable-max-time", metavar="S",
                   help=f"with --stable: seconds from a cell's first timed window after which it stops adding "
                        f"windows, short of the target (default {STABLE_MAX_TIME_S:g})")


def add_memory_limit(g, whose: str) -> None:
    g.add_argument("--memory-limit", metavar="SIZE",
                   help=f"the most memory {whose} may use, e.g. 4G (K, M, G, T: powers of 1024); beyond it the "
                        "cell ends with status oom and the rest go on (default: no limit; a GPU's own memory is "
                        "limited by the GPU)")


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", help="the results store (default: $CNNBENCH_DB, else "
                                                 ".cnnbench/results.sqlite in the working directory)")


def _add_python(p: argparse.ArgumentParser) -> None:
    p.add_argument("--python", metavar="FRAMEWORK=PATH", action="append", default=[],
                   help="run FRAMEWORK's workers under this interpreter (default: its environment from "
                        "'cnnbench env create', if any, else this one); repeatable")


def pythons_for(texts: list[str], frameworks: list[str], host) -> dict[str, str]:
    """The interpreter of each framework that does not run under this one: --python FRAMEWORK=PATH,
    else the framework's environment (``cnnbench env create``) when it has one."""
    import shutil

    chosen: dict[str, str] = {}
    for text in texts:
        name, sep, path = (part.strip() for part in text.partition("="))
        if not sep or not name or not path:
            raise UsageError(f"--python takes FRAMEWORK=PATH, not '{text}'")
        host.adapter(name)  # an unknown framework names the valid choices
        found = shutil.which(path) if os.sep not in path else (path if os.access(path, os.X_OK) else None)
        if not found:
            raise UsageError(f"--python {name}={path}: no executable interpreter there")
        chosen[name] = found
    try:
        from cnnbench.system.envs import interpreter
    except ImportError:  # environments arrive with the envs module
        return chosen
    for framework in frameworks:
        if framework not in chosen:
            env_python = interpreter(framework)
            if env_python:
                chosen[framework] = env_python
    return chosen


def given_dests(argv: Sequence[str]) -> set[str]:
    """The options ``argv`` gives explicitly (their ``dest`` names), told apart from defaults even where a
    value equals its default: a preset or a resumed run fills only what the user left out."""
    parser = build_parser()

    def suppress(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    suppress(sub)
            elif action.option_strings:
                action.default = argparse.SUPPRESS

    suppress(parser)
    return set(vars(parser.parse_args(list(argv)))) - {"command"}


def given(args: argparse.Namespace) -> set[str]:
    """``given_dests`` of the command line ``args`` came from (``args._argv``, set by main and the API)."""
    return given_dests(getattr(args, "_argv", None) or [])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cnnbench",
        description="Measure how fast and how energy-efficiently CNNs train, across frameworks and hardware settings.",
    )
    parser.add_argument("--version", action="version", version=f"cnnbench {cnnbench.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="frameworks (available?, version, why not), plugin errors, networks")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser(
        "networks",
        help="the networks; NAME: its per-layer table; import FILE.prototxt: convert a Caffe definition",
        description="cnnbench networks                       list the networks\n"
        "cnnbench networks NAME|FILE             per-layer table: output shape, parameters, forward FLOPs\n"
        "cnnbench networks import FILE.prototxt  write a Caffe definition out in cnnbench's spec format",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a network name, spec file or .prototxt, or 'import'")
    p.add_argument("file", nargs="?", metavar="FILE", help="with 'import': the .prototxt to convert")
    p.add_argument("-o", "--output", metavar="PATH", help="with 'import': write the spec here instead of stdout")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="one run: one framework, one network, one value per axis")
    p.add_argument("--framework", metavar="F", required=True, help="framework name (see cnnbench list)")
    p.add_argument("--network", metavar="N", default=DEFAULT_NETWORK, help=f"network name or spec file (default {DEFAULT_NETWORK})")
    _add_axes(p, single=True)

    from cnnbench.cli.env import add_env_parser

    add_env_parser(sub)

    p = sub.add_parser("verify", help="same weights, same input: same loss, logits and gradients in every framework?")
    p.add_argument("--frameworks", metavar="F1,F2", help="frameworks (default: every available one)")
    p.add_argument("--network", metavar="N", default="lenet", help="network name or spec file (default lenet)")
    p.add_argument("--batch-size", metavar="B", default="2", help="images (default 2)")
    p.add_argument("--device", metavar="D", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--precision", metavar="P", default="fp32", help=f"{', '.join(PRECISIONS)} (default fp32)")
    p.add_argument("--seed", metavar="S", default="0", help="seed of the weights and data (default 0)")
    _add_python(p)
    p.add_argument("--timeout", metavar="S", default="1800", help="seconds per framework (default 1800)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("compare", help="the grid: every axis flag takes a comma list")
    p.add_argument("--frameworks", metavar="F1,F2", help="frameworks (default: every available one)")
    p.add_argument("--networks", "--network", dest="networks", metavar="N1,N2", default=DEFAULT_NETWORK,
                   help=f"network names or spec files (default {DEFAULT_NETWORK})")
    _add_axes(p, single=False)
    p.add_argument("--preset", metavar="NAME", help="one of the paper's experiments, scaled to this machine (see "
                                                     "cnnbench list); flags given as well override its settings")
    p.add_argument("--baseline", metavar="RUN", help="also show each cell's change in time and energy against "
                                                      "stored run RUN, with its uncertainty")
    p.add_argument("--resume", metavar="RUN", help="run only the cells of stored run RUN that are missing "
                                                    "(after Ctrl-C, a crash, ...), with its settings")

    from cnnbench.cli.store import add_store_parsers

    add_store_parsers(sub)

    from cnnbench.cli.layers import add_layers_parser

    add_layers_parser(sub)

    from cnnbench.cli.dvfs import add_dvfs_parser

    add_dvfs_parser(sub)
    return parser


# -- planning ---------------------------------------------------------------------------------------


def default_device() -> str:
    """cuda where the NVIDIA driver shows a GPU (read from /proc, no framework import), else cpu."""
    try:
        return "cuda" if os.listdir("/proc/driver/nvidia/gpus") else "cpu"
    except OSError:
        return "cpu"


def _values(args: argparse.Namespace, attr: str, flag: str, single: bool) -> list[str] | None:
    text = getattr(args, attr)
    if text is None:
        return None
    values = split_list(flag, text)
    if single and len(values) > 1:
        raise UsageError(f"{flag} takes one value with 'run'; use 'cnnbench compare' for a grid")
    return values


def plan(args: argparse.Namespace, host, single: bool) -> tuple[list, Measurement]:
    from cnnbench.spec.catalog import resolve_network
    from cnnbench.execution.runner import Cell

    if single:
        frameworks = [args.framework]
        host.adapter(args.framework)
    else:
        frameworks = _frameworks(host, args.frameworks)
    networks = [resolve_network(n) for n in _values(args, "network" if single else "networks", "--network" if single else "--networks", single)]
    batches = _values(args, "batch_size", "--batch-size", single)
    batch_sizes = positive_ints("--batch-size", batches) if batches else [None]
    devices = [check_device(d) for d in (_values(args, "device", "--device", single) or [default_device()])]
    precisions = [check_choice("precision", p, PRECISIONS) for p in _values(args, "precision", "--precision", single)]
    kernel_list = _values(args, "kernels", "--kernels", single)
    kernels = [check_choice("kernels", k, KERNELS) for k in kernel_list] if kernel_list else [None]
    threads_list = _values(args, "threads", "--threads", single)
    threads = thread_counts(threads_list) if threads_list else [None]
    like_for_like = default_threads() if not threads_list else None
    iterations = positive_int("--iterations", args.iterations) if args.iterations is not None else None
    measurement = Measurement(
        warmup=positive_int("--warmup", args.warmup, allow_zero=True),
        min_time=positive_float("--min-time", args.min_time, MAX_MIN_TIME_S),
        repeats=positive_int("--repeats", args.repeats),
        iterations=iterations,
        **stable_settings(args),
    )
    options = _options(args.option, frameworks, host)
    cells = []
    for framework, spec, batch, device, precision, kernel, thread in itertools.product(
        frameworks, networks, batch_sizes, devices, precisions, kernels, threads
    ):
        config = RunConfig(
            framework=framework,
            network=spec.name,
            batch_size=batch or spec.default_batch_size,
            device=device,
            precision=precision,
            # unnamed: the framework's first family (vendor, or native for the Caffe-style engine)
            kernels=kernel or host.adapter(framework).capabilities(device.split(":")[0]).kernels[0],
            threads=thread if like_for_like is None else _default_threads_for(host, framework, device, like_for_like),
            options=options.get(framework, ()),
        )
        cells.append(Cell(config, spec))
    return cells, measurement


def stable_settings(args: argparse.Namespace) -> dict:
    """Measurement's ``stable`` and ``stable_max_time`` from --stable [TARGET] and --stable-max-time."""
    from cnnbench.config import stable_target
    from cnnbench.results.quality import STABLE_MAX_TIME_S

    target, cap = getattr(args, "stable", None), getattr(args, "stable_max_time", None)
    if target is None:
        if cap is not None:
            raise UsageError("--stable-max-time goes with --stable (--stable [TARGET] --stable-max-time S)")
        return {}
    return {"stable": stable_target(target),
            "stable_max_time": positive_float("--stable-max-time", cap, MAX_TIMEOUT_S) if cap else STABLE_MAX_TIME_S}


THREAD_WORDS = ("physical", "logical")


def default_threads() -> int:
    """The thread count every framework of a grid gets unless --threads says otherwise: the physical cores
    this process may use. Left to themselves the frameworks disagree (PyTorch takes the physical cores,
    TensorFlow the logical CPUs, MXNet half of them), and a comparison would measure their defaults."""
    from cnnbench.system.provenance import usable_cores

    return usable_cores()[0]


def _default_threads_for(host, framework: str, device: str, count: int) -> int | None:
    """``count`` for an adapter that can set its threads; None (its own default, shown in the table as the
    threads it used) for one that cannot, rather than refusing a cell the user never asked to pin."""
    return count if host.adapter(framework).capabilities(device.split(":")[0]).threads else None


def thread_counts(values: list[str]) -> list[int]:
    """``--threads`` values: whole numbers, or ``physical`` / ``logical`` (the paper's Fig. 7: one thread per
    core against one per hardware thread) resolved on the CPUs this process may use. Where the two are
    equal (no SMT, or SMT off) they name one cell, and the user is told so."""
    from cnnbench.system.provenance import usable_cores

    physical, logical = usable_cores()
    counts = {"physical": physical, "logical": logical}
    numbers = []
    for value in values:
        if value in counts:
            number = counts[value]
        elif value.strip().isdigit():
            number = positive_int("--threads", value)
        else:
            raise UsageError(f"--threads takes whole numbers or {', '.join(THREAD_WORDS)}, not '{value}'")
        if number in numbers:
            if value in counts or any(v in counts for v in values):
                print(f"cnnbench: --threads {','.join(values)}: {physical} physical cores and {logical} logical "
                      f"CPUs here (SMT off or absent), so {number} threads is one cell", file=sys.stderr)
                continue
            raise UsageError(f"--threads lists {number} twice")
        numbers.append(number)
    return numbers


def _options(texts: list[str], frameworks: list[str], host) -> dict[str, tuple[tuple[str, str], ...]]:
    """``--option NAME=VALUE`` checked against the adapters that declare NAME; each applies to those."""
    declared = {f: host.adapter(f).options for f in frameworks}
    chosen: dict[str, dict[str, str]] = {f: {} for f in frameworks}
    for text in texts:
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise UsageError(f"--option takes NAME=VALUE, not '{text}'")
        owners = [f for f, opts in declared.items() if name in opts]
        if not owners:
            valid = sorted({f"{n} ({f})" for f, opts in declared.items() for n in opts})
            raise UsageError(f"unknown option '{name}' for {', '.join(frameworks)}; valid choices: "
                             f"{', '.join(valid) or '(none: these adapters take no options)'}")
        for framework in owners:
            allowed = declared[framework][name][0]
            if allowed and value not in allowed:
                raise UsageError(f"unknown value '{value}' for option {name} of {framework}; valid choices: "
                                 f"{', '.join(allowed)}")
            chosen[framework][name] = value
    return {f: tuple(sorted(opts.items())) for f, opts in chosen.items()}


# -- commands ---------------------------------------------------------------------------------------


def cmd_grid(args: argparse.Namespace, single: bool, argv: list[str]) -> int:
    from cnnbench.execution.session import execute
    from cnnbench.results.report import results_json, results_table

    run = execute(args, single, argv, show_progress=sys.stderr.isatty() and not args.json and not args.quiet)
    if run.interrupted:
        print(f"cnnbench: interrupted; {len(run.results)} of {run.cells_planned} cells finished", file=sys.stderr)
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
        print(f"cnnbench: nothing was measured: every one of the {len(run.results)} cell(s) was unsupported or "
              "unavailable here (see the status column)", file=sys.stderr)
    if run.store_error:
        print(f"cnnbench: {run.store_error}; the results above were not all stored", file=sys.stderr)
    elif run.session_id is not None and not args.json:
        stored = f"stored as run {run.session_id} in {run.db_path}"
        if run.interrupted:
            stored += f"; finish it with: cnnbench compare --resume {run.session_id}"
        print(stored, file=sys.stderr)
    return run.exit_code


def _frameworks(host, text: str | None) -> list[str]:
    """The frameworks a command runs: the named ones (checked), or every available one."""
    adapters = host.adapters()
    if text is None:
        from cnnbench.system.envs import interpreter

        # available here, or in an environment of its own (cnnbench env create)
        names = [name for name in adapters if host.availability(name).available or interpreter(name)]
        if not names:
            hints = "; ".join(f"{n}: {c.install_hint}" for n, c in adapters.items()) or "no adapter plugins found"
            raise UsageError(f"no framework is available here; install one ({hints})")
        return names
    names = split_list("--frameworks", text)
    for name in names:
        host.adapter(name)  # unknown names: a usage error naming the valid choices
    return names


def cmd_verify(args: argparse.Namespace) -> int:
    import json

    from cnnbench.spec.catalog import resolve_network
    from cnnbench.plugins import get_host
    from cnnbench.execution.verify import verify, verify_table

    host = get_host()
    frameworks = _frameworks(host, args.frameworks)
    spec = resolve_network(args.network)
    batch = positive_int("--batch-size", args.batch_size)
    device = check_device(args.device)
    precision = check_choice("precision", args.precision, PRECISIONS)
    seed = positive_int("--seed", args.seed, allow_zero=True)
    timeout = positive_float("--timeout", args.timeout, MAX_TIMEOUT_S)
    outcomes, tensors = verify(frameworks, spec, host, batch_size=batch, device=device, precision=precision,
                               timeout=timeout, seed=seed, pythons=pythons_for(args.python, frameworks, host))
    if args.json:
        print(json.dumps({
            "network": spec.name, "batch_size": batch, "device": device, "precision": precision, "seed": seed,
            "reference": "caffe (float64)",
            "results": [o.as_dict() for o in outcomes],
        }, indent=2, default=str))
    else:
        print(f"verify {spec.name}, batch {batch}, {device}, {precision}, seed {seed}")
        print(verify_table(outcomes, tensors, precision))
    return 1 if any(o.status not in ("ok", "unsupported", "unavailable") for o in outcomes) else 0


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
            version = (info.packages or {}).get(host.adapters()[name].package)
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


def _terminate(signum, frame) -> None:
    from cnnbench.execution.session import Terminated

    raise Terminated(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    from cnnbench.plugins import PluginError
    from cnnbench.spec import SpecError
    from cnnbench.config import StoreError

    parser = build_parser()
    # SIGTERM and SIGHUP unwind like Ctrl-C, so workers are stopped and finished cells printed.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        args = parser.parse_args(argv)
        args._argv = list(sys.argv[1:] if argv is None else argv)
        if args.command is None:
            raise UsageError(
                "cnnbench: error: a command is required; valid choices: list, networks, run, compare, verify, env, "
                "layers, dvfs, history, show, report, recommend"
            )
        if args.command == "list":
            return cmd_list(args)
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "env":
            from cnnbench.cli.env import cmd_env

            return cmd_env(args)
        if args.command == "networks":
            from cnnbench.cli.networks import cmd_networks

            return cmd_networks(args)
        if args.command == "layers":
            from cnnbench.cli.layers import cmd_layers

            return cmd_layers(args)
        if args.command == "dvfs":
            from cnnbench.cli.dvfs import cmd_dvfs

            return cmd_dvfs(args)
        if args.command in ("history", "show", "report", "recommend"):
            from cnnbench.cli.store import cmd_store

            return cmd_store(args)
        return cmd_grid(args, args.command == "run", args._argv)
    except BrokenPipeError:
        # The reader went away (``cnnbench compare | head``): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (UsageError, SpecError, PluginError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not message.startswith("cnnbench"):
            message = f"cnnbench: error: {message}"
        print(message, file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"cnnbench: error: {exc}", file=sys.stderr)
        return 1
