"""cnnbench's PyTorch harness against a minimal hand-written loop of the same step, run right after it.

    python bench/torch_overhead.py --rounds 3

Each round runs ``cnnbench run --framework torch --network alexnet --batch-size 32 --device cpu`` and
``bench/torch_alexnet_loop.py`` one right after the other, with the same warm-up, window length,
repeats and threads; the order alternates between rounds so neither always gets the warmer machine.
The ratio of the medians over rounds is the figure recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]))
    common = ["--min-time", str(args.min_time), "--repeats", str(args.repeats), "--warmup", "2"]
    harness, loop = [], []
    cnnbench_cmd = [sys.executable, "-m", "cnnbench", "run", "--framework", "torch", "--network", "alexnet",
                    "--batch-size", str(args.batch_size), "--device", "cpu", "--json", *common]
    threads = str(os.cpu_count())

    def run_cnnbench() -> float:
        out = subprocess.run(cnnbench_cmd, capture_output=True, text=True, env=env, check=True).stdout
        result = json.loads(out)["results"][0]
        assert str(result["provenance"]["worker"]["threads_used"]) == threads, result["provenance"]
        return result["images_per_s"]

    def run_loop() -> float:
        text = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "torch_alexnet_loop.py"), "--batch-size", str(args.batch_size),
             "--threads", threads, *common],
            capture_output=True, text=True, env=env, check=True,
        ).stdout
        return float(re.search(r"([\d.]+) images/s", text).group(1))

    for round_ in range(1, args.rounds + 1):
        if round_ % 2:
            harness.append(run_cnnbench())
            loop.append(run_loop())
            order = "cnnbench first"
        else:
            loop.append(run_loop())
            harness.append(run_cnnbench())
            order = "loop first"
        print(f"round {round_} ({order}): cnnbench {harness[-1]:.2f} images/s, hand-written loop {loop[-1]:.2f} "
              f"images/s, ratio {harness[-1] / loop[-1]:.3f}", flush=True)
    h, l = statistics.median(harness), statistics.median(loop)
    ratios = sorted(a / b for a, b in zip(harness, loop))
    print(f"median: cnnbench {h:.2f} images/s, hand-written loop {l:.2f} images/s, ratio of medians {h / l:.3f}; "
          f"median of the rounds' ratios {statistics.median(ratios):.3f} (range {ratios[0]:.3f}-{ratios[-1]:.3f})")


if __name__ == "__main__":
    main()
