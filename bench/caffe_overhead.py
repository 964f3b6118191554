"""cnnbench's harness around the Caffe-style engine against the engine driven by a bare loop.

    python bench/caffe_overhead.py --rounds 10

Each round runs ``cnnbench run --framework caffe --network alexnet --batch-size 32 --device cpu`` and
``bench/caffe_alexnet_loop.py`` one right after the other, with the same warm-up, window length and
repeats, and NumPy's BLAS threads as they are in both; the order alternates between rounds so neither
always gets the warmer machine. The ratio of the medians over rounds is the figure in bench/README.md.
"""

from __future__ import annotations

from rounds import alternate, parser, run_cnnbench, run_loop


def main() -> None:
    args = parser().parse_args()
    print(alternate(args.rounds, lambda: run_cnnbench("caffe", args)["images_per_s"],
                    lambda: run_loop("caffe_alexnet_loop.py", args)[0]))


if __name__ == "__main__":
    main()
