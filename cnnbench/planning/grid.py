"""A grid request made ready to run: its preset applied or its stored run resumed, its cells planned, its
reference run found and its limits checked, all before anything is measured, so a bad value costs nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnbench.config import Measurement, RunConfig, memory_size, positive_float
from cnnbench.errors import UsageError
from cnnbench.planning.requests import MAX_MIN_TIME_S, MAX_TIMEOUT_S

#: What a resumed grid takes from the stored run; giving one of these with --resume is an error.
PLANNED = {"frameworks": "--frameworks", "networks": "--networks", "batch_size": "--batch-size",
           "device": "--device", "precision": "--precision", "kernels": "--kernels", "threads": "--threads",
           "option": "--option", "warmup": "--warmup", "min_time": "--min-time", "repeats": "--repeats",
           "iterations": "--iterations", "preset": "--preset", "stable": "--stable",
           "stable_max_time": "--stable-max-time"}
#: Settings of the machine rather than of the grid: taken from the stored run unless given again.
REUSED = {"timeout": "timeout_s", "meters": "meters", "idle": "idle_s", "memory_limit": "memory_limit_bytes"}


@dataclass
class GridPlan:
    """Everything a grid session needs, checked."""

    cells: list
    measurement: Measurement
    pythons: dict[str, str]
    timeout: float
    idle_s: float
    memory_limit: int | None
    cooldown: Any
    meters: str
    #: the stored session resumed (a store Session) and the results it holds, by position in the plan
    resumed: Any = None
    previous: dict[int, Any] = field(default_factory=dict)
    #: the stored run of ``baseline`` (a store Session) and its results
    baseline_session: Any = None
    baseline: list | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings as the store keeps them (and a resumed run reads them back)."""
        return {"measurement": self.measurement.__dict__, "timeout_s": self.timeout, "idle_s": self.idle_s,
                "meters": self.meters, "memory_limit_bytes": self.memory_limit}


def resume(request, store) -> tuple[Any, Any, list, Measurement]:
    """The stored session ``request.resume`` names, the request with the settings it reuses, its cells and
    its measurement."""
    from cnnbench.execution.runner import Cell
    from cnnbench.spec import parse_spec

    if store is None:
        raise UsageError("--resume needs the results store")
    planned = [flag for attr, flag in PLANNED.items() if attr in request.given]
    if planned:
        raise UsageError(f"--resume runs the grid of the stored run as it was planned; leave out {', '.join(planned)}")
    session = store.resolve(request.resume)
    stored_plan = store.plan(session.id)
    if stored_plan is None:
        raise UsageError(f"run {session.id} was stored before cnnbench kept the plan of a grid; it cannot be resumed")
    reused = {attr: str(session.settings[key]) for attr, key in REUSED.items()
              if attr not in request.given and session.settings.get(key) is not None}
    cells = [Cell(RunConfig.from_dict(p["config"]), parse_spec(p["spec"]["data"], p["spec"]["source"]))
             for p in stored_plan]
    return session, request.but(**reused), cells, Measurement(**session.settings["measurement"])


def prepare(request, host, store) -> GridPlan:
    """``request`` (a ``GridRequest``) checked and planned; ``store``: the open results store, or None."""
    from cnnbench.execution.cooldown import parse_cooldown
    from cnnbench.planning.cells import plan, pythons_for

    resumed, previous = None, {}
    if request.resume:
        resumed, request, cells, measurement = resume(request, store)
        previous = dict(store.results(resumed.id))
    else:
        if request.preset:
            from cnnbench.planning.presets import apply_preset

            request = request.but()  # the preset fills a copy: the caller's request stays as given
            apply_preset(request, "compare", request.given)
        cells, measurement = plan(request, host, request.single)
    baseline_session = baseline = None
    if request.baseline:
        if store is None:
            raise UsageError("--baseline needs the results store")
        # resolved before anything is measured: a wrong reference costs nothing
        baseline_session = store.resolve(request.baseline)
        baseline = [r for _, r in store.results(baseline_session.id)]
    pythons = pythons_for(request.python, sorted({c.config.framework for c in cells}), host)
    timeout = positive_float("--timeout", request.timeout, MAX_TIMEOUT_S)
    if measurement.stable is not None and measurement.stable_max_time >= timeout:
        raise UsageError(f"--stable-max-time {measurement.stable_max_time:g} must be below --timeout "
                         f"{timeout:g}, or every cell that misses its target is stopped as a timeout")
    return GridPlan(
        cells=cells, measurement=measurement, pythons=pythons, timeout=timeout,
        idle_s=positive_float("--idle", request.idle, MAX_MIN_TIME_S, allow_zero=True),
        memory_limit=memory_size("--memory-limit", request.memory_limit) if request.memory_limit else None,
        cooldown=parse_cooldown(request.cooldown), meters=request.meters, resumed=resumed, previous=previous,
        baseline_session=baseline_session, baseline=baseline)
