"""What a GPU cell's energy record says besides its figure: the counter and the power integral of every timed
window side by side (the cross-check, per window), and the caveat of a GPU in MIG mode."""

from __future__ import annotations

from typing import Any

from cnnbench.meters.integrate import CROSS_CHECK_TOLERANCE
from cnnbench.meters.nvml import MIG_WARNING


def attach_gpu_checks(result: Any, session: Any, gpu_domain: str | None) -> None:
    """Add ``windows`` (counter J, integrated J, their disagreement, per window) to the energy entry of the
    cell's GPU, and warn when the GPU is in MIG mode (its figure is then the whole GPU's). A disagreement
    beyond the tolerance is already a warning of the window's reading, which reaches ``result.warnings``
    with the other meter warnings (``cnnbench.meters.energy``)."""
    entry = (result.energy or {}).get(gpu_domain) if gpu_domain else None
    if entry is None or not result.windows:
        return
    info = session.domains[gpu_domain]
    if info.power_samples:
        checks = session.window_checks(gpu_domain, result.windows)
        entry["windows"] = checks
        entry["cross_check_tolerance"] = CROSS_CHECK_TOLERANCE
        entry["power_average_s"] = info.power_average_s
    gpu = (result.provenance or {}).get("gpu") or {}
    if gpu.get("mig_mode") == "enabled":
        entry["mig"] = True
        result.warn(f"{gpu_domain}: MIG mode: {MIG_WARNING}")
