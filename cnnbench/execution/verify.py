"""``cnnbench verify``: do the frameworks compute the same function?

The host makes one seeded set of weights (canonical layout, see ``FrameworkAdapter.verify``), one input
batch and labels, in float64. Each framework's worker loads them, runs one forward and backward, and
returns the loss, the logits and every parameter gradient. Each is compared with the Caffe-style
engine, which computes in float64 and is the reference.

The measure per tensor is the normwise relative error ||x - reference|| / ||reference|| (2-norm over
the whole tensor). An element-wise measure fails for the wrong reason: a pre-activation within rounding
of zero lands on the other side of a ReLU in lower precision, which zeroes or passes that unit's
gradient entirely, so single elements of an otherwise faithful gradient can be off by 100 %. A wrong
layout, a missing layer or a wrong loss gives errors near 1 either way.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.config import RunConfig
from cnnbench.plugins import PluginHost
from cnnbench.execution.runner import run_worker
from cnnbench.spec import NetworkSpec

REFERENCE = "caffe"
#: Largest accepted normwise relative error per tensor, by the precision the framework computes in.
#: fp32 leaves room for summation order and the ReLU flips it causes in deep networks (googlenet's
#: first-layer gradient is 5e-3 from float64 in fp32, in PyTorch and in the Caffe-style engine's own
#: fp32 path alike); the others for their mantissas (10 bits for fp16 and TF32, 7 for bf16).
TOLERANCES = {"fp32": 1e-2, "tf32": 3e-2, "fp16": 5e-2, "bf16": 2.5e-1}
#: A gradient tensor is measured against at least this fraction of the largest gradient's norm: one far
#: smaller is a sum that cancels (batch norm makes some exactly zero: the shift of a batch norm that feeds
#: a 1x1 convolution and another batch norm is cancelled by that one's mean), and fp32 resolves it only to
#: its rounding of the terms, about 1e-7 of them, so its own norm would turn rounding into errors of 1e9.
GRADIENT_FLOOR = 1e-4


def tolerance(spec: NetworkSpec, precision: str) -> float:
    """The network's tolerance (its spec's ``verify_tolerance``), else the precision's default."""
    return {**TOLERANCES, **spec.data.get("verify_tolerance", {})}[precision]


def make_inputs(spec: NetworkSpec, batch_size: int, seed: int = 0) -> dict[str, Any]:
    """Weights (He-scaled, so activations keep their size through ReLUs), data and labels, float64."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays: dict[str, Any] = {
        "data": rng.standard_normal((batch_size, *spec.input_shape)),
        "labels": rng.integers(0, spec.num_classes, size=batch_size, dtype=np.int64),
    }
    for layer in spec.layers:
        if layer.type == "conv":
            p = layer.params
            cin = layer.input_shapes[0][0] // p["groups"]
            shape = (p["filters"], cin, *p["kernel"])
            fan_in = cin * p["kernel"][0] * p["kernel"][1]
        elif layer.type == "fc":
            fan_in = math.prod(layer.input_shapes[0])
            shape = (layer.params["outputs"], fan_in)
        elif layer.type == "batchnorm":
            # Scale near 1 and shift near 0, where a trained batch norm is; [C] each, in every framework.
            channels = layer.input_shapes[0][0]
            arrays[f"{layer.name}/weight"] = 1 + 0.1 * rng.standard_normal(channels)
            arrays[f"{layer.name}/bias"] = 0.1 * rng.standard_normal(channels)
            continue
        else:
            continue
        arrays[f"{layer.name}/weight"] = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
        if layer.params["bias"]:
            arrays[f"{layer.name}/bias"] = rng.standard_normal(shape[0]) * 0.1
    return arrays


@dataclass
class Outcome:
    framework: str
    status: str  # ok, mismatch, unsupported, unavailable, error, oom, timeout
    reason: str | None = None
    #: tensor name ("loss", "logits", "conv1/weight", ...) -> relative error against the reference
    errors: dict[str, float] = field(default_factory=dict)
    tolerance: float | None = None

    def as_dict(self) -> dict[str, Any]:
        # JSON has no infinity: a tensor that was missing or not finite is null.
        errors = {name: (value if math.isfinite(value) else None) for name, value in self.errors.items()}
        return {**self.__dict__, "errors": errors}

    @property
    def worst(self) -> tuple[str, float] | None:
        return max(self.errors.items(), key=lambda item: item[1]) if self.errors else None


def relative_error(got: Any, ref: Any, floor: float = 0.0) -> float:
    import numpy as np

    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return math.inf
    diff = float(np.linalg.norm((got - ref).ravel()))
    if not math.isfinite(diff):
        return math.inf
    scale = max(float(np.linalg.norm(ref.ravel())), floor)
    return diff / scale if scale > 0 else diff


def _run_one(framework: str, spec: NetworkSpec, config: RunConfig, arrays_path: str, out_dir: str,
             host: PluginHost, timeout: float, python: str | None = None,
             ) -> tuple[str, str | None, dict[str, Any] | None]:
    """(status, reason, outputs) of one framework's verify job."""
    import numpy as np

    output = str(Path(out_dir) / f"{framework}.npz")
    job = {
        "mode": "verify",
        "config": config.to_dict(),
        "spec": {"data": spec.data, "source": spec.source},
        "arrays": arrays_path,
        "output": output,
    }
    outcome = run_worker(job, config, timeout=timeout, python=python,
                         adapter_module=host.adapter(framework).__module__)
    failure = outcome.failure()
    if failure is not None:
        return failure[0], failure[1], None
    final = outcome.final
    if final["event"] != "verified":
        from cnnbench.execution.worker import FINAL_EVENTS

        reason = final.get("reason") or final.get("message")
        if final["event"] == "error":
            reason = f"{final.get('type')}: {final.get('message')}"
        return FINAL_EVENTS[final["event"]], reason, None
    with np.load(output, allow_pickle=False) as data:
        return "ok", None, {key: data[key] for key in data.files}


def verify(frameworks: list[str], spec: NetworkSpec, host: PluginHost, *, batch_size: int, device: str,
           precision: str, timeout: float, seed: int = 0, pythons: dict[str, str] | None = None,
           ) -> tuple[list[Outcome], list[str]]:
    """Compare every framework with the float64 reference; returns the outcomes and the tensor names.
    ``pythons`` maps a framework to the interpreter of its own environment."""
    import numpy as np

    pythons = pythons or {}
    host.adapter(REFERENCE)  # the reference must be installed: a usage error otherwise
    arrays = make_inputs(spec, batch_size, seed)
    tensors = ["loss", "logits"] + [key for key in arrays if "/" in key]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="cnnbench-verify-") as tmp:
        arrays_path = str(Path(tmp) / "inputs.npz")
        np.savez(arrays_path, **arrays)

        def config_for(framework: str, on_device: str, at: str) -> RunConfig:
            # each framework's first kernel family: vendor where it has one
            kernels = host.adapter(framework).capabilities(on_device.split(":")[0]).kernels[0]
            return RunConfig(framework=framework, network=spec.name, batch_size=batch_size, device=on_device,
                             precision=at, kernels=kernels, seed=seed)

        # The reference always computes in float64 on the CPU.
        status, reason, reference = _run_one(REFERENCE, spec, config_for(REFERENCE, "cpu", "fp32"), arrays_path,
                                             tmp, host, timeout)
        if reference is None:
            raise RuntimeError(f"the float64 reference ({REFERENCE}) failed: {status}: {reason}")
        largest = max((float(np.linalg.norm(reference[name])) for name in tensors if "/" in name and name in reference),
                      default=0.0)
        for framework in frameworks:
            if framework == REFERENCE and device == "cpu":
                outputs = reference
                status, reason = "ok", None
            else:
                status, reason, outputs = _run_one(framework, spec, config_for(framework, device, precision),
                                                   arrays_path, tmp, host, timeout, pythons.get(framework))
            outcome = Outcome(framework, status, reason, tolerance=tolerance(spec, precision))
            if outputs is not None:
                for name in tensors:
                    if name not in outputs:
                        outcome.errors[name] = math.inf
                    else:
                        floor = GRADIENT_FLOOR * largest if "/" in name else 0.0
                        outcome.errors[name] = relative_error(outputs[name], reference[name], floor)
                worst = outcome.worst
                if worst and not worst[1] <= outcome.tolerance:
                    outcome.status = "mismatch"
                    outcome.reason = f"{worst[0]} differs by {worst[1]:.3g} (tolerance {outcome.tolerance:g})"
            outcomes.append(outcome)
    return outcomes, tensors


def verify_table(outcomes: list[Outcome], tensors: list[str], precision: str) -> str:
    from tabulate import tabulate

    def cell(outcome: Outcome, name: str) -> str:
        if outcome.framework == REFERENCE and outcome.errors and all(v == 0 for v in outcome.errors.values()):
            return "reference"
        value = outcome.errors.get(name)
        if value is None:
            return "-"
        mark = "" if value <= outcome.tolerance else "  !"
        return f"{value:.2e}{mark}"

    tol = next((o.tolerance for o in outcomes if o.tolerance is not None), TOLERANCES[precision])
    own = "" if tol == TOLERANCES[precision] else " (the network's own)"
    rows = [[name] + [cell(o, name) for o in outcomes] for name in tensors]
    rows.append(["status"] + [o.status for o in outcomes])
    lines = [tabulate(rows, headers=["tensor"] + [o.framework for o in outcomes], disable_numparse=True)]
    lines.append(
        f"\nrelative error = ||x - reference|| / ||reference|| per tensor; reference: the Caffe-style engine "
        f"in float64 (a gradient against at least {GRADIENT_FLOOR:g} of the largest gradient's norm); tolerance at "
        f"{precision}: {tol:g}{own} "
        f"('!' marks an error above it)"
    )
    for o in outcomes:
        if o.reason:
            lines.append(f"{o.framework}: {o.status}: {o.reason}")
    return "\n".join(lines)
