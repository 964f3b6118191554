"""One grid from parsed arguments to stored results: plan the cells, open the meters and the results
store, run every cell, store each result the moment it finishes, and keep what finished when the
grid is interrupted. The CLI prints what this returns; the Python API returns it."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from cnnbench.config import Measurement, RunConfig, UsageError, memory_size, positive_float
from cnnbench.results.record import REFUSED_STATUSES, Result


class Terminated(BaseException):
    """SIGTERM or SIGHUP reached the host: stop like Ctrl-C, keeping what finished."""


@dataclass
class GridRun:
    results: list[Result]
    cells_planned: int
    #: The session id in the results store (None when nothing is stored).
    session_id: int | None = None
    db_path: str | None = None
    #: 130 (SIGINT) or 143 (SIGTERM / SIGHUP) when the grid was cut short, else 0.
    interrupted: int = 0
    #: The stored run of ``--baseline`` (a store Session) and its results.
    baseline_session: Any = None
    baseline: list[Result] | None = None
    #: Cells of a resumed grid that were already stored before this process ran the rest.
    resumed_cells: int = 0
    #: Why results could not be stored (they are still returned and printed).
    store_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nothing_measured(self) -> bool:
        """Every cell was refused (unsupported or unavailable), e.g. ``--device cuda`` with no GPU: a run
        that exits 0 there would pass for a measurement in a script."""
        return bool(self.results) and all(r.status in REFUSED_STATUSES for r in self.results)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return self.interrupted
        return 1 if self.store_error or self.nothing_measured or any(r.failed for r in self.results) else 0


def open_meters(names: str, host=None):
    """The meter session ``--meters`` names. Meters asked for by name that cannot be read are a usage error
    now, before anything is measured, rather than a surprise after it."""
    from cnnbench.meters import MeterSession

    meters = MeterSession.open(names, host) if host is not None else MeterSession.open(names)
    if names not in ("auto", "none"):
        broken = {name: why for name, why in meters.unavailable.items() if ":" not in name}
        if broken:
            meters.close()
            name, why = next(iter(broken.items()))
            raise UsageError(f"meter '{name}' cannot be read here: {why}")
    return meters


def open_store(args: argparse.Namespace):
    """The results store named by ``--db`` (or the default), opened before anything is measured so a
    database that cannot be written is a usage error, not a lost grid. None when storing is off."""
    from cnnbench.results.store import Store, StoreError

    if getattr(args, "store", True) is False:
        return None
    try:
        return Store(args.db)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


#: What a resumed grid takes from the stored run; giving one of these with --resume is an error.
_PLANNED = {"frameworks": "--frameworks", "networks": "--networks", "batch_size": "--batch-size",
            "device": "--device", "precision": "--precision", "kernels": "--kernels", "threads": "--threads",
            "option": "--option", "warmup": "--warmup", "min_time": "--min-time", "repeats": "--repeats",
            "iterations": "--iterations", "preset": "--preset", "stable": "--stable",
            "stable_max_time": "--stable-max-time"}
#: Settings of the machine rather than of the grid: taken from the stored run unless given again.
_REUSED = {"timeout": "timeout_s", "meters": "meters", "idle": "idle_s", "memory_limit": "memory_limit_bytes"}


def _resume(args: argparse.Namespace, store) -> tuple[Any, list, Measurement, set[int]]:
    """The stored session ``--resume`` names, its cells, its measurement, and the positions already stored."""
    from cnnbench.cli import given
    from cnnbench.execution.runner import Cell
    from cnnbench.spec import parse_spec

    if store is None:
        raise UsageError("--resume needs the results store")
    explicit = given(args)
    planned = [flag for attr, flag in _PLANNED.items() if attr in explicit]
    if planned:
        raise UsageError(f"--resume runs the grid of the stored run as it was planned; leave out {', '.join(planned)}")
    session = store.resolve(args.resume)
    planned = store.plan(session.id)
    if planned is None:
        raise UsageError(f"run {session.id} was stored before cnnbench kept the plan of a grid; it cannot be resumed")
    for attr, key in _REUSED.items():
        if attr not in explicit and session.settings.get(key) is not None:
            setattr(args, attr, str(session.settings[key]))
    cells = [Cell(RunConfig.from_dict(p["config"]), parse_spec(p["spec"]["data"], p["spec"]["source"]))
             for p in planned]
    measurement = Measurement(**session.settings["measurement"])
    done = {position for position, _ in store.results(session.id)}
    return session, cells, measurement, done


def execute(args: argparse.Namespace, single: bool, argv: list[str], *, stream: TextIO = sys.stderr,
            show_progress: bool = False, annotate: Callable[[Result], None] | None = None) -> GridRun:
    """Run the grid ``args`` describe. ``annotate`` may add to each result before it is stored (``dvfs``
    records the clock setting a cell ran at)."""
    from cnnbench.cli import MAX_MIN_TIME_S, MAX_TIMEOUT_S, plan, pythons_for
    from cnnbench.plugins import get_host
    from cnnbench.execution.progress import Progress
    from cnnbench.execution.runner import run_grid
    from cnnbench.results.store import StoreError

    host = get_host()
    store = open_store(args)
    resumed = None
    previous: dict[int, Result] = {}
    try:
        if getattr(args, "resume", None):
            resumed, cells, measurement, _ = _resume(args, store)
            previous = dict(store.results(resumed.id))
        else:
            if getattr(args, "preset", None):
                from cnnbench.cli import given
                from cnnbench.planning.presets import apply_preset

                apply_preset(args, "compare", given(args))
            cells, measurement = plan(args, host, single)
        baseline = None
        if getattr(args, "baseline", None):
            if store is None:
                raise UsageError("--baseline needs the results store")
            # resolved before anything is measured: a wrong reference costs nothing
            baseline = store.resolve(args.baseline)
            baseline_results = [r for _, r in store.results(baseline.id)]
        pythons = pythons_for(args.python, sorted({c.config.framework for c in cells}), host)
        timeout = positive_float("--timeout", args.timeout, MAX_TIMEOUT_S)
        if measurement.stable is not None and measurement.stable_max_time >= timeout:
            raise UsageError(f"--stable-max-time {measurement.stable_max_time:g} must be below --timeout "
                             f"{timeout:g}, or every cell that misses its target is stopped as a timeout")
        idle_s = positive_float("--idle", args.idle, MAX_MIN_TIME_S, allow_zero=True)
        memory_limit = memory_size("--memory-limit", args.memory_limit) if args.memory_limit else None
        from cnnbench.execution.cooldown import parse_cooldown

        cooldown = parse_cooldown(getattr(args, "cooldown", None))
    except BaseException:
        if store is not None:
            store.close()
        raise
    todo = [(position, cell) for position, cell in enumerate(cells) if position not in previous]
    meters = open_meters(args.meters, host)
    run = GridRun(results=[], cells_planned=len(cells), db_path=store.path if store else None)
    if baseline is not None:
        run.baseline_session, run.baseline = baseline, baseline_results
    settings = {"measurement": measurement.__dict__, "timeout_s": timeout, "idle_s": idle_s, "meters": args.meters,
                "memory_limit_bytes": memory_limit}
    if store is not None:
        try:
            if resumed is not None:
                run.session_id = resumed.id
                store.claim_session(resumed.id)
            else:
                plan_records = [{"config": c.config.to_dict(), "spec": {"data": c.spec.data, "source": c.spec.source}}
                                for c in cells]
                run.session_id = store.begin_session("run" if single else "compare", argv, plan_records, settings)
        except StoreError as exc:
            store.close()
            meters.close()
            raise UsageError(str(exc)) from None
    progress = Progress(len(todo), stream, enabled=show_progress)
    if previous:
        progress.say(f"resuming run {run.session_id}: {len(previous)} of {len(cells)} cells stored, "
                     f"{len(todo)} to run")
    new: dict[int, Result] = {}

    def on_start(index: int, cell) -> None:
        progress.start(index, cell.config.label())

    state = "complete"
    try:
        if meters.domains:
            meters.start()
            if idle_s:
                progress.say(f"measuring idle power for {idle_s:g} s ...")
                meters.idle(idle_s)
        for (position, _), result in zip(todo, run_grid(
                [cell for _, cell in todo], measurement, host, timeout=timeout, meters=meters, pythons=pythons,
                energy_unavailable=meters.no_energy_reason, on_start=on_start, memory_limit=memory_limit,
                cooldown=cooldown, say=lambda text: progress.say(text) if progress.enabled else print(text, file=stream))):
            if annotate is not None:
                annotate(result)
            # stored before anything else, so a signal cannot fall between measuring a cell and keeping it
            if store is not None and run.store_error is None:
                try:
                    store.add_result(run.session_id, position, result)
                except StoreError as exc:
                    # Keep measuring: the results are still printed (and in --json) at the end.
                    run.store_error = str(exc)
                    progress.say(f"cnnbench: {exc}; the remaining results are printed but not stored")
            new[position] = result
            progress.done(result.status)
    except (KeyboardInterrupt, Terminated) as exc:
        run.interrupted = 130 if isinstance(exc, KeyboardInterrupt) else 143
        state = "interrupted"
    except BaseException:
        state = "interrupted"  # a crash of the host: what is stored stays, --resume runs the rest
        raise
    finally:
        if run.store_error:
            state = "interrupted"  # cells are missing from the store: --resume can run them again
        progress.close()
        meters.close()
        # the whole grid in plan order: what earlier sessions stored, then what this one ran
        run.results = [r for _, r in sorted({**previous, **new}.items())]
        run.resumed_cells = len(previous)
        if store is not None:
            try:
                if run.session_id is not None:
                    store.end_session(run.session_id, state)
            except StoreError as exc:
                run.store_error = run.store_error or str(exc)
            finally:
                store.close()
    run.extra = {"measurement": measurement.__dict__, "meters": {
        "domains": {d: info.to_dict() for d, info in meters.domains.items()},
        "unavailable": meters.unavailable, "idle_power_w": dict(meters.idle_power or {}), "idle_s": idle_s,
        "idle_baseline": getattr(meters, "idle_baseline", None)}}
    if run.session_id is not None:
        run.extra = {"session": run.session_id, "db": run.db_path, **run.extra}
    return run
