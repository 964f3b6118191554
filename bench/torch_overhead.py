"""cnnbench's PyTorch harness against a minimal hand-written loop of the same step, run right after it.

    python bench/torch_overhead.py --rounds 3

Each round runs ``cnnbench run --framework torch --network alexnet --batch-size 32 --device cpu`` and
``bench/torch_alexnet_loop.py`` one right after the other, with the same warm-up, window length,
repeats and threads; the order alternates between rounds so neither always gets the warmer machine.
The ratio of the medians over rounds is the figure recorded in bench/README.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from rounds import ROOT, alternate, checkout_env, parser, timing_flags


def main() -> None:
    ap = parser()
    args = ap.parse_args()
    env = checkout_env()
    common = timing_flags(args)
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
