"""PyTorch's two memory formats on this CPU: ``--option memory_format=contiguous`` against ``channels_last``.

    python bench/torch_memory_format.py --rounds 4

For each network (resnet50 at batch 8, alexnet at batch 32, CPU, fp32, oneDNN) each round runs
``cnnbench run`` once per layout, one right after the other; the order alternates so neither layout always
gets the warmer machine. Printed: images/s of each and the ratio channels_last / contiguous (above 1:
channels_last is faster), per round and as the median of the rounds' ratios.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from rounds import checkout_env, parser, timing_flags

NETWORKS = (("resnet50", 8), ("alexnet", 32))
LAYOUTS = ("contiguous", "channels_last")


def images_per_s(network: str, batch: int, layout: str, args) -> float:
    cmd = [sys.executable, "-m", "cnnbench", "run", "--framework", "torch", "--network", network,
           "--batch-size", str(batch), "--device", "cpu", "--meters", "none", "--json",
           "--option", f"memory_format={layout}", *timing_flags(args)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=checkout_env(), check=True).stdout
    result = json.loads(out)["results"][0]
    assert result["status"] == "ok", result
    assert result["provenance"]["worker"]["memory_format"] == layout, result["provenance"]["worker"]
    return result["images_per_s"]


def main() -> None:
    ap = parser()
    ap.set_defaults(rounds=4, repeats=3)
    args = ap.parse_args()
    for network, batch in NETWORKS:
        ratios = []
        speeds: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
        for round_ in range(1, args.rounds + 1):
            order = LAYOUTS if round_ % 2 else LAYOUTS[::-1]
            for layout in order:
                speeds[layout].append(images_per_s(network, batch, layout, args))
            ratios.append(speeds["channels_last"][-1] / speeds["contiguous"][-1])
            print(f"{network} bs{batch} round {round_} ({order[0]} first): contiguous "
                  f"{speeds['contiguous'][-1]:.2f} images/s, channels_last {speeds['channels_last'][-1]:.2f} "
                  f"images/s, ratio {ratios[-1]:.3f}", flush=True)
        ratios.sort()
        print(f"{network} bs{batch} median: contiguous {statistics.median(speeds['contiguous']):.2f} images/s, "
              f"channels_last {statistics.median(speeds['channels_last']):.2f} images/s; median of the rounds' "
              f"ratios {statistics.median(ratios):.3f} (range {ratios[0]:.3f}-{ratios[-1]:.3f})", flush=True)


if __name__ == "__main__":
    main()
