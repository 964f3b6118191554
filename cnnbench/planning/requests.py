"""Typed requests: what a front end (the command line, the Python API, a cluster job) asks cnnbench to do.

A request holds the raw values the user gave, as text (``"8,16"``, ``"fp32"``: the form a command line
gives them, which the planner checks and turns into cells), and ``given``: which of them were given
explicitly, told apart from defaults even where a value equals its default, so that a preset or a
resumed run fills only what the user left out. The defaults below are the only place they are declared:
the command line's help and the Python API read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

DEFAULT_NETWORK = "alexnet"
#: Upper bounds that keep timers in range and runs finite: a week per cell, an hour per window.
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_MIN_TIME_S = 3600.0
#: ``dvfs``: clock settings in a default plan.
DEFAULT_MAX_SETTINGS = 12


@dataclass
class GridRequest:
    """``run`` (one framework, one value per axis: ``framework``, ``network``) or ``compare`` (a grid:
    ``frameworks``, ``networks`` and every axis a comma list)."""

    command: str = "compare"
    framework: str | None = None
    network: str = DEFAULT_NETWORK
    frameworks: str | None = None
    networks: str = DEFAULT_NETWORK
    # the axes; None: planned (the network's batch, cuda if there is a GPU, the framework's first kernels, ...)
    batch_size: str | None = None
    device: str | None = None
    precision: str = "fp32"
    kernels: str | None = None
    threads: str | None = None
    #: FRAMEWORK=PATH and NAME=VALUE texts
    python: list[str] = field(default_factory=list)
    option: list[str] = field(default_factory=list)
    # measurement
    warmup: str = "2"
    min_time: str = "1.0"
    repeats: str = "5"
    iterations: str | None = None
    stable: str | None = None
    stable_max_time: str | None = None
    timeout: str = "1800"
    memory_limit: str | None = None
    meters: str = "auto"
    idle: str = "5"
    cooldown: str | None = None
    # the grid's relation to stored runs
    preset: str | None = None
    baseline: str | None = None
    resume: str | None = None
    db: str | None = None
    #: False: nothing is written to the results store
    store: bool = True
    #: the command line recorded with the stored run
    argv: list[str] = field(default_factory=list)
    #: the names of the fields given explicitly
    given: frozenset[str] = frozenset()

    @property
    def single(self) -> bool:
        """One cell (``run``, ``layers``, a ``dvfs`` workload) rather than a grid."""
        return self.command != "compare"

    @classmethod
    def from_values(cls, values: Mapping[str, Any], argv: list[str] | None = None,
                    given: set[str] | frozenset[str] = frozenset()):
        """A request from named values (a parsed command line's); names that are not fields are ignored."""
        names = {f.name for f in fields(cls)} - {"argv", "given"}
        return cls(**{k: v for k, v in values.items() if k in names},
                   argv=list(argv or []), given=frozenset(given))

    def but(self, **changes: Any):
        """A copy with ``changes``."""
        return replace(self, **changes)


@dataclass
class LayersRequest(GridRequest):
    """``layers``: one cell, every layer timed alone and then the whole step."""

    command: str = "layers"
    #: a figure of the breakdown by layer type
    plot: str | None = None


@dataclass
class DvfsRequest(GridRequest):
    """``dvfs``: a sweep of GPU clocks and power limits (or CPU governors and frequencies) with one workload."""

    command: str = "dvfs"
    clocks: str | None = None
    max_settings: str = str(DEFAULT_MAX_SETTINGS)
    power_limits: str | None = None
    cpu: bool = False
    governors: str | None = None
    cpu_max_freqs: str | None = None
    allow_clock_changes: bool = False
    restore: bool = False


@dataclass
class VerifyRequest:
    """``verify``: the same weights and input in every framework; the same loss, logits and gradients?"""

    frameworks: str | None = None
    network: str = "lenet"
    batch_size: str = "2"
    device: str = "cpu"
    precision: str = "fp32"
    seed: str = "0"
    python: list[str] = field(default_factory=list)
    timeout: str = "1800"

    @classmethod
    def from_values(cls, values: Mapping[str, Any]):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def defaults(cls=GridRequest) -> Any:
    """A request of ``cls`` with every default: what a front end shows as the defaults."""
    return cls()
