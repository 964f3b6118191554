"""cnnbench's PyTorch step against the hand-written step, interleaved step by step in one process.

    python bench/torch_step_ab.py --steps 20

Between processes this machine's throughput swings by a quarter from one minute to the next (a
2-vCPU virtual machine), which blurs bench/torch_overhead.py. Alternating single steps of the two
models in one process puts both under the same conditions, so any systematic difference in the step
itself (module structure, autocast or bookkeeping in the adapter) shows in the ratio of medians.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "bench")]

from cnnbench.config import RunConfig  # noqa: E402
from cnnbench.spec.catalog import resolve_network  # noqa: E402
from cnnbench_torch.adapter import TorchAdapter  # noqa: E402
from torch_alexnet_loop import make_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    config = RunConfig("torch", "alexnet", args.batch_size)
    adapter = TorchAdapter()
    adapter.prepare(config)
    model = adapter.build(resolve_network("alexnet"), config)
    ref_step = make_step(args.batch_size)
    for _ in range(2):
        adapter.step(model)
        ref_step()
    ours, theirs = [], []
    for _ in range(args.steps):
        for times, step in ((ours, lambda: adapter.step(model)), (theirs, ref_step)):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"alexnet bs{args.batch_size} cpu fp32, threads {torch.get_num_threads()}, {args.steps} interleaved steps each: "
          f"cnnbench step {a * 1e3:.1f} ms, hand-written step {b * 1e3:.1f} ms, images/s ratio {b / a:.3f}")


if __name__ == "__main__":
    main()
