"""The worker: one job, one adapter, one fresh process (``python -m cnnbench.execution.worker``).

Protocol (version 1). The host writes one JSON object to the worker's stdin and closes it:

    {"protocol": 1, "mode": "bench", "config": {RunConfig}, "measurement": {Measurement},
     "spec": {"data": {...}, "source": "..."}}
    {"protocol": 1, "mode": "verify", "config": ..., "spec": ..., "arrays": "in.npz", "output": "out.npz"}
    {"protocol": 1, "mode": "layers", "config": ..., "measurement": ..., "spec": ..., "layers": [names] | null}

The worker writes JSON lines to its stdout, one event each, flushed as they happen. Every event has
``event`` and ``t`` (``time.monotonic()``, i.e. CLOCK_MONOTONIC, which the host's meters share):

    hello       pid, python, framework, framework_version
    phase       phase: "prepare" | "build" | "warmup" | "measure" | "network" (mode "layers")
    warmup      index, seconds                       (one per warm-up iteration, excluded from results)
    window      index, start, end, iterations        (a timed window; start/end are CLOCK_MONOTONIC)
    layer       index, count, name, type             (mode "layers": this layer is built and timed next)
    result      the measurement: per-window times, peak memory, threads, inventory
    verified    output (the .npz with loss, logits and gradients), inventory   (mode "verify")
    unsupported reason                               (the adapter cannot run this configuration)
    unavailable reason                               (the framework cannot be imported by this interpreter)
    oom         message
    error       type, message, traceback

Mode "layers" (``cnnbench layers``, the paper's Fig. 5) times every layer of the spec alone (or those
``layers`` names), each built by ``adapter.build_layer`` and dropped before the next: warm-up and windows
as in bench mode for ``step_layer(handle, "forward")``, then for ``"backward"`` (skipped, with a reason,
for a layer whose backward a training step does not run). Its warmup and window events carry ``layer``
and ``direction``. Then, in the same process, the whole network's training step as in bench mode
(events with ``direction`` "network"), the reference the layers' sum is checked against. Its result
holds ``windows`` (the whole network's, so it reads like a bench result) and ``layers``: per layer
``name``, ``type`` and per direction ``{"windows": [...]}`` or ``{"skipped": reason}``.

A job may carry ``memory_limit_bytes`` (``--memory-limit``): the worker sets its data-segment limit to it
before anything else is imported, so an allocation beyond it fails inside the framework (reported as
``oom``), and the host stops a worker whose resident memory goes over it all the same.

Exactly one of result / unsupported / oom / error ends a job. A worker that dies without one (a
segfault, a SIGKILL) is turned into status ``error`` by the host. Libraries that print to stdout
cannot corrupt the stream: fd 1 is pointed at stderr and the protocol keeps a private copy of it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import sys
import time
import traceback
from typing import Any, Callable, TextIO

PROTOCOL_VERSION = 1
#: Events that end a job, and the row status each one becomes.
FINAL_EVENTS = {
    "result": "ok",
    "verified": "ok",
    "unsupported": "unsupported",
    "unavailable": "unavailable",
    "oom": "oom",
    "error": "error",
}


class Channel:
    """The worker's side of the event stream."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        fields = {"event": event, "t": time.monotonic(), **fields}
        self.stream.write(json.dumps(fields) + "\n")
        self.stream.flush()


def measure(
    step: Callable[[], None],
    sync: Callable[[], None],
    warmup: int,
    min_time: float,
    repeats: int,
    iterations: int | None,
    emit: Callable[..., None],
    stable: float | None = None,
    stable_max_time: float | None = None,
) -> list[dict[str, float]]:
    """Warm up, then time ``repeats`` windows; the device is synchronised at every window edge.

    Each window runs the number of steps the last estimate predicts for ``min_time`` and, if it
    still came in short, grows by the predicted remainder until it lasts ``min_time`` (one extra
    synchronisation per growth). With ``iterations`` every window runs exactly that many steps.

    With ``stable`` (``--stable``: a relative half-width, 0.02 for 2 %) windows go on being added after
    the ``repeats`` until the 95 % interval of the median time per iteration is that close to the median,
    or until ``stable_max_time`` seconds from the first window (see :func:`cnnbench.results.quality.keep_going`).
    """
    from cnnbench.results.quality import STABLE_MAX_TIME_S, keep_going

    now = time.monotonic
    per_iter: float | None = None
    sync()
    for index in range(warmup):
        start = now()
        step()
        sync()
        per_iter = now() - start
        emit("warmup", index=index, seconds=per_iter)
    emit("phase", phase="measure")
    windows: list[dict[str, float]] = []
    index = 0
    while index < repeats or (stable is not None and keep_going(windows, stable, stable_max_time or STABLE_MAX_TIME_S)):
        if iterations:
            target = iterations
        elif per_iter:
            # 2 % margin, so noise rarely forces a growth (and its extra synchronisation).
            target = max(1, math.ceil(min_time / per_iter * 1.02))
        else:
            target = 1
        done = 0
        start = now()
        while True:
            for _ in range(target - done):
                step()
            done = target
            sync()
            end = now()
            elapsed = end - start
            if iterations or elapsed >= min_time:
                break
            rate = elapsed / done
            target = done + max(1, math.ceil((min_time - elapsed) / rate * 1.05))
        per_iter = elapsed / done
        window = {"index": index, "start": start, "end": end, "iterations": done}
        emit("window", **window)
        windows.append(window)
        index += 1
    return windows


def run_job(job: dict[str, Any], channel: Channel) -> None:
    from cnnbench.adapter import OutOfMemory, Unsupported
    from cnnbench.config import RunConfig
    from cnnbench.plugins import get_host

    emit = channel.emit
    if job.get("protocol") != PROTOCOL_VERSION:
        raise ValueError(f"worker speaks protocol {PROTOCOL_VERSION}, job has {job.get('protocol')!r}")
    mode = job.get("mode", "bench")
    if mode not in MODES:
        raise ValueError(f"unknown job mode {mode!r}; valid choices: {', '.join(MODES)}")
    config = RunConfig.from_dict(job["config"])
    host = get_host()
    cls = host.adapter(config.framework)
    availability = host.availability(config.framework)
    emit(
        "hello",
        pid=os.getpid(),
        python=sys.executable,
        framework=config.framework,
        framework_version=availability.version,
    )
    if not availability.available:
        emit("unavailable", reason=f"{availability.reason} (in {sys.executable})")
        return
    try:
        MODES[mode](cls(), config, job, emit)
    except Unsupported as exc:
        emit("unsupported", reason=exc.reason)
    except (OutOfMemory, MemoryError) as exc:
        emit("oom", message=str(exc) or type(exc).__name__)


def _spec(job: dict[str, Any]):
    from cnnbench.spec import parse_spec

    return parse_spec(job["spec"]["data"], job["spec"].get("source", "<job>"))


def _bench(adapter, config, job: dict[str, Any], emit: Callable[..., None]) -> None:
    """Time the training step: warm-up, then windows (see :func:`measure`)."""
    from cnnbench.config import Measurement

    measurement = Measurement(**job["measurement"])
    t0 = time.monotonic()
    emit("phase", phase="prepare")
    adapter.prepare(config)
    spec = _spec(job)
    t1 = time.monotonic()
    emit("phase", phase="build")
    model = adapter.build(spec, config)
    t2 = time.monotonic()
    emit("phase", phase="warmup")
    windows = measure(
        lambda: adapter.step(model),
        lambda: adapter.synchronize(model),
        measurement.warmup,
        measurement.min_time,
        measurement.repeats,
        measurement.iterations,
        emit,
        measurement.stable,
        measurement.stable_max_time,
    )
    t3 = time.monotonic()
    _emit_result(adapter, config, model, emit, windows,
                 timings={"prepare_s": t1 - t0, "build_s": t2 - t1, "measure_s": t3 - t2})


def _emit_result(adapter, config, model, emit: Callable[..., None], windows: list[dict[str, float]], *,
                 timings: dict[str, float], **extra: Any) -> None:
    """The final ``result`` event of a bench or layers job: the windows, what the run used (peak memory,
    threads, the adapter's inventory) and how long each phase took."""
    peak, peak_kind = adapter.peak_memory(model)
    emit(
        "result",
        windows=windows,
        **extra,
        peak_memory_bytes=peak,
        peak_memory_kind=peak_kind,
        threads=adapter.actual_threads(config),
        inventory={"worker_python": platform.python_version(), **adapter.inventory(config)},
        timings=timings,
    )


def _layers(adapter, config, job: dict[str, Any], emit: Callable[..., None]) -> None:
    """Every layer alone, forward and backward, then the whole training step (see the module docstring)."""
    from cnnbench.adapter import DIRECTIONS, runs_backward
    from cnnbench.config import Measurement

    measurement = Measurement(**job["measurement"])
    timing = (measurement.warmup, measurement.min_time, measurement.repeats, measurement.iterations)
    stable = {"stable": measurement.stable, "stable_max_time": measurement.stable_max_time}
    t0 = time.monotonic()
    emit("phase", phase="prepare")
    adapter.prepare(config)
    spec = _spec(job)
    names = job.get("layers") or [layer.name for layer in spec.layers]
    layers = []
    for index, name in enumerate(names):
        kind = spec.layer(name).type
        emit("layer", index=index, count=len(names), name=name, type=kind)
        handle = adapter.build_layer(spec, name, config)
        entry: dict[str, Any] = {"name": name, "type": kind}
        for direction in DIRECTIONS:
            if direction == "backward" and not runs_backward(spec, name):
                entry[direction] = {"skipped": "a training step runs no backward here: nothing at or "
                                               "before this layer has parameters"}
                continue
            tagged = _tagged(emit, layer=name, direction=direction)
            windows = measure(lambda: adapter.step_layer(handle, direction), lambda: adapter.synchronize(handle),
                              *timing, tagged, **stable)
            entry[direction] = {"windows": windows}
        layers.append(entry)
        handle = None  # freed before the next layer is built, so two never share the device's memory
    t1 = time.monotonic()
    emit("phase", phase="network")
    model = adapter.build(spec, config)
    windows = measure(lambda: adapter.step(model), lambda: adapter.synchronize(model), *timing,
                      _tagged(emit, direction="network"), **stable)
    t2 = time.monotonic()
    _emit_result(adapter, config, model, emit, windows, layers=layers,
                 timings={"layers_s": t1 - t0, "network_s": t2 - t1})


def _tagged(emit: Callable[..., None], **tags: Any) -> Callable[..., None]:
    """``emit`` with ``tags`` added to every event, so the host can tell whose window it is."""
    return lambda event, **fields: emit(event, **tags, **fields)


def _verify(adapter, config, job: dict[str, Any], emit: Callable[..., None]) -> None:
    """One forward and backward on given weights and data (arrays in an .npz file, too big for JSON);
    the loss, logits and gradients go to another .npz file."""
    import numpy as np

    emit("phase", phase="prepare")
    adapter.prepare(config)
    spec = _spec(job)
    with np.load(job["arrays"], allow_pickle=False) as arrays:  # arrays only: a pickle could run code
        data, labels = arrays["data"], arrays["labels"]
        weights: dict[str, dict[str, Any]] = {}
        for key in arrays.files:
            if "/" in key:
                layer, _, kind = key.rpartition("/")
                weights.setdefault(layer, {})[kind] = arrays[key]
    emit("phase", phase="verify")
    out = adapter.verify(spec, config, weights, data, labels)
    grads = {f"{layer}/{kind}": np.asarray(array, dtype=np.float64)
             for layer, kinds in out.grads.items() for kind, array in kinds.items()}
    np.savez(job["output"], loss=np.float64(out.loss), logits=np.asarray(out.logits, dtype=np.float64), **grads)
    emit("verified", output=job["output"], inventory=adapter.inventory(config))


#: Job modes: what the worker does with the adapter.
MODES = {"bench": _bench, "verify": _verify, "layers": _layers}


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the host dies, so a host killed without a chance to
    clean up (SIGKILL, a crash) leaves no worker holding the CPU or GPU."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # a safety net only; the host's own clean-up still applies


def limit_memory(limit: int) -> None:
    """RLIMIT_DATA, not RLIMIT_AS: it counts what a process can write (heap, malloc's mappings, thread
    stacks) but not the address space that CUDA, XLA and others reserve without using, which RLIMIT_AS
    would refuse at start-up. An allocation beyond it fails with ENOMEM, which the frameworks raise
    (PyTorch's "can't allocate memory", TensorFlow's ResourceExhaustedError, NumPy's MemoryError)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def main() -> int:
    _die_with_parent()
    # Keep a private copy of stdout for the protocol and send everything else printed to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    channel = Channel(proto)
    try:
        job = json.loads(sys.stdin.read())
        if not isinstance(job, dict):
            raise ValueError(f"a job is a JSON object, not {type(job).__name__}")
        if job.get("memory_limit_bytes"):
            limit_memory(int(job["memory_limit_bytes"]))
        run_job(job, channel)
    except MemoryError as exc:  # before the adapter ran (importing the framework, say)
        channel.emit("oom", message=f"MemoryError: {exc}" if str(exc) else "MemoryError")
        return 1
    except Exception as exc:
        channel.emit("error", type=type(exc).__name__, message=str(exc), traceback=traceback.format_exc())
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    # The job is done and its last event flushed. Skip the interpreter's teardown: with a framework loaded
    # (thread pools joined, atexit handlers, thousands of modules finalised) it took 0.5-1 s per cell, and
    # it has nothing left to give the host.
    sys.stderr.flush()
    os._exit(code)
