"""The option groups several commands share, public so that each command's module adds them the same way.
Every default comes from the typed requests (``cnnbench.planning.requests``), where it is declared once."""

from __future__ import annotations

import argparse

from cnnbench.config import PRECISIONS
from cnnbench.errors import UsageError
from cnnbench.planning.requests import GridRequest

#: The defaults of every grid option (run, compare, layers, dvfs).
DEFAULTS = GridRequest()


#: Where ``StoreOnce`` keeps, during one parse, the flags already given; removed before the parse returns.
_SEEN = "_cnnbench_flags_given"


class StoreOnce(argparse._StoreAction):
    """A single-valued flag given twice is a usage error: argparse would silently keep the last value
    (``--batch-size 8 --batch-size 16`` measured 16 alone). Flags meant to repeat use action="append"."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        seen = getattr(namespace, _SEEN, None)
        if seen is None:
            seen = {}
            setattr(namespace, _SEEN, seen)
        if self.dest in seen:
            raise argparse.ArgumentError(
                self, f"given twice ({seen[self.dest]!r}, then {values!r}); give it once")
        seen[self.dest] = values
        setattr(namespace, self.dest, values)


class Parser(argparse.ArgumentParser):
    """Usage errors are one line naming the problem (and the valid choices), exit code 2. A single-valued
    option given twice is one of them (``StoreOnce``)."""

    def add_argument(self, *args, **kwargs):  # type: ignore[override]
        if args and args[0].startswith("-") and kwargs.get("action", "store") == "store" and "nargs" not in kwargs:
            kwargs["action"] = StoreOnce
        return super().add_argument(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        if hasattr(namespace, _SEEN):
            delattr(namespace, _SEEN)
        return namespace, extras

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def add_axes(p: argparse.ArgumentParser, single: bool) -> None:
    """The axes, adapter switches, measurement and output options of ``run``, ``compare`` and ``dvfs``."""
    many = "" if single else " (comma list)"
    p.add_argument("--batch-size", metavar="B", help=f"images per iteration{many}; default: the network's")
    p.add_argument("--device", metavar="D", help=f"cpu, cuda or cuda:N{many}; default: cuda if an NVIDIA GPU is present, else cpu")
    p.add_argument("--precision", metavar="P", default=DEFAULTS.precision,
                   help=f"{', '.join(PRECISIONS)}{many} (default {DEFAULTS.precision})")
    p.add_argument("--kernels", metavar="K", help=f"vendor (cuDNN/oneDNN) or native (im2col+GEMM){many}; default: each framework's first (vendor where it has one)")
    p.add_argument("--threads", metavar="T", help=f"compute threads{many}: a number, physical (one per core) or "
                                                  "logical (one per hardware thread); default: the physical cores cnnbench may use, "
                                                  "the same for every framework")
    add_python(p)
    add_option(p)
    add_measurement(p.add_argument_group("measurement"), repeats="timed windows per cell",
                    timeout="seconds per cell", worker="each cell's worker", meter_examples="rapl,nvml or rapl:psys",
                    idle="measured before the grid, subtracted for above-idle energy", cooldown="before each cell")
    p.add_argument("--json", action="store_true", help="machine-readable results on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")
    add_db(p)


def add_measurement(g, *, repeats: str, timeout: str, worker: str, meter_examples: str, idle: str,
                    cooldown: str) -> None:
    """Timing, limits, meters, the idle baseline and the cooldown; the phrases say what they apply to."""
    add_timing(g, repeats)
    g.add_argument("--timeout", metavar="S", default=DEFAULTS.timeout,
                   help=f"{timeout} before its worker is stopped (default {DEFAULTS.timeout})")
    add_memory_limit(g, worker)
    g.add_argument("--meters", metavar="M", default=DEFAULTS.meters,
                   help=f"auto (every meter readable here), none, or meter names, e.g. {meter_examples} "
                        f"(default {DEFAULTS.meters})")
    g.add_argument("--idle", metavar="S", default=DEFAULTS.idle,
                   help=f"seconds of idle power {idle}; 0: none (default {DEFAULTS.idle})")
    g.add_argument("--cooldown", metavar="auto|S",
                   help=f"{cooldown}, wait until the GPU is back within 2 °C of its idle temperature, at most "
                        "S seconds (auto: at most 300 s); default: no wait")


def add_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--option", metavar="NAME=VALUE", action="append", default=[],
                   help="an adapter-specific switch, e.g. xla=on for tensorflow (repeatable; see cnnbench list)")


def add_timing(g, repeats_help: str) -> None:
    """--warmup, --min-time, --repeats, --iterations and --stable."""
    g.add_argument("--warmup", metavar="N", default=DEFAULTS.warmup,
                   help=f"warm-up iterations, not timed (default {DEFAULTS.warmup})")
    g.add_argument("--min-time", metavar="S", default=DEFAULTS.min_time,
                   help=f"each timed window lasts at least S seconds (default {float(DEFAULTS.min_time):g})")
    g.add_argument("--repeats", metavar="R", default=DEFAULTS.repeats,
                   help=f"{repeats_help} (default {DEFAULTS.repeats})")
    g.add_argument("--iterations", metavar="N", help="fixed iterations per window instead of --min-time")
    add_stable(g)


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


def add_python(p: argparse.ArgumentParser) -> None:
    p.add_argument("--python", metavar="FRAMEWORK=PATH", action="append", default=[],
                   help="run FRAMEWORK's workers under this interpreter (default: its environment from "
                        "'cnnbench env create', if any, else this one); repeatable")


def given_dests(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options ``argv`` gives explicitly (their ``dest`` names), told apart from defaults even where a
    value equals its default: a preset or a resumed run fills only what the user left out. ``parser`` is
    one of the caller's own: its defaults are changed."""

    def suppress(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    suppress(sub)
            elif action.option_strings:
                action.default = argparse.SUPPRESS

    suppress(parser)
    return set(vars(parser.parse_args(list(argv)))) - {"command"}
