"""cnnbench's MXNet harness against a minimal hand-written hybridized Gluon loop of the same step.

Run it with the MXNet environment's interpreter (``cnnbench env create mxnet``; ``cnnbench env list``
shows the path), which runs both the cnnbench host and its MXNet worker:

    ENV=~/.local/share/cnnbench/envs/mxnet/bin/python
    $ENV bench/mxnet_overhead.py --rounds 6
    $ENV bench/mxnet_overhead.py --ab-steps 20

Rounds: each runs ``cnnbench run --framework mxnet --network alexnet --batch-size 32 --device cpu``
and ``bench/mxnet_alexnet_loop.py`` one right after the other, with the same warm-up, window length,
repeats and threads; the order alternates between rounds so neither always gets the warmer machine.
The ratio of the medians over rounds is the figure recorded in bench/README.md.

``--ab-steps N``: instead, alternate single steps of cnnbench's model (built from networks/alexnet.toml
by the adapter, stepped and synchronised by ``MXNetAdapter``) and the hand-written one in one process,
so both see the same conditions on a noisy machine.
"""

from __future__ import annotations

import statistics
import sys
import time

from rounds import ROOT, alternate, parser, run_cnnbench, run_loop


def rounds(args, threads: str | None) -> None:
    thread_flag = ["--threads", threads] if threads else []
    used = set()

    def harness() -> float:
        result = run_cnnbench("mxnet", args, "--meters", "none", *thread_flag)
        worker = result["provenance"]["worker"]
        assert worker["python"] == sys.executable, worker
        used.add(worker["threads_used"])
        return result["images_per_s"]

    summary = alternate(args.rounds, harness, lambda: run_loop("mxnet_alexnet_loop.py", args, *thread_flag)[0])
    print(f"{summary}; threads used by cnnbench's worker: {', '.join(map(str, sorted(used)))}")


def interleaved(args, threads: str | None) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "bench")]
    from cnnbench.config import RunConfig
    from cnnbench.spec.catalog import resolve_network
    from cnnbench_mxnet.adapter import MXNetAdapter

    config = RunConfig("mxnet", "alexnet", args.batch_size, threads=int(threads) if threads else None)
    adapter = MXNetAdapter()
    adapter.prepare(config)  # sets MXNet's switches, then imports it
    model = adapter.build(resolve_network("alexnet"), config)
    from mxnet_alexnet_loop import make_step

    ref_step, ref_sync = make_step(args.batch_size)
    ours_step = lambda: (adapter.step(model), adapter.synchronize(model))  # noqa: E731
    theirs_step = lambda: (ref_step(), ref_sync())  # noqa: E731
    for _ in range(2):
        ours_step()
        theirs_step()
    ours, theirs = [], []
    for _ in range(args.ab_steps):
        for times, step in ((ours, ours_step), (theirs, theirs_step)):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"alexnet bs{args.batch_size} cpu fp32, threads {adapter.actual_threads(config)}, {args.ab_steps} "
          f"interleaved steps each: cnnbench step {a * 1e3:.1f} ms, hand-written step {b * 1e3:.1f} ms, "
          f"images/s ratio {b / a:.3f}")


def main() -> None:
    ap = parser()
    ap.add_argument("--ab-steps", type=int, default=0, help="interleave N single steps in one process instead")
    ap.add_argument("--threads", default=None, help="compute threads for both (default: MXNet's own choice)")
    args = ap.parse_args()
    import importlib.util

    if importlib.util.find_spec("mxnet") is None:
        sys.exit(f"{sys.executable} has no mxnet: run this script with the MXNet environment's python "
                 f"(cnnbench env create mxnet; cnnbench env list)")
    if args.ab_steps:
        interleaved(args, args.threads)
    else:
        rounds(args, args.threads)


if __name__ == "__main__":
    main()
