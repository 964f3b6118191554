"""The Python API: ``cnnbench.compare(...)``, ``cnnbench.run(...)`` and ``cnnbench.load(RUN)`` for notebooks
and scripts. The keyword arguments become the same typed request the command line builds (no argv is
parsed); it goes through the very same planning, validation, workers and results store, and a ``Results``
list comes back. ``execute`` runs any grid request: the command line's grid commands call it too.

    >>> import cnnbench
    >>> results = cnnbench.compare(frameworks=["torch", "caffe"], networks="lenet", batch_size=[8, 16],
    ...                            device="cpu", min_time=0.2)
    >>> print(results)            # the table ``cnnbench compare`` prints
    >>> results.to_pandas()       # one row per cell (pandas installed)
    >>> results.plot("fig.png")   # the paper-style figure
    >>> cnnbench.load("latest").compare_to(results.session)
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Mapping, TextIO

from cnnbench.planning.requests import GridRequest
from cnnbench.plural import count
from cnnbench.results.record import Result


class Results(list):
    """The results of one grid, in grid order: a list of ``Result`` with a table, a figure, a DataFrame,
    and the stored run they belong to."""

    def __init__(self, results: Iterable[Result] = (), *, session: int | None = None, db: str | None = None,
                 cells_planned: int | None = None, interrupted: bool = False, store_error: str | None = None):
        super().__init__(results)
        #: The run id in the results store (None when not stored).
        self.session = session
        self.db = db
        self.cells_planned = len(self) if cells_planned is None else cells_planned
        self.interrupted = interrupted
        self.store_error = store_error

    def table(self) -> str:
        from cnnbench.results.report import results_table

        return results_table(list(self))

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for r in self:
            counts[r.status] = counts.get(r.status, 0) + 1
        statuses = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
        where = f"run {self.session}" if self.session is not None else "not stored"
        cut = ", interrupted" if self.interrupted else ""
        return f"<Results {where}: {len(self)} of {count(self.cells_planned, 'cell')} ({statuses}){cut}>"

    def _repr_markdown_(self) -> str:
        from cnnbench.results.report import results_table

        return results_table(list(self), tablefmt="github")

    def to_dicts(self) -> list[dict[str, Any]]:
        """The full JSON records."""
        return [r.to_dict() for r in self]

    def to_json(self) -> str:
        from cnnbench.results.report import results_json

        return results_json(list(self), {"session": self.session} if self.session is not None else None)

    def to_pandas(self):
        """A DataFrame, one row per cell, with the columns of ``cnnbench report --format csv`` (missing
        figures are NaN, never 0). Needs pandas: ``pip install 'cnnbench[pandas]'``."""
        try:
            import pandas
        except ImportError:
            raise ImportError("Results.to_pandas needs pandas: pip install 'cnnbench[pandas]'") from None
        from cnnbench.results.report import INTEGER_COLUMNS, TEXT_COLUMNS, flat_rows

        frame = pandas.DataFrame(flat_rows(list(self)))
        for column in frame.columns:
            if column in INTEGER_COLUMNS:
                frame[column] = frame[column].astype("Int64")  # counts stay whole; None -> <NA>
            elif column not in TEXT_COLUMNS and not column.endswith("_method"):
                frame[column] = pandas.to_numeric(frame[column]).astype(float)  # None -> NaN, not 0
        return frame

    def plot(self, path: str | None = None, kind: str = "auto", title: str | None = None):
        """The paper-style figure: saved to ``path`` (.png, .svg, .pdf) when given; returns the Figure."""
        from cnnbench.results.plots import build_figure, write_figure

        title = title or (f"cnnbench run {self.session}" if self.session is not None else None)
        figure = build_figure(list(self), kind=kind, title=title)
        if path is not None:
            write_figure(figure, path)
        return figure

    def compare_to(self, baseline: Results | int | str, db: str | None = None):
        """Each cell's change in time and energy against ``baseline`` (Results, or a stored run reference)."""
        from cnnbench.results.baseline import compare_results

        if not isinstance(baseline, list):
            baseline = load(baseline, db=db or self.db)
        return compare_results(list(self), list(baseline))


def command_line(command: str, settings: Mapping[str, Any]) -> list[str]:
    """The command line that asks for ``settings`` (recorded with the stored run, as the CLI records its
    own): lists become comma lists, dicts NAME=VALUE flags."""
    argv = [command]
    for name, value in settings.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                argv += [flag, f"{key}={item}"]
        elif isinstance(value, (list, tuple, set)):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def _as_text(name: str, value: Any) -> Any:
    """A keyword argument in the form a request holds (the command line's): lists as comma lists, numbers
    as text, mappings as NAME=VALUE texts; ``stable=True`` is the default target."""
    if isinstance(value, Mapping):
        return [f"{key}={item}" for key, item in value.items()]
    if name == "stable" and value is True:
        from cnnbench.results.quality import STABLE_TARGET

        return f"{STABLE_TARGET * 100:g}"
    if isinstance(value, (list, tuple, set)):
        value = ",".join(str(v) for v in value)
    if value is None or value is False:
        return None
    return [str(value)] if name in ("python", "option") else str(value)  # repeatable flags: a list of texts


def _given(function, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that differ from ``function``'s defaults (which are the command line's): the others
    stay the request's defaults, so the stored command line shows what was asked for, and ``resume`` can
    tell a setting given again from a default."""
    import inspect

    parameters = inspect.signature(function).parameters
    return {k: v for k, v in settings.items() if k not in parameters or v != parameters[k].default}


def request_for(command: str, settings: dict[str, Any], db: str | None, store: bool) -> GridRequest:
    """The request of ``cnnbench COMMAND`` with the keyword arguments ``settings`` (those given)."""
    given = {name: value for name, value in {**settings, "db": db}.items() if value is not None and value is not False}
    values = {name: _as_text(name, value) for name, value in given.items()}
    return GridRequest.from_values({"command": command, **values, "store": store},
                                   argv=command_line(command, {**settings, "db": db}), given=set(given))


def execute(request: GridRequest, *, stream: TextIO = sys.stderr, show_progress: bool = False,
            annotate: Callable[[Result], None] | None = None, executor=None):
    """Run the grid ``request`` describes (``run``, ``compare``, a ``dvfs`` workload): plan it, then run it
    through ``executor`` (default: a worker process per cell here), storing as it goes. Returns the
    ``cnnbench.execution.session.GridRun``; bad values raise ``UsageError`` before anything is measured."""
    from cnnbench.execution.session import closed_on_error, open_store, run_plan
    from cnnbench.planning.grid import prepare
    from cnnbench.plugins import get_host

    host = get_host()
    store = open_store(request)
    with closed_on_error(store):
        grid = prepare(request, host, store)
    return run_plan(grid, host, store, kind="run" if request.single else "compare", argv=request.argv,
                    stream=stream, show_progress=show_progress, annotate=annotate, executor=executor)


def _execute(command: str, settings: dict[str, Any], db: str | None, store: bool, progress: bool) -> Results:
    run = execute(request_for(command, settings, db, store), show_progress=progress and sys.stderr.isatty())
    if run.interrupted:
        print(f"cnnbench: interrupted; {len(run.results)} of {count(run.cells_planned, 'cell')} finished", file=sys.stderr)
    if run.store_error:
        print(f"cnnbench: {run.store_error}", file=sys.stderr)
    return Results(run.results, session=run.session_id, db=run.db_path, cells_planned=run.cells_planned,
                   interrupted=bool(run.interrupted), store_error=run.store_error)


def compare(frameworks: str | Iterable[str] | None = None, networks: str | Iterable[str] = "alexnet", *,
            batch_size=None, device=None, precision="fp32", kernels=None, threads=None,
            option: Mapping[str, str] | None = None, python: Mapping[str, str] | None = None,
            warmup: int = 2, min_time: float = 1.0, repeats: int = 5, iterations: int | None = None,
            stable: bool | float | None = None, stable_max_time: float | None = None,
            timeout: float = 1800, memory_limit: str | int | None = None, meters: str | Iterable[str] = "auto",
            idle: float = 5, resume: int | str | None = None, db: str | None = None, store: bool = True,
            progress: bool = False) -> Results:
    """``cnnbench compare``: the grid over every combination of the given values (a value or a list per
    axis). Bad values raise ``cnnbench.config.UsageError`` (a bad network: ``cnnbench.spec.SpecError``)
    with the message the command line prints.
    Results are stored (``db``: the store's path; ``store=False``: not at all) unless told otherwise."""
    settings = dict(frameworks=frameworks, networks=networks, batch_size=batch_size, device=device,
                    precision=precision, kernels=kernels, threads=threads, option=option, python=python,
                    warmup=warmup, min_time=min_time, repeats=repeats, iterations=iterations, stable=stable,
                    stable_max_time=stable_max_time, timeout=timeout,
                    memory_limit=memory_limit, meters=meters, idle=idle, resume=resume)
    return _execute("compare", _given(compare, settings), db, store, progress)


def run(framework: str, network: str = "alexnet", *, batch_size=None, device=None, precision="fp32",
        kernels=None, threads=None, option: Mapping[str, str] | None = None, python: Mapping[str, str] | None = None,
        warmup: int = 2, min_time: float = 1.0, repeats: int = 5, iterations: int | None = None,
        stable: bool | float | None = None, stable_max_time: float | None = None,
        timeout: float = 1800, memory_limit: str | int | None = None, meters: str | Iterable[str] = "auto",
        idle: float = 5, db: str | None = None, store: bool = True, progress: bool = False) -> Results:
    """``cnnbench run``: one cell. Returns a ``Results`` of one ``Result``."""
    settings = dict(framework=framework, network=network, batch_size=batch_size, device=device,
                    precision=precision, kernels=kernels, threads=threads, option=option, python=python,
                    warmup=warmup, min_time=min_time, repeats=repeats, iterations=iterations, stable=stable,
                    stable_max_time=stable_max_time, timeout=timeout,
                    memory_limit=memory_limit, meters=meters, idle=idle)
    return _execute("run", _given(run, settings), db, store, progress)


def load(run: int | str = "latest", db: str | None = None) -> Results:
    """A stored run (an id, ``"latest"`` or ``-K``) from the results store."""
    from cnnbench.results.store import Store, default_path

    with Store(db or default_path(), create=False) as store:
        session = store.resolve(str(run))
        stored = store.results(session.id)
        return Results([r for _, r in stored], session=session.id, db=store.path,
                       cells_planned=session.cells_planned, interrupted=session.shown_state != "complete")


def history(db: str | None = None, limit: int | None = None) -> list:
    """The stored runs (``cnnbench.results.store.Session``), newest first."""
    import os

    from cnnbench.results.store import Store, default_path

    if not os.path.exists(db or default_path()):
        return []  # nothing stored yet, as `cnnbench history` says
    with Store(db or default_path(), create=False) as store:
        return store.sessions(limit)
