"""A minimal hand-written PyTorch training loop for AlexNet v2 (convnet-benchmarks' definition),
the yardstick for cnnbench's own harness: same step (forward, softmax cross-entropy, backward),
written the way a PyTorch user would, with no cnnbench code involved.

    python bench/torch_alexnet_loop.py --batch-size 32 --threads 2 --min-time 1 --repeats 5
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


def alexnet_v2() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Flatten(),
        nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, 1000),
    )


def make_step(batch_size: int):
    """The training step on synthetic data made once: forward, cross-entropy, backward."""
    torch.manual_seed(0)
    model = alexnet_v2().train()
    x = torch.randn(batch_size, 3, 224, 224)
    y = torch.randint(0, 1000, (batch_size,))

    def step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    step = make_step(args.batch_size)
    for _ in range(args.warmup):
        step()
    per_iter = []
    for _ in range(args.repeats):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.min_time:
            step()
            n += 1
        per_iter.append((time.perf_counter() - start) / n)
    median = statistics.median(per_iter)
    print(f"hand-written loop: alexnet bs{args.batch_size} cpu fp32, threads {torch.get_num_threads()}: "
          f"{median * 1e3:.1f} ms/iter, {args.batch_size / median:.2f} images/s (median of {args.repeats} windows)")


if __name__ == "__main__":
    main()
