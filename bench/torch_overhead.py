"""cnnbench's PyTorch harness against a minimal hand-written loop of the same step, run right after it.

    python bench/torch_overhead.py --rounds 3

Each round runs ``cnnbench run --framework torch --network alexnet --batch-size 32 --device cpu`` and
then ``bench/torch_alexnet_loop.py`` with the same warm-up, window length and repeats, so both see the
same machine state; the ratio of the medians over rounds is the figure recorded in bench/README.md.
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
    for round_ in range(1, args.rounds + 1):
        out = subprocess.run(
            [sys.executable, "-m", "cnnbench", "run", "--framework", "torch", "--network", "alexnet",
             "--batch-size", str(args.batch_size), "--device", "cpu", "--json", *common],
            capture_output=True, text=True, env=env, check=True,
        ).stdout
        result = json.loads(out)["results"][0]
        harness.append(result["images_per_s"])
        text = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "torch_alexnet_loop.py"), "--batch-size", str(args.batch_size),
             "--threads", str(result["provenance"]["worker"]["threads_used"]), *common],
            capture_output=True, text=True, env=env, check=True,
        ).stdout
        loop.append(float(re.search(r"([\d.]+) images/s", text).group(1)))
        print(f"round {round_}: cnnbench {harness[-1]:.2f} images/s, hand-written loop {loop[-1]:.2f} images/s, "
              f"ratio {harness[-1] / loop[-1]:.3f}", flush=True)
    h, l = statistics.median(harness), statistics.median(loop)
    print(f"median: cnnbench {h:.2f} images/s, hand-written loop {l:.2f} images/s, ratio {h / l:.3f}")


if __name__ == "__main__":
    main()
