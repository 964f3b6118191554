"""cnnbench's TensorFlow harness against a minimal hand-written tf.function loop of the same step.

    python bench/tensorflow_overhead.py --rounds 10          # alternating processes
    python bench/tensorflow_overhead.py --ab-steps 20        # interleaved steps in one process

Rounds: each runs ``cnnbench run --framework tensorflow --network alexnet --batch-size 32 --device cpu``
and ``bench/tensorflow_alexnet_loop.py`` one right after the other, with the same warm-up, window length,
repeats and threads (TensorFlow's defaults for both); the order alternates between rounds so neither
always gets the warmer machine. The ratio of the medians over rounds is the figure in bench/README.md.

``--ab-steps N``: between processes this machine's throughput swings by a quarter from one minute to the
next, so this mode alternates single steps of cnnbench's model (built from ``networks/alexnet.toml`` by
the adapter, stepped by ``TensorFlowAdapter.step``) and the hand-written one in one process, both under
the same conditions, as bench/torch_step_ab.py does for PyTorch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from rounds import ROOT, alternate, parser, run_cnnbench, run_loop


def rounds(args: argparse.Namespace) -> None:
    threads = str(len(os.sched_getaffinity(0)))

    def harness() -> float:
        result = run_cnnbench("tensorflow", args, "--meters", "none")
        assert str(result["provenance"]["worker"]["threads_used"]) == threads, result["provenance"]
        return result["images_per_s"]

    def loop() -> float:
        images_per_s, text = run_loop("tensorflow_alexnet_loop.py", args)
        assert f"threads {threads}:" in text, text
        return images_per_s

    print(alternate(args.rounds, harness, loop))


def interleaved(args: argparse.Namespace) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "bench")]
    from cnnbench.config import RunConfig
    from cnnbench.spec.catalog import resolve_network
    from cnnbench_tensorflow.adapter import TensorFlowAdapter

    config = RunConfig("tensorflow", "alexnet", args.batch_size)
    adapter = TensorFlowAdapter()
    adapter.prepare(config)  # before TensorFlow is imported: it sets TF_ENABLE_ONEDNN_OPTS
    model = adapter.build(resolve_network("alexnet"), config)

    from tensorflow_alexnet_loop import make_step

    ref_step = make_step(args.batch_size)

    def ours():
        adapter.step(model)
        adapter.synchronize(model)

    def theirs():
        ref_step()[0].numpy()

    for _ in range(2):
        ours()
        theirs()
    a_times, b_times = [], []
    for index in range(args.ab_steps):
        pair = ((a_times, ours), (b_times, theirs))
        for times, step in pair if index % 2 == 0 else pair[::-1]:  # neither always goes first
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    a, b = statistics.median(a_times), statistics.median(b_times)
    print(f"alexnet bs{args.batch_size} cpu fp32, threads {adapter.actual_threads(config)}, {args.ab_steps} interleaved "
          f"steps each: cnnbench step {a * 1e3:.1f} ms, hand-written step {b * 1e3:.1f} ms, images/s ratio {b / a:.3f}")


def main() -> None:
    ap = parser()
    ap.add_argument("--ab-steps", type=int, default=0, help="interleave this many steps of each in one process instead")
    args = ap.parse_args()
    if args.ab_steps:
        interleaved(args)
    else:
        rounds(args)


if __name__ == "__main__":
    main()
