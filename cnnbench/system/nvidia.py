"""Is an NVIDIA GPU present? Read from the driver's files, without importing a framework or NVML."""

from __future__ import annotations

import os


def nvidia_gpu_present() -> bool:
    """True where the NVIDIA driver lists a GPU (/proc/driver/nvidia/gpus) or made its device node
    (/dev/nvidia0, as in containers that pass the device but not /proc/driver)."""
    try:
        if os.listdir("/proc/driver/nvidia/gpus"):
            return True
    except OSError:
        pass
    return os.path.exists("/dev/nvidia0")
