"""Throughput with the meters sampling against without, in one worker, alternating window by window.

    python bench/meter_overhead.py --network alexnet --batch-size 32 --repeats 24

The host samples a RAPL tree (cnnbench.testing.PowercapTree, Intel layout: package, core, uncore and
DRAM zones, read every period as the real sysfs files would be) while the worker trains. Sampling is
switched on for even windows and off for odd ones, so both halves see the same process, model and
machine state; between processes this 2-vCPU virtual machine drifts by a quarter, far more than the
effect measured. The figure is the ratio of median time per iteration without sampling to with it
(1.0: no overhead; the target is at least 0.99).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from cnnbench.config import Measurement, RunConfig  # noqa: E402
from cnnbench.meters import MeterSession  # noqa: E402
from cnnbench.spec.catalog import resolve_network  # noqa: E402
from cnnbench.plugins import PluginHost  # noqa: E402
from cnnbench.execution.runner import Cell, run_cell  # noqa: E402
from cnnbench.testing import PowercapTree  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--framework", default="torch")
    ap.add_argument("--network", default="alexnet")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=24)
    ap.add_argument("--min-time", type=float, default=1.0)
    args = ap.parse_args()
    host = PluginHost()
    spec = resolve_network(args.network)
    cls = host.adapter(args.framework)
    config = RunConfig(framework=args.framework, network=spec.name, batch_size=args.batch_size, device="cpu",
                       kernels=cls.capabilities("cpu").kernels[0])
    with PowercapTree.intel() as tree:
        os.environ["CNNBENCH_POWERCAP_ROOT"] = str(tree.root)
        session = MeterSession.open(["rapl"], host)
        session.start()  # window 0 is sampled
        sampled: dict[int, bool] = {}

        def on_event(event, proc):
            if event["event"] != "window":
                return
            sampled[event["index"]] = session.running
            # the next window runs in the other state
            session.stop() if session.running else session.start()

        try:
            result = run_cell(Cell(config, spec), Measurement(warmup=2, min_time=args.min_time, repeats=args.repeats),
                              timeout=3600, adapter_module=cls.__module__, on_event=on_event)
        finally:
            session.close()
    assert result.status == "ok", result.reason
    on, off = [], []
    for window in result.windows:
        per_iter = (window["end"] - window["start"]) / window["iterations"] * 1e3
        (on if sampled[window["index"]] else off).append(per_iter)
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"{args.framework} {spec.name} bs{args.batch_size} cpu, rapl sampled every {session.periods()['rapl'] * 1e3:.0f} ms "
          f"({len(session.domains)} domains: {', '.join(session.domains)})")
    print(f"windows with sampling: {len(on)}, median {m_on:.2f} ms/iter; without: {len(off)}, median {m_off:.2f} ms/iter")
    print(f"throughput with / without sampling: {m_off / m_on:.4f}")


if __name__ == "__main__":
    main()
