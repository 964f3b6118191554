"""``check_adapter``: the adapter contract (``cnnbench.adapter``) as one test any adapter can run.

Everything runs the way ``cnnbench`` runs it, through the same functions: the host-side questions in a
fresh interpreter with a worker's ``PYTHONPATH`` (as ``cnnbench list`` asks them), the training step in
a worker process (:func:`cnnbench.execution.runner.run_cell`), the comparison with the float64 reference through
:func:`cnnbench.execution.verify.verify`, and the axis values the adapter leaves out in workers that skip the
host's preflight (the worker is the adapter's last line of defence: it must say ``Unsupported``, not
crash). So an adapter that passes here works in ``cnnbench compare`` and ``cnnbench verify``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnbench.adapter import Availability, Capabilities, FrameworkAdapter, Unsupported
from cnnbench.plural import count

if TYPE_CHECKING:
    from cnnbench.results.record import Result
    from cnnbench.spec import NetworkSpec
    from cnnbench.execution.verify import Outcome

#: The contract points, as failures name them.
ATTRIBUTES = "class attributes (name, package, install_hint)"
REGISTERED = "registered where cnnbench and its workers look for adapters"
HOST_SIDE = "availability() and capabilities() answer without importing the framework"
CAPABILITIES = "capabilities() for each device kind"
STEP = "prepare(), build(), step() and synchronize() in a worker"
PEAK_MEMORY = "peak_memory() returns (bytes: int or None, what was measured: str)"
VERIFY = "verify(): the float64 reference's loss, logits and gradients, within the tolerance"
UNSUPPORTED = "axis values it cannot run raise Unsupported"


class ContractWarning(UserWarning):
    """Something an adapter does that is allowed but probably not meant (shown by pytest's summary)."""


@dataclass
class HostSide:
    """What the host learnt without a worker, from a fresh interpreter."""

    availability: Availability
    capabilities: dict[str, Capabilities]
    #: The registered class as the host (and so the worker) finds it: "module.QualName".
    registered_as: str | None
    notes: list[str] = field(default_factory=list)


@dataclass
class ContractReport:
    """What :func:`check_adapter` ran and saw; ``str(report)`` is a readable summary."""

    adapter: str
    network: str
    device: str
    precision: str
    kernels: str
    batch_size: int
    host: HostSide
    #: The worker's Result for the training step (timing, peak memory, provenance).
    step: Result
    #: The comparison with the float64 reference (per-tensor relative errors, tolerance).
    verify: Outcome
    #: "axis=value" -> (row status, reason) of each value the adapter leaves out, run in a worker.
    unsupported: dict[str, tuple[str, str | None]]
    passed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.adapter}: {self.network} bs{self.batch_size} {self.device} {self.precision} "
                 f"{self.kernels}: every contract point holds"]
        lines += [f"  ok  {point}" for point in self.passed]
        step = self.step
        memory = "none reported" if step.peak_memory_bytes is None else f"{step.peak_memory_bytes / 2**20:.1f} MiB"
        lines.append(f"  step: {step.time_per_iter_ms:.3g} ms/iter, peak memory {memory} ({step.peak_memory_kind})")
        worst = self.verify.worst
        if worst:
            lines.append(f"  verify: worst {worst[0]} at {worst[1]:.2e} (tolerance {self.verify.tolerance:g})")
        for value, (status, reason) in self.unsupported.items():
            lines.append(f"  {value}: {status}: {reason}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


# -- the host side, in a fresh interpreter ------------------------------------------------------------

# Run with ``python -c``: sys.modules is the only reliable witness of an import, and only a fresh
# interpreter has not imported the framework already (a test process has, to check the worker side).
_PROBE = r'''
import dataclasses, importlib, json, sys
args = json.loads(sys.argv[1])
top = args["framework"]

def loaded():
    return sorted(m for m in list(sys.modules) if m == top or m.startswith(top + "."))

out = {"stages": []}
def stage(what):
    out["stages"].append([what, loaded()])

def answer(call):
    try:
        return {"value": dataclasses.asdict(call())}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}

def ask(cls, where):
    out["availability"] = answer(cls.availability)
    stage(("availability() " + where).strip())
    out["capabilities"] = {kind: answer(lambda: cls.capabilities(kind)) for kind in ("cpu", "cuda")}
    stage(("capabilities() " + where).strip())

stage("starting the interpreter")
import cnnbench.adapter
stage("importing cnnbench.adapter")
module = importlib.import_module(args["module"])
stage("importing " + args["module"])
cls = module
for part in args["qualname"].split("."):
    cls = getattr(cls, part, None)
if cls is not None:
    ask(cls, "")
from cnnbench.plugins import PluginHost
host = PluginHost()
adapters = host.adapters()
stage("loading every plugin (PluginHost)")
found = adapters.get(args["name"])
out["registered_as"] = found and f"{found.__module__}.{found.__qualname__}"
out["choices"] = sorted(adapters)
out["failures"] = [f"plugin '{f.plugin}' ({f.origin}): {f.error}" for f in host.failures]
if cls is None and found is not None:
    ask(found, "(the class is local to a function: asked after loading every plugin)")
print(json.dumps(out))
'''


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _framework_module(cls: type[FrameworkAdapter]) -> str:
    return (cls.module or cls.package).split(".")[0]


def _attribute_problems(cls: Any) -> list[str]:
    from cnnbench.plugins import adapter_problem

    problems = [p for p in [adapter_problem(cls)] if p]
    hint = getattr(cls, "install_hint", None)
    if not (isinstance(hint, str) and hint.strip()):
        problems.append(f"adapter {_qualname(cls)} has no install_hint (what a user runs to get the framework; "
                        f"cnnbench list shows it next to an unavailable framework)")
    module = getattr(cls, "module", None)
    if module is not None and not isinstance(module, str):
        problems.append(f"adapter {_qualname(cls)}: 'module' must be a module name or None, not {module!r}")
    return problems


def _capabilities(kind: str, answer: dict[str, Any], name: str) -> tuple[Capabilities | None, list[str]]:
    from cnnbench.config import KERNELS, PRECISIONS

    if "error" in answer:
        return None, [f"capabilities({kind!r}) raised {answer['error']}"]
    try:
        caps = Capabilities(**{k: tuple(v) if isinstance(v, list) else v for k, v in answer["value"].items()})
    except TypeError as exc:
        return None, [f"capabilities({kind!r}) did not return a Capabilities: {exc}"]
    problems = []
    for axis, values, choices in (("precisions", caps.precisions, PRECISIONS), ("kernels", caps.kernels, KERNELS)):
        unknown = [v for v in values if v not in choices]
        if unknown:
            problems.append(f"capabilities({kind!r}).{axis} has {unknown}; valid values: {', '.join(choices)}")
    if kind == "cpu" and not (caps.precisions and caps.kernels):
        problems.append(f"capabilities('cpu') lists no precision or no kernel family: {name} could run nothing")
    return caps, problems


def check_host_side(adapter_cls: type[FrameworkAdapter]) -> HostSide:
    """The host-side contract alone (no worker, no framework needed): class attributes; ``availability()``
    and ``capabilities()`` answer, with valid values, without importing the framework, in a fresh
    interpreter; the class is the one registered under its name. Raises AssertionError naming the point."""
    problems = _attribute_problems(adapter_cls)
    if problems:
        raise AssertionError(f"{ATTRIBUTES}: " + "; ".join(problems))
    name, framework = adapter_cls.name, _framework_module(adapter_cls)
    from cnnbench.config import RunConfig
    from cnnbench.execution.runner import worker_env

    env = worker_env(RunConfig(framework=name, network="-", batch_size=1), adapter_cls.__module__)
    args = {"name": name, "framework": framework, "module": adapter_cls.__module__,
            "qualname": adapter_cls.__qualname__}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True, text=True,
                          env=env, timeout=300)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise AssertionError(f"{HOST_SIDE}: asking {name} in a fresh interpreter failed (exit {proc.returncode}):\n"
                             f"{tail}")
    out = json.loads(lines[-1])

    failures = []
    registered_as = out["registered_as"]
    if registered_as is None:
        failures.append(
            f"{REGISTERED}: no adapter named '{name}' in a fresh interpreter (registered: "
            f"{', '.join(out['choices']) or 'none'}). Install the plugin's distribution (its `cnnbench` entry "
            f"point), or wrap the test in `with cnnbench.testing.registered(your_plugin_module):`"
            + "".join(f"\n  {failure}" for failure in out["failures"]))
    elif registered_as != _qualname(adapter_cls):
        failures.append(f"{REGISTERED}: the name '{name}' belongs to {registered_as}, not {_qualname(adapter_cls)}")
    if failures:
        raise AssertionError("\n".join(failures))

    previous: list[str] = []
    notes = []
    for what, modules in out["stages"]:
        new = [m for m in modules if m not in previous]
        if new and what == "starting the interpreter":
            notes.append(f"{framework} is imported when Python starts (a .pth file or sitecustomize?), so whether "
                         f"the adapter imports it cannot be told")
        elif new and not what.startswith("loading every plugin"):
            failures.append(f"{HOST_SIDE}: {what} imported {framework} ({', '.join(new[:3])}"
                            f"{', ...' if len(new) > 3 else ''}); import it inside the worker-side methods")
        elif new:
            notes.append(f"{framework} was imported while loading every plugin: another plugin imports it")
        previous = modules
    availability = out["availability"]
    if "error" in availability:
        failures.append(f"{HOST_SIDE}: availability() raised {availability['error']}")
    capabilities = {}
    for kind, answer in out["capabilities"].items():
        caps, problems = _capabilities(kind, answer, name)
        failures += [f"{CAPABILITIES}: {p}" for p in problems]
        if caps is not None:
            capabilities[kind] = caps
    if failures:
        raise AssertionError("\n".join(failures))
    return HostSide(Availability(**availability["value"]), capabilities, registered_as, notes)


# -- the worker side -------------------------------------------------------------------------------------


def _resolve(network: Any) -> NetworkSpec:
    from cnnbench.spec.catalog import resolve_network
    from cnnbench.spec import NetworkSpec
    from cnnbench.testing.network import tiny_network

    if network is None:
        return tiny_network()
    return network if isinstance(network, NetworkSpec) else resolve_network(network)


def _worker_failure(result: Result, phases: list[str]) -> str:
    where = f" (last phase: {phases[-1]})" if phases else " (before the adapter was prepared)"
    tail = result.provenance.get("worker_stderr_tail") or []
    detail = "".join(f"\n    {line.rstrip()}" for line in tail[-8:])
    return f"the worker ended with status {result.status}{where}: {result.reason}{detail}"


def check_adapter(
    adapter_cls: type[FrameworkAdapter],
    *,
    device: str = "cpu",
    network: Any = None,
    precision: str = "fp32",
    batch_size: int = 2,
    kernels: str | None = None,
    python: str | None = None,
    timeout: float = 300.0,
) -> ContractReport:
    """Check every point of the adapter contract; return a :class:`ContractReport`, or raise
    AssertionError naming each failing point.

    ``network``: None (:data:`~cnnbench.testing.TINY_NETWORK`), a built-in name, a spec file or a
    :class:`~cnnbench.spec.NetworkSpec`. ``kernels``: the family to time (default: the adapter's first on
    ``device``, which is also the one ``cnnbench verify`` uses). ``python``: the interpreter the workers run
    under, for a framework in an environment of its own (the host side is always asked here, as the
    host asks it). ``timeout``: seconds per worker.

    A configuration the adapter declares but this machine cannot run (bf16 on a CPU without the
    instructions) raises :class:`~cnnbench.adapter.Unsupported` with the adapter's reason, so a test can
    skip on it. Allowed-but-odd behaviour (an undeclared value that runs anyway) is a
    :class:`ContractWarning` and a note in the report.
    """
    from cnnbench.config import KERNELS, PRECISIONS, Measurement, RunConfig, check_device, device_kind
    from cnnbench.plugins import PluginHost
    from cnnbench.execution.runner import Cell, run_cell
    from cnnbench.execution.verify import verify, verify_table

    check_device(device)
    spec = _resolve(network)
    host_side = check_host_side(adapter_cls)
    name, kind = adapter_cls.name, device_kind(device)
    passed = [ATTRIBUTES, REGISTERED, HOST_SIDE, CAPABILITIES]
    notes = list(host_side.notes)
    availability = host_side.availability
    if not availability.available and python is None:
        raise AssertionError(f"cannot check the worker side: {name} is not available here: {availability.reason}"
                             f" (install with: {availability.install_hint})")
    caps = host_side.capabilities.get(kind)
    if caps is None or precision not in caps.precisions:
        raise AssertionError(f"{name} does not offer precision {precision} on {kind}; its capabilities: "
                             f"{', '.join(caps.precisions) if caps else 'none'}")
    kernels = kernels or (caps.kernels[0] if caps.kernels else "vendor")
    if kernels not in caps.kernels:
        raise AssertionError(f"{name} does not offer kernels {kernels} on {kind}; its capabilities: "
                             f"{', '.join(caps.kernels)}")
    config = RunConfig(framework=name, network=spec.name, batch_size=batch_size, device=device,
                       precision=precision, kernels=kernels)
    # Fixed iterations: behaviour is under test, not speed. Two windows: synchronize() at several edges.
    measurement = Measurement(warmup=1, min_time=0.0, repeats=2, iterations=1)
    failures: list[str] = []

    def run(cfg: RunConfig, phases: list[str] | None = None) -> Result:
        def on_event(event: dict[str, Any], _proc: Any) -> None:
            if phases is not None and event.get("event") == "phase":
                phases.append(event["phase"])

        return run_cell(Cell(cfg, spec), measurement, timeout=timeout, python=python,
                        adapter_module=adapter_cls.__module__, on_event=on_event)

    # The training step.
    phases: list[str] = []
    step = run(config, phases)
    if step.status == "unsupported":
        raise Unsupported(f"{name} cannot run {config.label()} here: {step.reason}")
    if step.status != "ok":
        failures.append(f"{STEP}: {_worker_failure(step, phases)}")
    else:
        windows = [(w["iterations"], w["end"] > w["start"]) for w in step.windows]
        if phases[-1:] != ["measure"] or windows != [(1, True)] * measurement.repeats:
            failures.append(f"{STEP}: the worker reported phases {phases} and windows {step.windows}")
        else:
            passed.append(STEP)
        peak, what = step.peak_memory_bytes, step.peak_memory_kind
        if (peak is None or (isinstance(peak, int) and not isinstance(peak, bool) and peak >= 0)) \
                and isinstance(what, str):
            passed.append(PEAK_MEMORY)
        else:
            failures.append(f"{PEAK_MEMORY}: got ({peak!r}, {what!r})")

    # The same function as the reference. A fresh host: the process-wide one may predate registered().
    host = PluginHost()
    if _qualname(host.adapter(name)) != _qualname(adapter_cls):
        raise AssertionError(f"{REGISTERED}: in this process the name '{name}' belongs to "
                             f"{_qualname(host.adapter(name))}, not {_qualname(adapter_cls)}")
    try:
        outcomes, tensors = verify([name], spec, host, batch_size=batch_size, device=device, precision=precision,
                                   timeout=timeout, pythons={name: python} if python else None)
    except RuntimeError as exc:  # the reference itself failed: not this adapter's fault, but no check either
        raise AssertionError(f"{VERIFY}: {exc}") from exc
    outcome = outcomes[-1]
    if outcome.status == "ok":
        passed.append(VERIFY)
    elif outcome.status == "mismatch":
        failures.append(f"{VERIFY}: {outcome.reason}\n{verify_table(outcomes, tensors, precision)}")
    elif outcome.status == "unsupported":
        failures.append(f"{VERIFY}: verify() raised Unsupported ({outcome.reason}); implement it, so that "
                        f"`cnnbench verify` can show that {name} computes what the others compute")
    else:
        failures.append(f"{VERIFY}: the worker ended with status {outcome.status}: {outcome.reason}")

    # What the adapter leaves out must be refused in the worker too, with a reason.
    probes = [(f"precision={p}", dataclasses.replace(config, precision=p)) for p in PRECISIONS
              if p not in caps.precisions]
    probes += [(f"kernels={k}", dataclasses.replace(config, kernels=k)) for k in KERNELS if k not in caps.kernels]
    gpu = host_side.capabilities.get("cuda")
    if kind == "cpu" and gpu is not None and gpu.precisions and gpu.kernels:
        # Most test machines have no GPU: asking for one must be a refusal, not a crash.
        probes.append(("device=cuda", dataclasses.replace(
            config, device="cuda", kernels=gpu.kernels[0],
            precision=precision if precision in gpu.precisions else gpu.precisions[0])))
    unsupported: dict[str, tuple[str, str | None]] = {}
    bad = []
    for label, cfg in probes:
        phases = []
        result = run(cfg, phases)
        unsupported[label] = (result.status, result.reason)
        if result.status in ("unsupported", "unavailable") or (result.status == "ok" and label == "device=cuda"):
            continue
        if result.status == "ok":
            notes.append(f"{label} is not in capabilities('{kind}') but the worker ran it without Unsupported: "
                         f"a run that skips the host's preflight would record it as if it were supported")
        else:
            bad.append(f"{label}: {_worker_failure(result, phases)}; raise Unsupported(reason) instead")
    if bad:
        failures.append(f"{UNSUPPORTED}:\n  " + "\n  ".join(bad))
    else:
        passed.append(UNSUPPORTED)
    for axis, values in (("precision", PRECISIONS), ("kernels", KERNELS)):
        allowed = caps.precisions if axis == "precision" else caps.kernels
        silent = [v for v in values if v not in allowed and v not in caps.unsupported]
        if silent:
            notes.append(f"capabilities('{kind}').unsupported gives no reason for {axis} {', '.join(silent)}; "
                         f"the table will only say what {name} supports")

    if failures:
        raise AssertionError(f"check_adapter({name}): {count(len(failures), 'contract point')} failed\n- "
                             + "\n- ".join(failures))
    for note in notes:
        warnings.warn(ContractWarning(f"{name}: {note}"), stacklevel=2)
    return ContractReport(name, spec.name, device, precision, kernels, batch_size, host_side, step, outcome,
                          unsupported, passed, notes)
