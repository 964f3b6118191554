"""A minimal hand-written hybridized Gluon training loop for AlexNet v2 (convnet-benchmarks' definition),
the yardstick for cnnbench's MXNet harness: the same step (forward, softmax cross-entropy, backward),
written the way a Gluon user would, with no cnnbench code involved. Run it with the MXNet
environment's interpreter (``cnnbench env list`` shows it):

    ENV=~/.local/share/cnnbench/envs/mxnet/bin/python
    $ENV bench/mxnet_alexnet_loop.py --batch-size 32 --min-time 1 --repeats 5
"""

import argparse
import math
import os
import statistics
import time


def alexnet_v2():
    from mxnet.gluon import nn

    net = nn.HybridSequential()
    net.add(
        nn.Conv2D(64, 11, strides=4, padding=2, activation="relu"), nn.MaxPool2D(3, 2, ceil_mode=True),
        nn.Conv2D(192, 5, padding=2, activation="relu"), nn.MaxPool2D(3, 2, ceil_mode=True),
        nn.Conv2D(384, 3, padding=1, activation="relu"),
        nn.Conv2D(256, 3, padding=1, activation="relu"),
        nn.Conv2D(256, 3, padding=1, activation="relu"), nn.MaxPool2D(3, 2, ceil_mode=True),
        nn.Dense(4096, activation="relu"),
        nn.Dense(4096, activation="relu"),
        nn.Dense(1000),
    )
    return net


def make_step(batch_size: int):
    """The training step on synthetic data made once, and the wait that ends a timed window."""
    import mxnet as mx
    from mxnet import autograd, gluon

    mx.random.seed(0)
    net = alexnet_v2()
    net.initialize(mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=2))  # He, for ReLUs
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=(batch_size, 3, 224, 224))
    y = mx.nd.random.randint(0, 1000, shape=(batch_size,)).astype("float32")
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def step():
        with autograd.record():
            loss = loss_fn(net(x), y).mean()
        loss.backward()

    return step, mx.nd.waitall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS (default: MXNet's own choice)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # MXNet reads it when it loads
    step, sync = make_step(args.batch_size)
    for _ in range(args.warmup):
        start = time.perf_counter()
        step()
        sync()
        estimate = time.perf_counter() - start
    per_iter = []
    for _ in range(args.repeats):
        # MXNet runs operators asynchronously: queue the window's steps, then wait for them once.
        n = max(1, math.ceil(args.min_time / estimate))
        start = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        estimate = (time.perf_counter() - start) / n
        per_iter.append(estimate)
    median = statistics.median(per_iter)
    print(f"hand-written loop: alexnet bs{args.batch_size} cpu fp32, threads {args.threads or 'default'}: "
          f"{median * 1e3:.1f} ms/iter, {args.batch_size / median:.2f} images/s (median of {args.repeats} windows)")


if __name__ == "__main__":
    main()
