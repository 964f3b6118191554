"""The alternating-rounds comparison shared by the *_overhead.py benchmarks.

Each round runs cnnbench and the hand-written loop one right after the other; the order alternates so
neither always gets the warmer machine.
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
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent


def parser() -> argparse.ArgumentParser:
    """The flags every *_overhead.py takes; a script adds its own."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    return ap


def timing_flags(args: argparse.Namespace) -> list[str]:
    """The same warm-up, window length and repeats for cnnbench and the hand-written loop."""
    return ["--min-time", str(args.min_time), "--repeats", str(args.repeats), "--warmup", "2"]


def checkout_env() -> dict[str, str]:
    """The environment of the processes a round starts: this checkout's cnnbench and plugins first."""
    path = [str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))


def run_cnnbench(framework: str, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """``cnnbench run`` of alexnet on the CPU with the round's timing and ``extra`` flags: its result (ok)."""
    cmd = [sys.executable, "-m", "cnnbench", "run", "--framework", framework, "--network", "alexnet",
           "--batch-size", str(args.batch_size), "--device", "cpu", "--json", *extra, *timing_flags(args)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=checkout_env(), check=True).stdout
    result = json.loads(out)["results"][0]
    assert result["status"] == "ok", result
    return result


def run_loop(script: str, args: argparse.Namespace, *extra: str) -> tuple[float, str]:
    """A hand-written loop in bench/ with the same batch and timing: (its images/s, what it printed)."""
    cmd = [sys.executable, str(ROOT / "bench" / script), "--batch-size", str(args.batch_size), *extra,
           *timing_flags(args)]
    text = subprocess.run(cmd, capture_output=True, text=True, env=checkout_env(), check=True).stdout
    return float(re.search(r"([\d.]+) images/s", text).group(1)), text


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
