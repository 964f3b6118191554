"""A stand-in for nvidia-ml-py's ``pynvml`` module, for testing the NVML meter without a GPU.

:func:`fake_pynvml` builds a module with GPUs (:class:`FakeGpu`) that draw known watts: energy counters,
NOT_SUPPORTED, a GPU that gets lost, UUIDs and PCI bus ids. Put it in ``sys.modules["pynvml"]``
(``monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(FakeGpu()))``).
"""

from __future__ import annotations

import math
import time
import types
from dataclasses import dataclass, field

_NVML_ERRORS = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_INVALID_ARGUMENT": 2,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_UNKNOWN": 999,
}
_NVML_ERROR_TEXT = {
    1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported", 4: "Insufficient Permissions",
    9: "Driver Not Loaded", 12: "NVML Shared Library Not Found", 15: "GPU is lost", 999: "Unknown Error",
}


@dataclass
class FakeGpu:
    """One GPU of :func:`fake_pynvml`, drawing constant ``watts``."""

    name: str = "NVIDIA H200"
    uuid: str = "GPU-8a3f6c2e-1b4d-4e5f-9a7b-0c1d2e3f4a5b"
    pci_bus_id: str = "00000000:17:00.0"
    watts: float = 300.0
    #: What nvmlDeviceGetPowerUsage reports (default: ``watts``); set it apart to make the cross-check fail.
    power_watts: float | None = None
    #: False: nvmlDeviceGetTotalEnergyConsumption raises NOT_SUPPORTED (pre-Volta).
    energy_counter: bool = True
    #: False: nvmlDeviceGetPowerUsage raises NOT_SUPPORTED.
    power: bool = True
    #: The counter holds its value between refreshes of this period (0: continuous).
    update_period_s: float = 0.0
    start_mj: int = 123_456_789
    ecc: tuple[int, int] = (1, 1)
    clocks_mhz: dict[str, int] = field(default_factory=lambda: {"sm": 1980, "mem": 3201, "graphics": 1980})
    max_clocks_mhz: dict[str, int] = field(default_factory=lambda: {"sm": 1980, "mem": 3201, "graphics": 1980})
    application_clocks_mhz: dict[str, int] = field(default_factory=lambda: {"sm": 1980, "mem": 3201})
    power_limit_w: float = 700.0
    memory_total_bytes: int = 143771 * 2**20
    #: monotonic time from which every call raises GPU_IS_LOST (None: never).
    lost_at: float | None = None
    t0: float = field(default_factory=time.monotonic)

    def lose(self, at: float | None = None) -> None:
        """The GPU falls off the bus now (or at monotonic time ``at``)."""
        self.lost_at = time.monotonic() if at is None else at

    def joules(self, start: float, end: float) -> float:
        """The true energy over ``[start, end]``."""
        return self.watts * (end - start)


def fake_pynvml(
    *gpus: FakeGpu,
    driver: str = "550.54.15",
    cuda_driver_version: int = 12040,
    init_error: int | None = None,
) -> types.ModuleType:
    """A module that behaves like nvidia-ml-py's ``pynvml`` for these GPUs (index order as given).

    ``init_error`` makes ``nvmlInit`` fail with that NVML code (e.g. 12: library not found). The module
    counts ``nvmlInit`` and ``nvmlShutdown`` calls in ``init_calls`` and ``shutdown_calls``.
    """
    mod = types.ModuleType("pynvml")
    mod.__file__ = "<cnnbench.testing.fake_pynvml>"

    class NVMLError(Exception):
        def __init__(self, value: int):
            super().__init__(value)
            self.value = value

        def __str__(self) -> str:
            return _NVML_ERROR_TEXT.get(self.value, f"NVML error {self.value}")

    mod.NVMLError = NVMLError
    for const, value in _NVML_ERRORS.items():
        setattr(mod, const, value)
    mod.NVML_CLOCK_GRAPHICS, mod.NVML_CLOCK_SM, mod.NVML_CLOCK_MEM = 0, 1, 2
    clock_names = {0: "graphics", 1: "sm", 2: "mem"}
    state = {"initialised": 0}
    mod.init_calls = 0
    mod.shutdown_calls = 0
    mod.gpus = list(gpus)

    def nvmlInit():
        mod.init_calls += 1
        if init_error is not None:
            raise NVMLError(init_error)
        state["initialised"] += 1

    def nvmlShutdown():
        mod.shutdown_calls += 1
        if state["initialised"] <= 0:
            raise NVMLError(1)
        state["initialised"] -= 1

    def check_init():
        if state["initialised"] <= 0:
            raise NVMLError(1)

    def device(fn):
        def call(handle, *args):
            check_init()
            if handle.lost_at is not None and time.monotonic() >= handle.lost_at:
                raise NVMLError(15)
            return fn(handle, *args)

        call.__name__ = fn.__name__
        return call

    def nvmlDeviceGetCount():
        check_init()
        return len(gpus)

    def nvmlDeviceGetHandleByIndex(index):
        check_init()
        if not 0 <= index < len(gpus):
            raise NVMLError(2)
        return gpus[index]

    @device
    def nvmlDeviceGetTotalEnergyConsumption(gpu):
        if not gpu.energy_counter:
            raise NVMLError(3)
        t = time.monotonic() - gpu.t0
        if gpu.update_period_s:
            t = math.floor(t / gpu.update_period_s) * gpu.update_period_s
        return gpu.start_mj + int(gpu.watts * t * 1e3)

    @device
    def nvmlDeviceGetPowerUsage(gpu):
        if not gpu.power:
            raise NVMLError(3)
        return int(round((gpu.watts if gpu.power_watts is None else gpu.power_watts) * 1e3))

    @device
    def nvmlDeviceGetPciInfo(gpu):
        legacy = gpu.pci_bus_id[4:] if len(gpu.pci_bus_id.split(":")[0]) == 8 else gpu.pci_bus_id
        return types.SimpleNamespace(busId=gpu.pci_bus_id, busIdLegacy=legacy)

    simple = {
        "nvmlDeviceGetUUID": lambda g: g.uuid,
        "nvmlDeviceGetName": lambda g: g.name,
        "nvmlDeviceGetSerial": lambda g: "1650123456789",
        "nvmlDeviceGetVbiosVersion": lambda g: "96.00.99.00.01",
        "nvmlDeviceGetEccMode": lambda g: list(g.ecc),
        "nvmlDeviceGetPersistenceMode": lambda g: 1,
        "nvmlDeviceGetPerformanceState": lambda g: 0,
        "nvmlDeviceGetClockInfo": lambda g, c: g.clocks_mhz[clock_names[c]],
        "nvmlDeviceGetMaxClockInfo": lambda g, c: g.max_clocks_mhz[clock_names[c]],
        "nvmlDeviceGetApplicationsClock": lambda g, c: g.application_clocks_mhz[clock_names[c]],
        "nvmlDeviceGetDefaultApplicationsClock": lambda g, c: g.application_clocks_mhz[clock_names[c]],
        "nvmlDeviceGetPowerManagementLimit": lambda g: int(g.power_limit_w * 1e3),
        "nvmlDeviceGetEnforcedPowerLimit": lambda g: int(g.power_limit_w * 1e3),
        "nvmlDeviceGetPowerManagementDefaultLimit": lambda g: int(g.power_limit_w * 1e3),
        "nvmlDeviceGetPowerManagementLimitConstraints": lambda g: [200_000, int(g.power_limit_w * 1e3)],
        "nvmlDeviceGetMemoryInfo": lambda g: types.SimpleNamespace(total=g.memory_total_bytes, used=0, free=g.memory_total_bytes),
    }
    for fname, fn in simple.items():
        fn.__name__ = fname
        setattr(mod, fname, device(fn))
    for fn in (nvmlInit, nvmlShutdown, nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex,
               nvmlDeviceGetTotalEnergyConsumption, nvmlDeviceGetPowerUsage, nvmlDeviceGetPciInfo):
        setattr(mod, fn.__name__, fn)
    mod.nvmlSystemGetDriverVersion = lambda: (check_init(), driver)[1]
    mod.nvmlSystemGetCudaDriverVersion = lambda: (check_init(), cuda_driver_version)[1]
    mod.nvmlSystemGetNVMLVersion = lambda: (check_init(), f"12.{driver}")[1]
    return mod

