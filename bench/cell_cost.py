"""The fixed cost of one cell, per framework: what a cell costs beyond its timed windows and beyond the
framework's own import time.

    python bench/cell_cost.py --frameworks torch,tensorflow,caffe --rounds 5
    $MXNET_PYTHON bench/cell_cost.py --frameworks mxnet --rounds 5     # in MXNet's own environment

Each round runs one cell of each framework through the host's own path (``cnnbench.execution.runner.run_grid``:
preflight, a fresh worker process, the event stream, the result with its provenance) with one timed
window of one iteration, and splits its wall time by the worker's events (their timestamps share
CLOCK_MONOTONIC with the host):

    start    host: preflight and spawn, until the worker says hello (interpreter, cnnbench, plugin host)
    prepare  the adapter's prepare(): the framework's import and set-up
    build    the network built from the spec, synthetic data on the device
    warm-up  the warm-up iterations (the first ones pay for autotuning, tracing, graph optimisation)
    window   the timed window (not a fixed cost: excluded)
    end      the result's peak memory, inventory and provenance, the worker's exit, the host's bookkeeping

The framework's own import time is measured alone, in a fresh interpreter, the same number of times
(``python -c "import torch"``, timed inside). fixed cost = wall - window - import. On a large network
the warm-up iterations are mostly the network's own compute, so the last column takes them out at the
timed window's rate: what is left is set-up, autotuning, tracing and the harness.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from cnnbench.config import Measurement, RunConfig  # noqa: E402
from cnnbench.spec.catalog import resolve_network  # noqa: E402
from cnnbench.plugins import PluginHost  # noqa: E402
from cnnbench.execution.runner import Cell, run_grid  # noqa: E402

#: The module whose import is the framework's own cost (the Caffe-style engine's is NumPy).
IMPORTS = {"torch": "torch", "tensorflow": "tensorflow", "mxnet": "mxnet", "caffe": "numpy", "jax": "jax"}
PHASES = ("start", "prepare", "build", "warm-up", "window", "end")


def import_time(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def one_cell(host: PluginHost, framework: str, network: str, batch: int, warmup: int) -> dict[str, float]:
    spec = resolve_network(network)
    config = RunConfig(framework=framework, network=network, batch_size=batch, device="cpu",
                       kernels=host.adapter(framework).capabilities("cpu").kernels[0])
    marks: dict[str, float] = {}

    def on_event(event, proc) -> None:
        kind = event["event"]
        if kind == "hello":
            marks["hello"] = event["t"]
        elif kind == "phase" and event["phase"] in ("build", "warmup", "measure"):
            marks[event["phase"]] = event["t"]
        elif kind == "window":
            marks["window_start"], marks["window_end"] = event["start"], event["end"]

    started = time.monotonic()
    (result,) = run_grid([Cell(config, spec)], Measurement(warmup=warmup, iterations=1, repeats=1), host,
                         timeout=600, on_event=on_event)
    ended = time.monotonic()
    if result.status != "ok":
        raise SystemExit(f"{framework}: {result.status}: {result.reason}")
    return {
        "start": marks["hello"] - started,
        "prepare": marks["build"] - marks["hello"],
        "build": marks["warmup"] - marks["build"],
        "warm-up": marks["window_start"] - marks["warmup"],
        "window": marks["window_end"] - marks["window_start"],
        "end": ended - marks["window_end"],
        "wall": ended - started,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frameworks", default="torch,tensorflow,caffe")
    ap.add_argument("--network", default="alexnet")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    host = PluginHost()
    frameworks = args.frameworks.split(",")
    cells: dict[str, list[dict[str, float]]] = {f: [] for f in frameworks}
    imports: dict[str, list[float]] = {f: [] for f in frameworks}
    for _ in range(args.rounds):
        for framework in frameworks:  # alternating with the other frameworks: each round sees the same machine
            imports[framework].append(import_time(IMPORTS[framework]))
            cells[framework].append(one_cell(host, framework, args.network, args.batch_size, args.warmup))
    print(f"{args.network} bs{args.batch_size} cpu, --warmup {args.warmup}, one window of one iteration; "
          f"medians of {args.rounds} rounds, seconds")
    header = ["framework", *PHASES, "wall", "import", "fixed", "fixed-steady"]
    print("  ".join(f"{h:>12}" for h in header))
    for framework in frameworks:
        runs = list(zip(cells[framework], imports[framework]))
        median = {key: statistics.median(c[key] for c in cells[framework]) for key in (*PHASES, "wall")}
        fixed = statistics.median(c["wall"] - c["window"] - i for c, i in runs)
        beyond = statistics.median(c["wall"] - c["window"] * (1 + args.warmup) - i for c, i in runs)
        row = [framework, *(f"{median[k]:.2f}" for k in (*PHASES, "wall")),
               f"{statistics.median(imports[framework]):.2f}", f"{fixed:.2f}", f"{beyond:.2f}"]
        print("  ".join(f"{v:>12}" for v in row))
    print("fixed = wall - window - import; fixed-steady = fixed less the warm-up iterations at the window's rate")


if __name__ == "__main__":
    main()
