"""A grid session: a planned grid run to stored results. Open the meters and take the idle baseline, run every
cell through an executor, store each result the moment it finishes, and keep what finished when the grid is
interrupted. The metering scaffolding here (meters named, started, idle baseline, their record) serves grids,
layers runs and dvfs sweeps alike. The CLI prints what this returns; the Python API returns it."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, TextIO

from cnnbench.errors import StoreError, Terminated, UsageError, interrupted_code
from cnnbench.plural import count
from cnnbench.results.record import REFUSED_STATUSES, Result

if TYPE_CHECKING:
    from cnnbench.execution.executor import Executor


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


def open_store(request):
    """The results store ``request.db`` names (or the default), opened before anything is measured so a
    database that cannot be written is a usage error, not a lost grid. None when storing is off."""
    from cnnbench.results.store import Store

    if getattr(request, "store", True) is False:
        return None
    try:
        return Store(request.db)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


@contextlib.contextmanager
def closed_on_error(store) -> Iterator[None]:
    """Close ``store`` (an open results store, or None) if what runs inside fails; it stays open otherwise."""
    try:
        yield
    except BaseException:
        if store is not None:
            store.close()
        raise


def start_meters(meters, idle_s: float, say: Callable[[str], None]) -> None:
    """Start sampling and take the idle baseline (``idle_s`` seconds; 0: none), where any meter can be read:
    the same for a grid, a layers run and each setting of a dvfs sweep."""
    if meters.domains:
        meters.start()
        if idle_s:
            say(f"measuring idle power for {idle_s:g} s ...")
            meters.idle(idle_s)


def meters_record(meters, idle_s: float) -> dict[str, Any]:
    """What a run's JSON document says about its meters and its idle baseline."""
    return {"domains": {d: info.to_dict() for d, info in meters.domains.items()},
            "unavailable": meters.unavailable, "idle_power_w": dict(meters.idle_power or {}), "idle_s": idle_s,
            "idle_baseline": getattr(meters, "idle_baseline", None)}


def run_plan(grid, host, store, *, kind: str, argv: list[str], stream: TextIO = sys.stderr,
             show_progress: bool = False, annotate: Callable[[Result], None] | None = None,
             executor: Executor | None = None) -> GridRun:
    """Run the planned grid ``grid`` (a ``cnnbench.planning.grid.GridPlan``) through ``executor`` (default: a
    worker process per cell here), storing each result in ``store`` (open, or None) the moment it finishes,
    under a session of ``kind`` (``run`` or ``compare``) that records ``argv``. ``store`` is closed at the end.
    ``annotate`` may add to each result before it is stored (``dvfs`` records the clock setting a cell ran at)."""
    from cnnbench.execution.executor import LocalExecutor
    from cnnbench.execution.progress import Progress

    executor = executor or LocalExecutor()
    cells, measurement, previous = grid.cells, grid.measurement, grid.previous
    todo = [(position, cell) for position, cell in enumerate(cells) if position not in previous]
    with closed_on_error(store):
        meters = open_meters(grid.meters, host)
    run = GridRun(results=[], cells_planned=len(cells), db_path=store.path if store else None)
    if grid.baseline_session is not None:
        run.baseline_session, run.baseline = grid.baseline_session, grid.baseline
    if store is not None:
        try:
            if grid.resumed is not None:
                run.session_id = grid.resumed.id
                store.claim_session(grid.resumed.id)
            else:
                plan_records = [{"config": c.config.to_dict(), "spec": {"data": c.spec.data, "source": c.spec.source}}
                                for c in cells]
                run.session_id = store.begin_session(kind, argv, plan_records, grid.settings)
        except StoreError as exc:
            store.close()
            meters.close()
            raise UsageError(str(exc)) from None
    progress = Progress(len(todo), stream, enabled=show_progress)
    if previous:
        progress.say(f"resuming run {run.session_id}: {len(previous)} of {count(len(cells), 'cell')} stored, "
                     f"{len(todo)} to run")
    new: dict[int, Result] = {}

    def on_start(index: int, cell) -> None:
        progress.start(index, cell.config.label())

    state = "complete"
    try:
        start_meters(meters, grid.idle_s, progress.say)
        for (position, _), result in zip(todo, executor.run(
                [cell for _, cell in todo], measurement, host, timeout=grid.timeout, meters=meters,
                pythons=grid.pythons, on_start=on_start, memory_limit=grid.memory_limit, cooldown=grid.cooldown,
                say=lambda text: progress.say(text) if progress.enabled else print(text, file=stream))):
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
        run.interrupted = interrupted_code(exc)
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
    run.extra = {"measurement": measurement.__dict__, "meters": meters_record(meters, grid.idle_s)}
    if run.session_id is not None:
        run.extra = {"session": run.session_id, "db": run.db_path, **run.extra}
    return run
