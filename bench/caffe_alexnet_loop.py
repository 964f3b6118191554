"""The Caffe-style engine driven by a bare loop, the yardstick for cnnbench's harness around it: the
same ``Net`` the caffe adapter builds (im2col + GEMM layer by layer on NumPy), stepped in a plain Python
loop in this process, with no worker, no event stream and no adapter in between.

    python bench/caffe_alexnet_loop.py --batch-size 32 --min-time 1 --repeats 5

The engine has no framework of its own to write a loop in: its API is the yardstick, as PyTorch's and
TensorFlow's are for theirs.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

import numpy  # noqa: E402

from cnnbench.spec.catalog import resolve_network  # noqa: E402
from cnnbench_caffe.backend import Backend  # noqa: E402
from cnnbench_caffe.engine import Net  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    net = Net(resolve_network("alexnet"), args.batch_size, Backend("cpu"), numpy.float32)
    net.init_weights(0)
    net.synthetic_input(1)
    for _ in range(args.warmup):
        net.step()
    per_iter = []
    for _ in range(args.repeats):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.min_time:
            net.step()
            n += 1
        per_iter.append((time.perf_counter() - start) / n)
    median = statistics.median(per_iter)
    print(f"hand-written loop: alexnet bs{args.batch_size} cpu fp32 (Caffe-style engine): {median * 1e3:.1f} ms/iter, "
          f"{args.batch_size / median:.2f} images/s (median of {args.repeats} windows)")


if __name__ == "__main__":
    main()
