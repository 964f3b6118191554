"""The executor seam: how planned cells are run. Planning, metering and the store never see which one runs
them; a cluster executor (each cell a job on a node of its own) implements the same ``run``.

``LocalExecutor`` is today's behaviour: on this machine, one worker process per cell, in order, sampled by
the host's meters while it runs.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

from cnnbench.config import Measurement
from cnnbench.results.record import Result


class Executor(Protocol):
    def run(self, cells: list, measurement: Measurement, host: Any, *, timeout: float | None, meters: Any,
            pythons: dict[str, str], memory_limit: int | None, cooldown: Any,
            on_start: Callable[[int, Any], None] | None = None,
            say: Callable[[str], None] | None = None) -> Iterator[Result]:
        """Yield one Result per cell, in the cells' order; a failed cell is a Result, never an exception."""


class LocalExecutor:
    """One worker process per cell on this machine (``cnnbench.execution.runner.run_grid``)."""

    def run(self, cells, measurement, host, *, timeout, meters, pythons, memory_limit, cooldown,
            on_start=None, say=None) -> Iterator[Result]:
        from cnnbench.execution import runner  # looked up per run: tests stand in for run_grid

        return runner.run_grid(cells, measurement, host, timeout=timeout, meters=meters, pythons=pythons,
                               energy_unavailable=meters.no_energy_reason if meters is not None else None,
                               on_start=on_start, memory_limit=memory_limit, cooldown=cooldown, say=say)
