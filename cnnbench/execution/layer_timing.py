"""The host side of ``cnnbench layers`` (the paper's Fig. 5): one worker in job mode "layers", the energy of
every timed window from the meter session, and the report: per layer, per layer type, and the coherence
check of the layers' sum against the whole network's training step timed in the same worker.

The report is a plain JSON-able dict (``--json`` prints it); the tables (``cnnbench.cli.layers``) and the
figure (``cnnbench.results.plots.build_layers_figure``) are drawn from it and nothing else, so what they show is
what ``--json`` says.

Figures per layer and direction (forward, backward):

- time: the median over the windows of each window's time per iteration (ms), as ``run`` reports it;
- energy: package + DRAM + the run's GPU (``cnnbench.meters.energy``) integrated over the layer's windows,
  divided by the images those windows processed (J/image), and that energy over the windows' time (W).

A layer's total is forward + backward; a layer type's figures are sums over its layers. Power of a sum
is its energy per iteration over its mean time per iteration, i.e. the average power over one training
iteration's worth of those layers. Shares are of the sum over all layers (per direction for the
forward and backward bars of the figure). The softmax loss is timed like any layer and counted as
"other" (the whole training step computes it too, so leaving it out would bias the coherence ratio).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

from cnnbench.adapter import DIRECTIONS, FrameworkAdapter
from cnnbench.config import Measurement
from cnnbench.meters.energy import attach_energy
from cnnbench.results.record import Result
from cnnbench.execution.runner import Cell, EventHandler, attach_meters, gpu_domain, to_result, new_result, preflight, \
    run_worker

SCHEMA_VERSION = 1
#: The spec's layer kinds grouped into the paper's layer types (Fig. 5 has conv, pooling, FC and ReLU).
TYPE_OF = {"conv": "convolution", "pool": "pooling", "relu": "ReLU", "fc": "fully connected", "lrn": "LRN",
           "concat": "concat", "dropout": "other", "flatten": "other", "softmax_loss": "other",
           # issue 17's types: what a ResNet or a MobileNet spends besides convolutions
           "batchnorm": "batch norm", "add": "add", "global_pool": "pooling", "channel_scale": "other",
           "relu6": "activation", "silu": "activation", "sigmoid": "activation", "hardswish": "activation"}
TYPES = ("convolution", "batch norm", "pooling", "ReLU", "activation", "add", "fully connected", "LRN", "concat",
         "other")
#: The three bars of the figure: each direction alone, and the training iteration (forward + backward).
PARTS = (*DIRECTIONS, "total")


def supports_layers(cls: type[FrameworkAdapter]) -> bool:
    """Whether an adapter class implements the optional single-layer methods (no framework import)."""
    return (getattr(cls, "build_layer", None) is not FrameworkAdapter.build_layer
            and getattr(cls, "step_layer", None) is not FrameworkAdapter.step_layer)


def run_layers(cell: Cell, measurement: Measurement, host: Any, *, timeout: float | None = None, meters: Any = None,
               python: str | None = None, on_event: EventHandler | None = None,
               memory_limit: int | None = None) -> dict[str, Any]:
    """Run the layer job of ``cell`` in one worker and return the report (status other than ``ok``: the
    report says why, and has no layers)."""
    config = cell.config
    refused = preflight(cell, host, own_interpreter=python is not None)
    cls = host.adapter(config.framework)
    if refused is None and not supports_layers(cls):
        able = sorted(name for name, c in host.adapters().items() if supports_layers(c))
        refused = new_result(config, "unsupported", f"{config.framework} does not run single layers "
                                                    f"(frameworks that do: {', '.join(able) or 'none'})")
    if refused is not None:
        return _header(cell, measurement, refused)
    job = {"mode": "layers", "config": config.to_dict(), "measurement": asdict(measurement),
           "spec": {"data": cell.spec.data, "source": cell.spec.source}}
    outcome = run_worker(job, config, timeout=timeout, python=python, adapter_module=cls.__module__,
                         on_event=on_event, memory_limit=memory_limit)
    # The whole network reads like one ``run`` cell: its status covers crashes, timeouts and refusals.
    network = to_result(cell, outcome)
    if network.status == "ok" and meters is not None and meters.domains:
        attach_meters(network, meters)
    report = _header(cell, measurement, network)
    if network.status != "ok":
        return report
    gpu = gpu_domain(network, meters) if meters is not None and meters.domains else None
    no_energy = None if meters is not None and meters.domains else (
        meters.no_energy_reason if meters is not None else "no meters")
    report["energy_unavailable"] = no_energy
    layers = [_layer(cell, entry, meters, gpu, no_energy is None) for entry in outcome.final["layers"]]
    report["network_step"] = _measured(network)
    summarise(report, layers)
    return report


def _header(cell: Cell, measurement: Measurement, result: Result) -> dict[str, Any]:
    config = cell.config
    return {
        "schema_version": SCHEMA_VERSION, "kind": "layers",
        "framework": config.framework, "network": config.network, "batch_size": config.batch_size,
        "device": config.device, "precision": config.precision, "kernels": config.kernels,
        "threads": config.threads, "options": dict(config.options),
        "status": result.status, "reason": result.reason, "measurement": asdict(measurement),
        "energy_unavailable": result.energy_unavailable, "layers": [], "types": [], "totals": {},
        "network_step": None, "coherence": None, "notes": [], "provenance": result.provenance,
    }


def _layer(cell: Cell, entry: dict[str, Any], meters: Any, gpu: str | None, metered: bool) -> dict[str, Any]:
    layer = {"name": entry["name"], "kind": entry["type"], "type": TYPE_OF.get(entry["type"], "other")}
    for direction in DIRECTIONS:
        part = entry[direction]
        if "skipped" in part:
            # Nothing runs in training: zero is the measurement here, not a missing one.
            layer[direction] = {"skipped": part["skipped"], "time_ms": 0.0, "mean_ms": 0.0, "windows": [],
                                "energy_per_image_j": 0.0 if metered else None, "power_w": None}
            continue
        result = new_result(cell.config, "ok")
        result.fill_timing(part["windows"], 0)
        if metered:
            attach_energy(result, meters, gpu)
        layer[direction] = _measured(result)
    return layer


def _measured(result: Result) -> dict[str, Any]:
    """Time and energy of one set of windows (a layer in one direction, or the whole network)."""
    seconds = sum(w["end"] - w["start"] for w in result.windows)
    iterations = sum(int(w["iterations"]) for w in result.windows)
    total = result.energy_total or {}
    error = None
    if result.energy and not total:
        error = next((e.get("error") for e in result.energy.values() if e.get("error")), "no reading")
    if result.status != "ok":
        error = result.reason
    return {
        "time_ms": result.time_per_iter_ms, "time_ms_stdev": result.time_per_iter_ms_stdev,
        "mean_ms": seconds / iterations * 1e3 if iterations else None, "iterations": iterations,
        "windows": result.windows,
        "energy_per_image_j": total.get("energy_per_image_j") if error is None else None,
        "power_w": total.get("power_w") if error is None else None,
        "dynamic_energy_per_image_j": total.get("dynamic_energy_per_image_j") if error is None else None,
        "method": total.get("method"), "energy_error": error, "energy": result.energy,
    }


def _add(values: list[float | None]) -> float | None:
    """A sum that is unknown when any part is: a missing reading is never counted as 0."""
    return None if any(v is None for v in values) else sum(values)


def _aggregate(parts: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Time, energy and power of a set of layer parts run once each, as in one training iteration."""
    energy = _add([p["energy_per_image_j"] for p in parts])
    mean_s = sum(p["mean_ms"] or 0.0 for p in parts) / 1e3
    # Energy per iteration over time per iteration: the average power of these layers in training.
    power = energy * batch / mean_s if energy is not None and mean_s > 0 else None
    return {"time_ms": sum(p["time_ms"] for p in parts), "mean_ms": mean_s * 1e3, "energy_per_image_j": energy,
            "power_w": power}


def _share(value: float | None, whole: float | None) -> float | None:
    if value is None or not whole:
        return None
    return value / whole * 100.0


def summarise(report: dict[str, Any], layers: list[dict[str, Any]]) -> None:
    """Fill per-layer totals and shares, the per-type table, the totals and the coherence line."""
    batch = report["batch_size"]
    totals = {direction: _aggregate([layer[direction] for layer in layers], batch) for direction in DIRECTIONS}
    totals["total"] = _aggregate([layer[d] for layer in layers for d in DIRECTIONS], batch)
    for layer in layers:
        layer.update(_aggregate([layer[d] for d in DIRECTIONS], batch))
        layer["time_pct"] = _share(layer["time_ms"], totals["total"]["time_ms"])
        layer["energy_pct"] = _share(layer["energy_per_image_j"], totals["total"]["energy_per_image_j"])
    types = []
    for name in TYPES:
        members = [layer for layer in layers if layer["type"] == name]
        if not members:
            continue
        entry: dict[str, Any] = {"type": name, "layers": [layer["name"] for layer in members]}
        for part in PARTS:
            directions = DIRECTIONS if part == "total" else (part,)
            agg = _aggregate([layer[d] for layer in members for d in directions], batch)
            agg["time_pct"] = _share(agg["time_ms"], totals[part]["time_ms"])
            agg["energy_pct"] = _share(agg["energy_per_image_j"], totals[part]["energy_per_image_j"])
            entry[part] = agg
        types.append(entry)
    for part in PARTS:
        totals[part]["time_pct"] = 100.0
        totals[part]["energy_pct"] = 100.0 if totals[part]["energy_per_image_j"] else None
    report.update(layers=layers, types=types, totals=totals)
    report["coherence"] = coherence(totals["total"], report["network_step"])
    skipped = [layer["name"] for layer in layers if "skipped" in layer["backward"]]
    if skipped:
        report["notes"].append(f"no backward timed for {', '.join(skipped)}: a training step runs none there "
                               "(nothing at or before the layer has parameters)")
    missing = sorted({f"{layer['name']} {d}: {layer[d]['energy_error']}" for layer in layers for d in DIRECTIONS
                      if layer[d].get("energy_error")})
    if missing:
        report["notes"].append("energy unavailable for " + "; ".join(missing))


#: Layers timed one by one that add up to within 10 % of the whole step tell where the step's time goes;
#: beyond that, fusion, overlap or per-call overhead in one of the two makes the shares misleading.
COHERENT_RATIO = (0.9, 1.1)


def coherence(layers: dict[str, Any], network: dict[str, Any]) -> dict[str, Any]:
    """The paper's check (Sec. V.A) that the layers add up to the integrated network; outside
    COHERENT_RATIO (time or energy) the breakdown is marked incoherent, with the ratio."""
    summed, whole = layers["time_ms"], network["time_ms"]
    out: dict[str, Any] = {"sum_of_layers_ms": summed, "whole_network_ms": whole, "ratio": summed / whole}
    text = (f"sum of layers {fmt_ms(summed)} ms/iter, whole network {fmt_ms(whole)} ms/iter, "
            f"ratio {out['ratio']:.3f}")
    e_sum, e_whole = layers["energy_per_image_j"], network["energy_per_image_j"]
    out.update(sum_of_layers_j_per_image=e_sum, whole_network_j_per_image=e_whole, energy_ratio=None)
    if e_sum is not None and e_whole:
        out["energy_ratio"] = e_sum / e_whole
        text += (f"; energy: sum of layers {fmt_j(e_sum)} J/image, whole network {fmt_j(e_whole)} J/image, "
                 f"ratio {out['energy_ratio']:.3f}")
    low, high = COHERENT_RATIO
    off = [f"{what} ratio {ratio:.3f}" for what, ratio in (("time", out["ratio"]), ("energy", out["energy_ratio"]))
           if ratio is not None and not low <= ratio <= high]
    out["coherent"] = not off
    out["warning"] = (f"incoherent: {', '.join(off)} outside {low}-{high}; the layers timed alone do not add up "
                      "to the whole training step, so their shares mislead") if off else None
    out["text"] = text + (f" — INCOHERENT ({', '.join(off)} outside {low}-{high})" if off else " (coherent)")
    return out


def fmt_ms(ms: float) -> str:
    # Fixed decimals from 10 ms up, three significant digits below: 0.0123 ms of a ReLU stays readable.
    return f"{ms:.2f}" if ms >= 10 else f"{ms:.3g}"


def fmt_j(joules: float) -> str:
    return f"{joules:.4g}"


def progress_events(progress: Any, total: int) -> Callable[[dict[str, Any], Any], None]:
    """An ``on_event`` that moves a :class:`cnnbench.execution.progress.Progress` along the worker's layers."""
    state = {"started": False}

    def on_event(event: dict[str, Any], proc: Any) -> None:
        kind = event.get("event")
        if kind == "layer" or (kind == "phase" and event.get("phase") == "network"):
            if state["started"]:
                progress.done("ok")
            state["started"] = True
            if kind == "layer":
                progress.start(event["index"], f"layer {event['name']} ({event['type']})")
            else:
                progress.start(total - 1, "whole network (training step)")

    return on_event
