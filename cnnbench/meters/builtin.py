"""The built-in meters, registered through the same hook as third-party ones (listed in DEFAULT_PLUGINS).

Importing this module imports no vendor library: ``pynvml`` and ``pyRAPL`` load inside the meters' methods.
"""

from __future__ import annotations

from cnnbench import hookimpl


@hookimpl
def cnnbench_register_meters():
    from cnnbench.meters.nvml import NvmlMeter
    from cnnbench.meters.pyrapl import PyRaplMeter
    from cnnbench.meters.rapl import RaplMeter

    return [NvmlMeter, PyRaplMeter, RaplMeter]
