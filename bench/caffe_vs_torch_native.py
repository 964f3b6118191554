"""The Caffe-style engine against PyTorch's own im2col + GEMM kernels, the same step on the same network.

    python bench/caffe_vs_torch_native.py --rounds 3

Each round runs ``cnnbench run --framework caffe --network alexnet --batch-size 32 --device cpu
--kernels native`` and the same command with ``--framework torch``, one right after the other, with the
same warm-up, window length, repeats and threads; the order alternates between rounds so neither always
gets the warmer machine. Both are the paper's "native" family: im2col + GEMM convolutions (the caffe
engine through NumPy's BLAS, torch through ``slow_conv2d``), no oneDNN.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--network", default="alexnet")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]))
    common = ["--network", args.network, "--batch-size", str(args.batch_size), "--device", "cpu", "--kernels", "native",
              "--threads", str(args.threads), "--warmup", "2", "--min-time", str(args.min_time),
              "--repeats", str(args.repeats), "--json"]

    def run(framework: str) -> float:
        out = subprocess.run([sys.executable, "-m", "cnnbench", "run", "--framework", framework, *common],
                             capture_output=True, text=True, env=env, check=True).stdout
        result = json.loads(out)["results"][0]
        assert result["status"] == "ok", result["reason"]
        assert result["provenance"]["worker"]["threads_used"] == args.threads, result["provenance"]["worker"]
        return result["images_per_s"]

    caffe: list[float] = []
    torch: list[float] = []
    for round_ in range(1, args.rounds + 1):
        order = [("caffe", caffe), ("torch", torch)]
        if round_ % 2 == 0:
            order.reverse()
        for framework, figures in order:
            figures.append(run(framework))
        print(f"round {round_} ({order[0][0]} first): caffe {caffe[-1]:.2f} images/s, torch native "
              f"{torch[-1]:.2f} images/s, ratio {caffe[-1] / torch[-1]:.3f}", flush=True)
    c, t = statistics.median(caffe), statistics.median(torch)
    print(f"median: caffe {c:.2f} images/s, torch native {t:.2f} images/s, ratio of medians {c / t:.3f} "
          f"({args.network} bs{args.batch_size} cpu fp32, {args.threads} threads)")


if __name__ == "__main__":
    main()
