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
import subprocess
import sys
from pathlib import Path

from rounds import alternate

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

    print(alternate(args.rounds, run_cnnbench, run_loop))


if __name__ == "__main__":
    main()
