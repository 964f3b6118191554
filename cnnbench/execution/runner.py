"""The host side of a run: spawn one worker per cell, read its events, enforce the timeout, and turn
whatever happens (a result, a typed refusal, a crash, a signal, a hang) into that cell's Result."""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from cnnbench.config import Measurement, RunConfig, format_size
from cnnbench.plugins import PluginHost
from cnnbench.system.provenance import host_inventory
from cnnbench.results.quality import assess
from cnnbench.system.load import LoadProbe
from cnnbench.results.record import Result
from cnnbench.spec import NetworkSpec
from cnnbench.execution.worker import FINAL_EVENTS, PROTOCOL_VERSION

#: Seconds between SIGTERM and SIGKILL when a worker must be stopped.
KILL_GRACE_S = 3.0
#: Seconds between two readings of a worker's resident memory under --memory-limit.
MEMORY_POLL_S = 0.25
STDERR_TAIL_LINES = 50
EventHandler = Callable[[dict[str, Any], subprocess.Popen], None]


@dataclass(frozen=True)
class Cell:
    config: RunConfig
    spec: NetworkSpec


def new_result(config: RunConfig, status: str, reason: str | None = None) -> Result:
    return Result(
        framework=config.framework,
        network=config.network,
        batch_size=config.batch_size,
        device=config.device,
        precision=config.precision,
        kernels=config.kernels,
        threads=config.threads,
        status=status,
        reason=reason,
        options=dict(config.options),
    )


def preflight(cell: Cell, host: PluginHost, own_interpreter: bool = False) -> Result | None:
    """A Result for a cell that needs no worker (framework unavailable, axis value unsupported).

    With ``own_interpreter`` the framework runs under another Python, whose packages the host cannot
    see: its worker says whether the framework imports there."""
    config = cell.config
    cls = host.adapter(config.framework)
    availability = host.availability(config.framework)
    if not availability.available and not own_interpreter:
        hint = f"; install with: {availability.install_hint}" if availability.install_hint else ""
        return new_result(config, "unavailable", f"{availability.reason}{hint}")
    caps = cls.capabilities(config.device_kind)
    for axis, value, allowed in (
        ("precision", config.precision, caps.precisions),
        ("kernels", config.kernels, caps.kernels),
    ):
        if value not in allowed:
            reason = caps.unsupported.get(value) or (
                f"{config.framework} supports {axis} {', '.join(allowed)} on {config.device_kind}"
            )
            return new_result(config, "unsupported", reason)
    if config.threads and not caps.threads:
        return new_result(config, "unsupported", f"{config.framework} cannot set its thread count")
    return None


def _source_root(module_name: str) -> str | None:
    """The folder above a package imported from a source tree; None for an installed one, whose
    site-packages must not leak into a worker that may run another interpreter."""
    module = sys.modules.get(module_name.split(".")[0])
    file = getattr(module, "__file__", None)
    if not file:
        return None
    root = Path(file).resolve().parent.parent
    return None if root.name in ("site-packages", "dist-packages") else str(root)


def _python_path(adapter_module: str) -> str:
    """PYTHONPATH for the worker: a source checkout's cnnbench and adapter come first, so a bare
    checkout (``PYTHONPATH=.:plugins``) and an installed cnnbench behave the same."""
    entries = [root for root in (_source_root("cnnbench"), _source_root(adapter_module)) if root]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        entries.append(existing)
    return os.pathsep.join(dict.fromkeys(entries))


def worker_env(config: RunConfig, adapter_module: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = _python_path(adapter_module)
    env["PYTHONUNBUFFERED"] = "1"
    if config.threads:
        # Thread pools read these when the framework loads, before the adapter can set anything.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(config.threads)
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the worker's process group, give it a grace period, then SIGKILL the whole group
    (always: children that ignore SIGTERM must not outlive a worker that obeyed it)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def resident_bytes(pid: int) -> int | None:
    """Resident memory of a process and its descendants (Linux /proc); None where it cannot be read."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/statm") as f:
                total += int(f.read().split()[1]) * page
            # each thread lists the children it started
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except (OSError, ValueError, IndexError):
            if current == pid and not total:
                return None
    return total


def _pump(stream, sink: Callable[[str | None], None]) -> None:
    try:
        for line in stream:
            sink(line)
    finally:
        sink(None)  # the reader never leaves the host waiting, whatever happened to it


@dataclass
class WorkerOutcome:
    """How one worker process ended: its final event (if any) and what else the host saw."""

    final: dict[str, Any] | None
    hello: dict[str, Any]
    returncode: int
    timed_out: bool
    timeout: float | None
    stderr_tail: list[str]
    started: float
    #: --memory-limit in bytes, and the resident memory that went over it (the worker was then stopped).
    memory_limit: int | None = None
    memory_seen: int | None = None

    def failure(self) -> tuple[str, str] | None:
        """(status, reason) when the worker ended without a final event; None when it sent one."""
        if self.final is not None:
            return None
        if self.memory_seen is not None:
            return "oom", (f"the worker's resident memory reached {format_size(self.memory_seen)}, over "
                           f"--memory-limit {format_size(self.memory_limit)}; the worker was stopped")
        if self.timed_out:
            return "timeout", f"no result within --timeout {self.timeout:g} s; the worker was stopped"
        if self.returncode < 0:
            signum = -self.returncode
            name = signal.Signals(signum).name if signum in signal.valid_signals() else str(signum)
            hint = " (the kernel's out-of-memory killer sends SIGKILL too)" if name == "SIGKILL" else ""
            if self.memory_limit and name in ("SIGABRT", "SIGSEGV", "SIGBUS"):
                # a native allocator that cannot cope with a refused allocation ends the process
                hint = f" (under --memory-limit {format_size(self.memory_limit)}, a refused allocation can end a worker so)"
            return "error", f"worker killed by {name}{hint}"
        last = next((line.strip() for line in reversed(self.stderr_tail) if line.strip()), "")
        detail = f": {last}" if last else ""
        return "error", f"worker exited with code {self.returncode} without a result{detail}"


def run_worker(
    job: dict[str, Any],
    config: RunConfig,
    *,
    timeout: float | None = None,
    python: str | None = None,
    adapter_module: str = "",
    on_event: EventHandler | None = None,
    memory_limit: int | None = None,
) -> WorkerOutcome:
    """Run one job in a fresh worker process; return how it ended, whatever the worker does.

    With ``memory_limit`` (bytes) the worker limits its own data segment (an allocation beyond it fails
    in the framework, which reports out-of-memory), and the host stops a worker whose resident memory,
    with its children's, goes over the limit all the same (status ``oom``)."""
    job = {"protocol": PROTOCOL_VERSION, **job}
    if memory_limit:
        job["memory_limit_bytes"] = memory_limit
    started = time.monotonic()
    proc = subprocess.Popen(
        [python or sys.executable, "-m", "cnnbench.execution.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=worker_env(config, adapter_module),
        # A library may print any bytes to stderr; a decoding error must not kill the reader.
        encoding="utf-8",
        errors="replace",
        # Its own process group, so a timeout or Ctrl-C ends the worker and anything it spawned.
        start_new_session=True,
    )
    events: queue.Queue[str | None] = queue.Queue()
    stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    threading.Thread(target=_pump, args=(proc.stdout, events.put), daemon=True).start()
    err_thread = threading.Thread(
        target=_pump, args=(proc.stderr, lambda line: line is not None and stderr_tail.append(line)), daemon=True
    )
    err_thread.start()

    final: dict[str, Any] | None = None
    hello: dict[str, Any] = {}
    timed_out = False
    memory_seen: int | None = None
    deadline = None if timeout is None else started + timeout
    next_poll = started + MEMORY_POLL_S
    try:
        try:
            # The job is small (a few KiB) next to a pipe's buffer, so this write cannot block.
            proc.stdin.write(json.dumps(job))
        except BrokenPipeError:
            pass  # the worker died at once; its exit status tells the story below
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                _kill_group(proc)
                break
            if memory_limit and final is None and now >= next_poll:
                next_poll = now + MEMORY_POLL_S
                resident = resident_bytes(proc.pid)
                if resident is not None and resident > memory_limit:
                    memory_seen = resident
                    _kill_group(proc)
                    break
            wait = None if deadline is None else deadline - now
            if memory_limit:
                wait = max(0.0, next_poll - now) if wait is None else min(wait, max(0.0, next_poll - now))
            try:
                line = events.get(timeout=wait)
            except queue.Empty:
                continue
            if line is None:
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                stderr_tail.append(f"(stray worker output) {line}")
                continue
            if event.get("event") == "hello":
                hello = event
            if event.get("event") in FINAL_EVENTS:
                final = event
            if on_event is not None:
                on_event(event, proc)
        if not timed_out:
            # The deadline holds after stdout closes too: a worker can hang on its way out.
            try:
                proc.wait(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                timed_out = final is None
    except BaseException:
        # Ctrl-C or any host failure: never leave a worker behind.
        _kill_group(proc)
        raise
    err_thread.join(timeout=5)
    if memory_seen is not None:
        final = None  # whatever it sent last, the worker did not end on its own
    return WorkerOutcome(final, hello, proc.returncode, timed_out, timeout, list(stderr_tail), started,
                         memory_limit, memory_seen)


def run_cell(
    cell: Cell,
    measurement: Measurement,
    *,
    timeout: float | None = None,
    python: str | None = None,
    adapter_module: str = "",
    on_event: EventHandler | None = None,
    memory_limit: int | None = None,
) -> Result:
    """Time one cell in a fresh worker process and return its Result, whatever the worker does."""
    job = {
        "mode": "bench",
        "config": cell.config.to_dict(),
        "measurement": asdict(measurement),
        "spec": {"data": cell.spec.data, "source": cell.spec.source},
    }
    outcome = run_worker(job, cell.config, timeout=timeout, python=python, adapter_module=adapter_module,
                         on_event=on_event, memory_limit=memory_limit)
    return to_result(cell, outcome)


def to_result(cell: Cell, outcome: WorkerOutcome) -> Result:
    config = cell.config
    final, hello, stderr_tail = outcome.final, outcome.hello, outcome.stderr_tail
    failure = outcome.failure()
    if failure is not None:
        result = new_result(config, *failure)
    else:
        kind = final["event"]
        reason = final.get("reason") or final.get("message")
        if kind == "error":
            reason = f"{final.get('type')}: {final.get('message')}"
        result = new_result(config, FINAL_EVENTS[kind], reason)
        if result.status == "oom" and outcome.memory_limit:
            result.reason = f"{reason} (under --memory-limit {format_size(outcome.memory_limit)})"
    if final is not None and final["event"] == "result":
        result.fill_timing(final["windows"], cell.spec.training_flops)
        result.peak_memory_bytes = final.get("peak_memory_bytes")
        result.peak_memory_kind = final.get("peak_memory_kind")
        result.timings = final.get("timings", {})
    result.timings["wall_s"] = time.monotonic() - outcome.started
    result.provenance = {
        "host": host_inventory(),
        "worker": {
            "python": hello.get("python"),
            "framework_version": hello.get("framework_version"),
            **((final or {}).get("inventory") or {}),
            "threads_used": (final or {}).get("threads"),
        },
        "network": {
            "source": cell.spec.source,
            "params": cell.spec.param_count,
            "forward_flops_per_image": cell.spec.forward_flops,
            "training_flops_per_image": cell.spec.training_flops,
        },
    }
    if result.failed and stderr_tail:
        result.provenance["worker_stderr_tail"] = stderr_tail[-10:]
    return result


def gpu_domain(result: Result, meters: Any) -> str | None:
    """The meter domain of the GPU the worker ran on, by the UUID / PCI bus id it reported."""
    worker = result.provenance.get("worker", {})
    if result.device.startswith("cuda") and (worker.get("gpu_uuid") or worker.get("gpu_pci_bus_id")):
        return meters.gpu_domain(uuid=worker.get("gpu_uuid"), pci_bus_id=worker.get("gpu_pci_bus_id"))
    return None


def attach_meters(result: Result, meters: Any) -> None:
    from cnnbench.meters.energy import attach_energy

    gpu = gpu_domain(result, meters)
    attach_energy(result, meters, gpu)
    inventory = meters.inventory()
    result.provenance["meters"] = {"periods_s": meters.periods(), "idle_power_w": dict(meters.idle_power or {}),
                                   "idle_baseline": getattr(meters, "idle_baseline", None)}
    if gpu is not None:
        # ECC, clocks, power limit and driver of the GPU the cell ran on, as NVML reports them.
        gpus = (inventory.get("nvml") or {}).get("gpus") or []
        result.provenance["gpu"] = next((g for g in gpus if g.get("domain") == gpu), None)
        result.provenance["nvml"] = {k: v for k, v in (inventory.get("nvml") or {}).items() if k != "gpus"}
    from cnnbench.meters.gpucheck import attach_gpu_checks

    attach_gpu_checks(result, meters, gpu)


def _attach_heat(result: Result, monitor: Any, meters: Any, waited: dict[str, Any] | None) -> None:
    """The cell's heat and clocks per window (and throttle warnings), and the cooldown wait before it."""
    from cnnbench.meters.conditions import attach_conditions

    metered = meters is not None and bool(meters.domains)
    attach_conditions(result, monitor, gpu_domain(result, meters) if metered else None,
                      meters.gpu_domains() if metered else [])
    if result.windows:
        monitor.forget_before(result.windows[-1]["end"])
    if waited is not None:
        result.timings["cooldown_s"] = waited["waited_s"]
        result.provenance["cooldown"] = waited


def run_grid(
    cells: list[Cell],
    measurement: Measurement,
    host: PluginHost,
    *,
    timeout: float | None = None,
    meters: Any = None,
    pythons: dict[str, str] | None = None,
    energy_unavailable: str | None = None,
    on_event: EventHandler | None = None,
    on_start: Callable[[int, Cell], None] | None = None,
    memory_limit: int | None = None,
    cooldown: Any = None,
    say: Callable[[str], None] | None = None,
) -> Iterator[Result]:
    """Yield one Result per cell, in order; a failed cell never stops the grid.

    ``meters`` is a started MeterSession (or None): each finished cell's windows are integrated in
    every domain it samples. ``pythons`` maps a framework to the interpreter its workers run under
    (its own environment); the others run under this one. ``memory_limit`` (bytes) holds for each
    cell's worker (see :func:`run_worker`). ``cooldown`` (a ``cnnbench.execution.cooldown.CooldownSpec``) waits for
    the GPU to cool before each cell that runs a worker; ``say`` tells the user things once (why it cannot)."""
    from cnnbench.execution.cooldown import Cooldown
    from cnnbench.meters.conditions import ConditionsMonitor

    pythons = pythons or {}
    metered = meters is not None and bool(meters.domains)
    # heat and clocks through every window of the grid; its thread ends with the grid (or when it is dropped)
    monitor = ConditionsMonitor(meters.gpu_conditions if metered else None).start()
    waiter = Cooldown(cooldown, meters.gpu_temperatures if metered else None, say) if cooldown else None
    for index, cell in enumerate(cells):
        if on_start is not None:
            on_start(index, cell)
        python = pythons.get(cell.config.framework)
        result = preflight(cell, host, own_interpreter=python is not None)
        waited = waiter.wait() if waiter is not None and result is None else None
        if result is not None:
            result.provenance = {"host": host_inventory()}
        else:
            adapter = host.adapter(cell.config.framework)
            probe = LoadProbe.open()
            result = run_cell(
                cell, measurement, timeout=timeout, python=python, adapter_module=adapter.__module__,
                on_event=on_event, memory_limit=memory_limit,
            )
            # the quality gate: spread across windows, the load around the worker, what --stable did
            assess(result, probe.close(), measurement.stable, measurement.stable_max_time)
        if meters is not None and meters.domains and result.status == "ok":
            attach_meters(result, meters)
        _attach_heat(result, monitor, meters, waited)
        if not result.energy:
            result.energy_unavailable = energy_unavailable
        yield result
    monitor.stop()
