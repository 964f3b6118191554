"""Applying a dvfs setting and putting the originals back: the state file, the restore, and the sweep loop
that guarantees it on every way out (see the Restoring paragraph of ``cnnbench.system.dvfs``).

    NEVER pass ``--allow-clock-changes`` on a shared or lent machine: what this module changes is the
    whole GPU's (or CPU's), for every user, and outlives the process that changed it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from cnnbench.system import dvfs
from cnnbench.config import UsageError

# -- the state file -----------------------------------------------------------------------------------


#: Deferred while settings are applied or restored, so that none can fall between a change and its record.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def state_path() -> Path:
    from cnnbench.system.envs import data_dir

    return data_dir() / dvfs.STATE_FILE


def read_state() -> dict[str, Any] | None:
    path = state_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"the dvfs state file {path} cannot be read ({exc}); the originals it held are lost: "
                         "reset by hand (nvidia-smi -i N -rac; nvidia-smi -i N -pl W with the default limit "
                         "nvidia-smi -q -d POWER shows)") from None


def write_state(state: dict[str, Any]) -> None:
    """Atomically and durably: a crash right after must find the whole file, or none."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def alive(pid: int) -> bool:
    """A cnnbench process with this pid runs here (a reused pid of another program does not count)."""
    try:
        os.kill(pid, 0)
        return b"cnnbench" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def check_no_state() -> None:
    """A sweep may start only when no other one is running or left its changes behind."""
    state = read_state()
    if state is None:
        return
    pid = state.get("pid")
    if state.get("hostname") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and alive(pid):
        raise UsageError(f"another cnnbench dvfs (pid {pid}) is changing clocks now ({state_path()}); wait for it")
    raise UsageError(f"a dvfs sweep (pid {pid}, started {state.get('started')}) ended without restoring the "
                     f"settings it changed; run 'cnnbench dvfs --restore' first ({state_path()})")


def new_state(gpus: list[dict[str, Any]] | None = None, cpu: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    import sys

    return {"version": dvfs.STATE_VERSION, "pid": os.getpid(), "hostname": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:], "gpus": gpus or [], "cpu": cpu or []}


def gpu_originals(gpu: dvfs.Gpu, clocks: bool, power: bool) -> dict[str, Any]:
    """What to put back on ``gpu``: only what the sweep will change (restoring the rest could need a
    privilege the sweep does not have)."""
    return {"index": gpu.index, "uuid": gpu.uuid, "name": gpu.name,
            "application_mhz": list(gpu.application) if clocks and gpu.application else None,
            "power_limit_w": gpu.power_limit_w if power else None}


# -- applying and restoring ---------------------------------------------------------------------------


def _nvml_call(nvml: Any, what: str, call: Callable, *args: Any) -> None:
    try:
        call(*args)
    except nvml.NVMLError as exc:
        denied = getattr(exc, "value", None) == dvfs.nvml_const(nvml, "NVML_ERROR_NO_PERMISSION", dvfs.NO_PERMISSION)
        hint = " (run as root; never on a shared or lent machine)" if denied else ""
        raise dvfs.ApplyError(f"{what} failed: {dvfs.describe_error(exc)}{hint}", permission=denied) from None


def apply_gpu(nvml: Any, gpu: dvfs.Gpu, setting: dvfs.GpuSetting) -> dict[str, Any]:
    """Apply one setting and read back what the GPU now reports (for the results' provenance)."""
    if setting.memory_mhz is not None:
        _nvml_call(nvml, f"GPU {gpu.index}: application clocks {setting.memory_mhz}:{setting.graphics_mhz} MHz",
                   nvml.nvmlDeviceSetApplicationsClocks, gpu.handle, setting.memory_mhz, setting.graphics_mhz)
    if setting.power_limit_w is not None:
        try:
            _nvml_call(nvml, f"GPU {gpu.index}: power limit {setting.power_limit_w:g} W",
                       nvml.nvmlDeviceSetPowerManagementLimit, gpu.handle, int(round(setting.power_limit_w * 1e3)))
        except dvfs.ApplyError as exc:
            exc.changed = setting.memory_mhz is not None
            raise
    now = {"gpu": gpu.index, "uuid": gpu.uuid, "setting": asdict(setting)}
    with contextlib.suppress(nvml.NVMLError):
        now["application_mhz"] = [int(nvml.nvmlDeviceGetApplicationsClock(gpu.handle, c))
                                  for c in (dvfs.nvml_const(nvml, "NVML_CLOCK_MEM", dvfs.CLOCK_MEM),
                                            dvfs.nvml_const(nvml, "NVML_CLOCK_GRAPHICS", dvfs.CLOCK_GRAPHICS))]
    with contextlib.suppress(nvml.NVMLError):
        now["power_limit_w"] = nvml.nvmlDeviceGetPowerManagementLimit(gpu.handle) / 1e3
    return now


def _restore_gpus(entries: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    done: list[str] = []
    errors: list[str] = []
    with dvfs.nvml_library() as nvml:
        for entry in entries:
            try:
                # by UUID: after a reboot or a driver reload the indices may differ
                handle = nvml.nvmlDeviceGetHandleByUUID(entry["uuid"])
            except nvml.NVMLError as exc:
                errors.append(f"GPU {entry['uuid']} ({entry.get('name')}) not found: {dvfs.describe_error(exc)}")
                continue
            parts = []
            steps = []
            if entry.get("application_mhz"):
                mem, graphics = entry["application_mhz"]
                steps.append((f"application clocks {mem}:{graphics} MHz", nvml.nvmlDeviceSetApplicationsClocks,
                              (handle, mem, graphics)))
            if entry.get("power_limit_w") is not None:
                steps.append((f"power limit {entry['power_limit_w']:g} W", nvml.nvmlDeviceSetPowerManagementLimit,
                              (handle, int(round(entry["power_limit_w"] * 1e3)))))
            for what, call, call_args in steps:  # each on its own: one refusal must not keep the other back
                try:
                    _nvml_call(nvml, f"restoring {what}", call, *call_args)
                    parts.append(what)
                except dvfs.ApplyError as exc:
                    errors.append(f"GPU {entry['index']} ({entry.get('name')}): {exc}")
            if parts:
                done.append(f"GPU {entry['index']} ({entry.get('name')}): {', '.join(parts)}")
    return done, errors


def restore(state: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Put back what ``state`` holds: (what was restored, what failed). The state file is deleted only
    when nothing failed, so that ``cnnbench dvfs --restore`` can try again."""
    from cnnbench.system.cpufreq import restore_policies

    done, errors = restore_policies(state.get("cpu") or [])
    if state.get("gpus"):
        try:
            gpu_done, gpu_errors = _restore_gpus(state["gpus"])
        except UsageError as exc:  # NVML gone (driver unloaded): nothing can be put back now
            gpu_done, gpu_errors = [], [str(exc)]
        done, errors = gpu_done + done, gpu_errors + errors
    if not errors:
        with contextlib.suppress(FileNotFoundError):
            state_path().unlink()
    return done, errors


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """SIGINT, SIGTERM and SIGHUP are recorded, not acted on, inside the block: a half-written state file
    or a half-restored GPU is worse than a stop a moment later. The caller acts on the list it gets."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous: dict[int, Any] = {}
    try:
        for s in SIGNALS:
            previous[s] = signal.signal(s, lambda signum, frame: pending.append(signum))
        yield pending
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def _stop(signum: int) -> BaseException:
    from cnnbench.errors import Terminated

    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signal.Signals(signum).name)


@dataclass
class SweepOutcome:
    #: (setting, what the hardware reported after applying it, the GridRun of its workload), in order.
    done: list[tuple[Any, dict[str, Any], Any]] = field(default_factory=list)
    #: 130 (SIGINT) or 143 (SIGTERM / SIGHUP) when the sweep was cut short.
    interrupted: int = 0
    #: Why applying a setting failed (the sweep stopped there); ``permission``: the driver said no.
    error: str | None = None
    permission: bool = False
    restored: list[str] = field(default_factory=list)
    restore_errors: list[str] = field(default_factory=list)


def sweep(state: dict[str, Any], settings: list, apply: Callable[[Any], dict[str, Any]],
          run: Callable[[Any, dict[str, Any]], Any]) -> SweepOutcome:
    """For each setting: ``apply(setting)``, then ``run(setting, applied)`` (a GridRun). ``state`` is written
    to the state file before the first change and restored on every way out; exceptions other than the
    stop signals propagate after the restore. ``SweepOutcome.restored`` says what was put back."""
    from cnnbench.errors import Terminated

    check_no_state()
    out = SweepOutcome()
    written = False
    #: Whether any setting reached the hardware: if none did, there is nothing to put back.
    touched = False
    try:
        with deferred_signals() as pending:
            write_state(state)
            written = True
        if pending:
            raise _stop(pending[0])
        for setting in settings:
            with deferred_signals() as pending:
                before, touched = touched, True  # whatever apply() raises, assume it changed something...
                try:
                    applied = apply(setting)
                except dvfs.ApplyError as exc:  # ...unless it says what it changed
                    out.error, out.permission = str(exc), exc.permission
                    touched = before or exc.changed
                    break
            if pending:
                raise _stop(pending[0])
            grid_run = run(setting, applied)
            out.done.append((setting, applied, grid_run))
            if grid_run.interrupted:
                out.interrupted = grid_run.interrupted
                break
    except KeyboardInterrupt:
        out.interrupted = 130
    except Terminated:
        out.interrupted = 143
    finally:
        while written:
            # A stop signal landing between the `finally` and the deferral cannot skip the restore:
            # it is caught here and the (idempotent) restore runs again.
            try:
                with deferred_signals() as pending:
                    if touched:
                        out.restored, out.restore_errors = restore(state)
                    else:
                        with contextlib.suppress(FileNotFoundError):
                            state_path().unlink()
                written = False
                if pending and not out.interrupted:
                    out.interrupted = 130 if pending[0] == signal.SIGINT else 143
            except (KeyboardInterrupt, Terminated) as exc:
                out.interrupted = out.interrupted or (130 if isinstance(exc, KeyboardInterrupt) else 143)
    return out
