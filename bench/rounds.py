"""The alternating-rounds comparison shared by the *_overhead.py benchmarks.

Each round runs cnnbench and the hand-written loop one right after the other; the order alternates so
neither always gets the warmer machine.
"""

from __future__ import annotations

import statistics
from typing import Callable


def alternate(rounds: int, run_cnnbench: Callable[[], float], run_loop: Callable[[], float]) -> str:
    """Print one line per round (images/s of each and their ratio); return the summary line."""
    harness: list[float] = []
    loop: list[float] = []
    for round_ in range(1, rounds + 1):
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
    return (f"median: cnnbench {h:.2f} images/s, hand-written loop {l:.2f} images/s, ratio of medians {h / l:.3f}; "
            f"median of the rounds' ratios {statistics.median(ratios):.3f} (range {ratios[0]:.3f}-{ratios[-1]:.3f})")
