"""cnnbench's PyTorch harness against a minimal hand-written loop of the same step, run right after it.

    python bench/torch_overhead.py --rounds 3

Each round runs ``cnnbench run --framework torch --network alexnet --batch-size 32 --device cpu`` and
``bench/torch_alexnet_loop.py`` one right after the other, with the same warm-up, window length,
repeats and threads; the order alternates between rounds so neither always gets the warmer machine.
The ratio of the medians over rounds is the figure recorded in bench/README.md.
"""

from __future__ import annotations

import os

from rounds import alternate, parser, run_cnnbench, run_loop


def main() -> None:
    args = parser().parse_args()
    threads = str(os.cpu_count())

    def harness() -> float:
        result = run_cnnbench("torch", args)
        assert str(result["provenance"]["worker"]["threads_used"]) == threads, result["provenance"]
        return result["images_per_s"]

    print(alternate(args.rounds, harness, lambda: run_loop("torch_alexnet_loop.py", args, "--threads", threads)[0]))


if __name__ == "__main__":
    main()
