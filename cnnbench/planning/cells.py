"""Planning: a request turned into the cells of a grid and their measurement, every value checked; a bad
value is a ``UsageError`` of one line naming the valid choices. Nothing here knows which front end built the
request: the command line and the Python API plan alike (and so does anything that reads a request's
attributes by the same names)."""

from __future__ import annotations

import itertools
import os
import sys

from cnnbench.config import (
    KERNELS,
    PRECISIONS,
    Measurement,
    RunConfig,
    check_choice,
    check_device,
    positive_float,
    positive_int,
    positive_ints,
    split_list,
)
from cnnbench.errors import UsageError
from cnnbench.planning.requests import MAX_MIN_TIME_S, MAX_TIMEOUT_S


def pythons_for(texts: list[str], frameworks: list[str], host) -> dict[str, str]:
    """The interpreter of each framework that does not run under this one: --python FRAMEWORK=PATH,
    else the framework's environment (``cnnbench env create``) when it has one."""
    import shutil

    chosen: dict[str, str] = {}
    for text in texts:
        name, sep, path = (part.strip() for part in text.partition("="))
        if not sep or not name or not path:
            raise UsageError(f"--python takes FRAMEWORK=PATH, not '{text}'")
        host.adapter(name)  # an unknown framework names the valid choices
        found = shutil.which(path) if os.sep not in path else (path if os.access(path, os.X_OK) else None)
        if not found:
            raise UsageError(f"--python {name}={path}: no executable interpreter there")
        chosen[name] = found
    try:
        from cnnbench.system.envs import interpreter
    except ImportError:  # environments arrive with the envs module
        return chosen
    for framework in frameworks:
        if framework not in chosen:
            env_python = interpreter(framework)
            if env_python:
                chosen[framework] = env_python
    return chosen


def default_device() -> str:
    """cuda where the NVIDIA driver shows a GPU (read from its files, no framework import), else cpu."""
    from cnnbench.system.nvidia import nvidia_gpu_present

    return "cuda" if nvidia_gpu_present() else "cpu"


def _values(request, attr: str, flag: str, single: bool) -> list[str] | None:
    text = getattr(request, attr)
    if text is None:
        return None
    values = split_list(flag, text)
    if single and len(values) > 1:
        raise UsageError(f"{flag} takes one value with 'run'; use 'cnnbench compare' for a grid")
    return values


def plan(request, host, single: bool | None = None) -> tuple[list, Measurement]:
    """The cells of ``request`` (a ``GridRequest``) in grid order, and their measurement. ``single``: one value per
    axis (``run``, ``layers``, a ``dvfs`` workload); by default, what the request's command says."""
    if single is None:
        single = request.single
    from cnnbench.spec.catalog import resolve_network
    from cnnbench.execution.runner import Cell

    if single:
        frameworks = [request.framework]
        host.adapter(request.framework)
    else:
        frameworks = frameworks_of(host, request.frameworks)
    networks = [resolve_network(n) for n in _values(request, "network" if single else "networks", "--network" if single else "--networks", single)]
    batches = _values(request, "batch_size", "--batch-size", single)
    batch_sizes = positive_ints("--batch-size", batches) if batches else [None]
    devices = [check_device(d) for d in (_values(request, "device", "--device", single) or [default_device()])]
    precisions = [check_choice("precision", p, PRECISIONS) for p in _values(request, "precision", "--precision", single)]
    kernel_list = _values(request, "kernels", "--kernels", single)
    kernels = [check_choice("kernels", k, KERNELS) for k in kernel_list] if kernel_list else [None]
    threads_list = _values(request, "threads", "--threads", single)
    threads = thread_counts(threads_list) if threads_list else [None]
    like_for_like = default_threads() if not threads_list else None
    iterations = positive_int("--iterations", request.iterations) if request.iterations is not None else None
    measurement = Measurement(
        warmup=positive_int("--warmup", request.warmup, allow_zero=True),
        min_time=positive_float("--min-time", request.min_time, MAX_MIN_TIME_S),
        repeats=positive_int("--repeats", request.repeats),
        iterations=iterations,
        **stable_settings(request),
    )
    options = adapter_options(request.option, frameworks, host)
    cells = []
    for framework, spec, batch, device, precision, kernel, thread in itertools.product(
        frameworks, networks, batch_sizes, devices, precisions, kernels, threads
    ):
        config = RunConfig(
            framework=framework,
            network=spec.name,
            batch_size=batch or spec.default_batch_size,
            device=device,
            precision=precision,
            # unnamed: the framework's first family (vendor, or native for the Caffe-style engine)
            kernels=kernel or host.adapter(framework).capabilities(device.split(":")[0]).kernels[0],
            threads=thread if like_for_like is None else default_threads_for(host, framework, device, like_for_like),
            options=options.get(framework, ()),
        )
        cells.append(Cell(config, spec))
    return cells, measurement


def stable_settings(request) -> dict:
    """Measurement's ``stable`` and ``stable_max_time`` from --stable [TARGET] and --stable-max-time."""
    from cnnbench.config import stable_target
    from cnnbench.results.quality import STABLE_MAX_TIME_S

    target, cap = getattr(request, "stable", None), getattr(request, "stable_max_time", None)
    if target is None:
        if cap is not None:
            raise UsageError("--stable-max-time goes with --stable (--stable [TARGET] --stable-max-time S)")
        return {}
    return {"stable": stable_target(target),
            "stable_max_time": positive_float("--stable-max-time", cap, MAX_TIMEOUT_S) if cap else STABLE_MAX_TIME_S}


THREAD_WORDS = ("physical", "logical")


def default_threads() -> int:
    """The thread count every framework of a grid gets unless --threads says otherwise: the physical cores
    this process may use. Left to themselves the frameworks disagree (PyTorch takes the physical cores,
    TensorFlow the logical CPUs, MXNet half of them), and a comparison would measure their defaults."""
    from cnnbench.system.provenance import usable_cores

    return usable_cores()[0]


def default_threads_for(host, framework: str, device: str, count: int) -> int | None:
    """``count`` for an adapter that can set its threads; None (its own default, shown in the table as the
    threads it used) for one that cannot, rather than refusing a cell the user never asked to pin."""
    return count if host.adapter(framework).capabilities(device.split(":")[0]).threads else None


def thread_counts(values: list[str]) -> list[int]:
    """``--threads`` values: whole numbers, or ``physical`` / ``logical`` (the paper's Fig. 7: one thread per
    core against one per hardware thread) resolved on the CPUs this process may use. Where the two are
    equal (no SMT, or SMT off) they name one cell, and the user is told so."""
    from cnnbench.system.provenance import usable_cores

    physical, logical = usable_cores()
    counts = {"physical": physical, "logical": logical}
    numbers = []
    for value in values:
        if value in counts:
            number = counts[value]
        elif value.strip().isdigit():
            number = positive_int("--threads", value)
        else:
            raise UsageError(f"--threads takes whole numbers or {', '.join(THREAD_WORDS)}, not '{value}'")
        if number in numbers:
            if value in counts or any(v in counts for v in values):
                print(f"cnnbench: --threads {','.join(values)}: {physical} physical cores and {logical} logical "
                      f"CPUs here (SMT off or absent), so {number} threads is one cell", file=sys.stderr)
                continue
            raise UsageError(f"--threads lists {number} twice")
        numbers.append(number)
    return numbers


def adapter_options(texts: list[str], frameworks: list[str], host) -> dict[str, tuple[tuple[str, str], ...]]:
    """``--option NAME=VALUE`` checked against the adapters that declare NAME; each applies to those."""
    declared = {f: host.adapter(f).options for f in frameworks}
    chosen: dict[str, dict[str, str]] = {f: {} for f in frameworks}
    for text in texts:
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise UsageError(f"--option takes NAME=VALUE, not '{text}'")
        owners = [f for f, opts in declared.items() if name in opts]
        if not owners:
            valid = sorted({f"{n} ({f})" for f, opts in declared.items() for n in opts})
            raise UsageError(f"unknown option '{name}' for {', '.join(frameworks)}; valid choices: "
                             f"{', '.join(valid) or '(none: these adapters take no options)'}")
        for framework in owners:
            allowed = declared[framework][name][0]
            if allowed and value not in allowed:
                raise UsageError(f"unknown value '{value}' for option {name} of {framework}; valid choices: "
                                 f"{', '.join(allowed)}")
            chosen[framework][name] = value
    return {f: tuple(sorted(opts.items())) for f, opts in chosen.items()}


def frameworks_of(host, text: str | None) -> list[str]:
    """The frameworks a command runs: the named ones (checked), or every available one."""
    adapters = host.adapters()
    if text is None:
        from cnnbench.system.envs import interpreter

        # available here, or in an environment of its own (cnnbench env create)
        names = [name for name in adapters if host.availability(name).available or interpreter(name)]
        if not names:
            hints = "; ".join(f"{n}: {c.install_hint}" for n, c in adapters.items()) or "no adapter plugins found"
            raise UsageError(f"no framework is available here; install one ({hints})")
        return names
    names = split_list("--frameworks", text)
    for name in names:
        host.adapter(name)  # unknown names: a usage error naming the valid choices
    return names
