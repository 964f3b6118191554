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
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_UNKNOWN": 999,
}
#: nvml.h's values, as nvidia-ml-py's pynvml.py defines them.
_NVML_CONSTANTS = {
    "NVML_SUCCESS": 0,
    "NVML_FI_DEV_POWER_AVERAGE": 185,
    "NVML_FI_DEV_POWER_INSTANT": 186,
    "NVML_VALUE_TYPE_DOUBLE": 0,
    "NVML_VALUE_TYPE_UNSIGNED_INT": 1,
    "NVML_VALUE_TYPE_UNSIGNED_LONG": 2,
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": 3,
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": 4,
    "NVML_VALUE_TYPE_SIGNED_INT": 5,
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_DEVICE_ARCH_VOLTA": 5,
    "NVML_DEVICE_ARCH_TURING": 6,
    "NVML_DEVICE_ARCH_AMPERE": 7,
    "NVML_DEVICE_ARCH_ADA": 8,
    "NVML_DEVICE_ARCH_HOPPER": 9,
    "NVML_DEVICE_MIG_DISABLE": 0,
    "NVML_DEVICE_MIG_ENABLE": 1,
}
#: Clocks-event (throttle) reason bits of nvml.h.
GPU_IDLE, SW_POWER_CAP, HW_SLOWDOWN, SW_THERMAL_SLOWDOWN, HW_THERMAL_SLOWDOWN = 0x1, 0x4, 0x8, 0x20, 0x40
_NVML_ERROR_TEXT = {
    1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported", 4: "Insufficient Permissions",
    9: "Driver Not Loaded", 12: "NVML Shared Library Not Found", 13: "Function Not Found", 15: "GPU is lost",
    999: "Unknown Error",
}


@dataclass
class FakeGpu:
    """One GPU of :func:`fake_pynvml`, drawing constant ``watts``."""

    name: str = "NVIDIA H200"
    uuid: str = "GPU-8a3f6c2e-1b4d-4e5f-9a7b-0c1d2e3f4a5b"
    pci_bus_id: str = "00000000:17:00.0"
    watts: float = 300.0
    #: What nvmlDeviceGetPowerUsage and the instantaneous-power field report (default: ``watts``); set it
    #: apart to make the cross-check fail.
    power_watts: float | None = None
    #: What nvmlDeviceGetPowerUsage alone reports, where it differs from the instantaneous field (a one-second
    #: average lagging a change of load); default: as above.
    usage_watts: float | None = None
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
    #: The driver has the NVML_FI_DEV_POWER_INSTANT field (False: the field's nvmlReturn is NOT_SUPPORTED).
    instant_power: bool = True
    #: NVML's architecture number (nvmlDeviceGetArchitecture): 9 Hopper, 7 Ampere, 5 Volta.
    architecture: int = 9
    #: Degrees Celsius now; :meth:`cool` makes it fall over time.
    temperature_c: float = 35.0
    #: The clocks-event (throttle) reason bits reported now (see the module's constants).
    clocks_event_reasons: int = 0
    #: False: the library predates nvmlDeviceGetCurrentClocksEventReasons (driver < 535), only the old name exists.
    clocks_event_api: bool = True
    #: (current, pending) MIG mode; None: nvmlDeviceGetMigMode is NOT_SUPPORTED (no MIG on this GPU).
    mig_mode: tuple[int, int] | None = None
    #: UUIDs of the MIG devices of a GPU in MIG mode.
    mig_uuids: tuple[str, ...] = ()
    #: monotonic time at which the energy counter restarted from 0 (driver reload, GPU reset).
    counter_restart_at: float | None = None
    _cooling: tuple[float, float, float, float] | None = field(default=None, init=False, repr=False)

    def lose(self, at: float | None = None) -> None:
        """The GPU falls off the bus now (or at monotonic time ``at``)."""
        self.lost_at = time.monotonic() if at is None else at

    def restart_counter(self) -> None:
        """The energy counter starts again from 0 now, as after a driver reload or a GPU reset."""
        self.counter_restart_at = time.monotonic()

    def cool(self, from_c: float, to_c: float, seconds: float) -> None:
        """The GPU is at ``from_c`` now and cools linearly to ``to_c`` over ``seconds``."""
        self._cooling = (time.monotonic(), from_c, to_c, seconds)

    def temperature(self) -> float:
        if self._cooling is None:
            return self.temperature_c
        started, from_c, to_c, seconds = self._cooling
        done = min(1.0, (time.monotonic() - started) / seconds) if seconds > 0 else 1.0
        return from_c + (to_c - from_c) * done

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
    for const, value in {**_NVML_ERRORS, **_NVML_CONSTANTS}.items():
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
        now = time.monotonic()
        start, base = gpu.t0, gpu.start_mj
        if gpu.counter_restart_at is not None and now >= gpu.counter_restart_at:
            start, base = gpu.counter_restart_at, 0
        t = now - start
        if gpu.update_period_s:
            t = math.floor(t / gpu.update_period_s) * gpu.update_period_s
        return base + int(gpu.watts * t * 1e3)

    @device
    def nvmlDeviceGetPowerUsage(gpu):
        if not gpu.power:
            raise NVMLError(3)
        if gpu.usage_watts is not None:
            return int(round(gpu.usage_watts * 1e3))
        return int(round((gpu.watts if gpu.power_watts is None else gpu.power_watts) * 1e3))

    @device
    def nvmlDeviceGetFieldValues(gpu, field_ids):
        # Like NVML: the call succeeds, and each value carries its own return code.
        values = []
        for field_id in field_ids:
            field_id, scope = field_id if isinstance(field_id, tuple) else (field_id, 0)
            value = types.SimpleNamespace(fieldId=field_id, scopeId=scope, timestamp=int(time.time() * 1e6),
                                          latencyUsec=0, valueType=1, nvmlReturn=0,
                                          value=types.SimpleNamespace(uiVal=0, ullVal=0, dVal=0.0, siVal=0))
            if field_id == 186 and gpu.instant_power and gpu.power:
                value.value.uiVal = int(round((gpu.watts if gpu.power_watts is None else gpu.power_watts) * 1e3))
            else:
                value.nvmlReturn = 3
            values.append(value)
        return values

    @device
    def nvmlDeviceGetCurrentClocksThrottleReasons(gpu):
        return gpu.clocks_event_reasons

    @device
    def nvmlDeviceGetCurrentClocksEventReasons(gpu):
        if not gpu.clocks_event_api:
            raise NVMLError(13)
        return gpu.clocks_event_reasons

    @device
    def nvmlDeviceGetMigMode(gpu):
        if gpu.mig_mode is None:
            raise NVMLError(3)
        return list(gpu.mig_mode)

    @device
    def nvmlDeviceGetMaxMigDeviceCount(gpu):
        return 7 if gpu.mig_mode else 0

    @device
    def nvmlDeviceGetMigDeviceHandleByIndex(gpu, index):
        if index >= len(gpu.mig_uuids):
            raise NVMLError(2)
        return types.SimpleNamespace(uuid=gpu.mig_uuids[index])

    def nvmlDeviceGetUUID(handle):
        check_init()
        if isinstance(handle, types.SimpleNamespace):  # a MIG device's handle
            return handle.uuid
        if handle.lost_at is not None and time.monotonic() >= handle.lost_at:
            raise NVMLError(15)
        return handle.uuid

    @device
    def nvmlDeviceGetPciInfo(gpu):
        legacy = gpu.pci_bus_id[4:] if len(gpu.pci_bus_id.split(":")[0]) == 8 else gpu.pci_bus_id
        return types.SimpleNamespace(busId=gpu.pci_bus_id, busIdLegacy=legacy)

    simple = {
        "nvmlDeviceGetName": lambda g: g.name,
        "nvmlDeviceGetSerial": lambda g: "1650123456789",
        "nvmlDeviceGetVbiosVersion": lambda g: "96.00.99.00.01",
        "nvmlDeviceGetEccMode": lambda g: list(g.ecc),
        "nvmlDeviceGetPersistenceMode": lambda g: 1,
        "nvmlDeviceGetPerformanceState": lambda g: 0,
        "nvmlDeviceGetTemperature": lambda g, sensor: int(round(g.temperature())),
        "nvmlDeviceGetArchitecture": lambda g: g.architecture,
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
               nvmlDeviceGetTotalEnergyConsumption, nvmlDeviceGetPowerUsage, nvmlDeviceGetPciInfo,
               nvmlDeviceGetFieldValues, nvmlDeviceGetCurrentClocksThrottleReasons,
               nvmlDeviceGetCurrentClocksEventReasons, nvmlDeviceGetMigMode, nvmlDeviceGetMaxMigDeviceCount,
               nvmlDeviceGetMigDeviceHandleByIndex, nvmlDeviceGetUUID):
        setattr(mod, fn.__name__, fn)
    mod.nvmlSystemGetDriverVersion = lambda: (check_init(), driver)[1]
    mod.nvmlSystemGetCudaDriverVersion = lambda: (check_init(), cuda_driver_version)[1]
    mod.nvmlSystemGetNVMLVersion = lambda: (check_init(), f"12.{driver}")[1]
    return mod

