"""A file-backed stand-in for nvidia-ml-py's ``pynvml``, for tests/test_dvfs.py ONLY: never put this folder on
a real machine's PYTHONPATH (it would hide the real NVML and report made-up clocks).

Its GPUs' application clocks, power limits, API restrictions and the log of every set call live in a JSON
file named by ``$CNNBENCH_TEST_NVML_STATE``, so that a cnnbench host in another process (which imports this
module as ``pynvml`` through PYTHONPATH) and the test that inspects it afterwards see the same GPU. Everything
else (energy counters at known watts, NVMLError, init/shutdown, the inventory's queries) comes from
``cnnbench.testing.fake_pynvml``. The file's format is that of ``gpu_state()`` in tests/test_dvfs.py; ``deny``
lists set calls that fail with NO_PERMISSION, as a driver does for a user it does not trust.
"""

from __future__ import annotations

import json
import os

from cnnbench.testing import FakeGpu, fake_pynvml

_PATH = os.environ.get("CNNBENCH_TEST_NVML_STATE")
if not _PATH:
    raise ImportError("tests/dvfsfake/pynvml.py is a test fake: it needs $CNNBENCH_TEST_NVML_STATE (tests only)")

NVML_RESTRICTED_API_SET_APPLICATION_CLOCKS = 0
NVML_FEATURE_DISABLED, NVML_FEATURE_ENABLED = 0, 1


def load() -> dict:
    with open(_PATH) as f:
        return json.load(f)


def save(state: dict) -> None:
    # atomically: the test reads the file while a host in another process may be writing it
    tmp = f"{_PATH}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, _PATH)


_base = fake_pynvml(*(FakeGpu(name=g["name"], uuid=g["uuid"], pci_bus_id=g["pci_bus_id"], watts=g["watts"])
                      for g in load()["gpus"]))
globals().update({k: v for k, v in vars(_base).items() if not k.startswith("__")})
_UUIDS = [g.uuid for g in _base.gpus]


def _gpu(handle) -> tuple[dict, int]:
    _base.nvmlDeviceGetCount()  # raises UNINITIALIZED like NVML before nvmlInit
    index = _UUIDS.index(handle.uuid)
    state = load()
    return state, index


def _clock(gpu: dict, key: str, clock_type: int) -> int:
    memory, graphics = gpu[key]
    return memory if clock_type == NVML_CLOCK_MEM else graphics  # noqa: F821 (from the base module)


def nvmlDeviceGetHandleByUUID(uuid):
    _base.nvmlDeviceGetCount()
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    for gpu in _base.gpus:
        if gpu.uuid == uuid:
            return gpu
    raise NVMLError(2)  # noqa: F821


def nvmlDeviceGetSupportedMemoryClocks(handle):
    state, i = _gpu(handle)
    return sorted((int(m) for m in state["gpus"][i]["clocks"]), reverse=True)


def nvmlDeviceGetSupportedGraphicsClocks(handle, memory):
    state, i = _gpu(handle)
    clocks = state["gpus"][i]["clocks"]
    if str(memory) not in clocks:
        raise NVMLError(2)  # noqa: F821
    return list(clocks[str(memory)])


def nvmlDeviceGetApplicationsClock(handle, clock_type):
    state, i = _gpu(handle)
    return _clock(state["gpus"][i], "application", clock_type)


def nvmlDeviceGetDefaultApplicationsClock(handle, clock_type):
    state, i = _gpu(handle)
    return _clock(state["gpus"][i], "default_application", clock_type)


def nvmlDeviceGetClockInfo(handle, clock_type):
    state, i = _gpu(handle)
    return _clock(state["gpus"][i], "application", clock_type)


def nvmlDeviceGetAPIRestriction(handle, api):
    state, i = _gpu(handle)
    return NVML_FEATURE_ENABLED if state["gpus"][i]["api_restricted"] else NVML_FEATURE_DISABLED


def _power(key: str):
    def get(handle):
        state, i = _gpu(handle)
        return state["gpus"][i][key]

    return get


nvmlDeviceGetPowerManagementLimit = _power("power_limit_mw")
nvmlDeviceGetEnforcedPowerLimit = _power("power_limit_mw")
nvmlDeviceGetPowerManagementDefaultLimit = _power("power_default_mw")
nvmlDeviceGetPowerManagementLimitConstraints = _power("power_range_mw")


def _set(name: str, handle, args: list, change) -> None:
    state, i = _gpu(handle)
    state.setdefault("calls", []).append({"call": name, "gpu": i, "args": args, "pid": os.getpid()})
    try:
        if name in state.get("deny", []):
            raise NVMLError(4)  # noqa: F821  NO_PERMISSION
        change(state["gpus"][i])
    finally:
        save(state)


def nvmlDeviceSetApplicationsClocks(handle, memory, graphics):
    def change(gpu):
        if graphics not in gpu["clocks"].get(str(memory), []):
            raise NVMLError(2)  # noqa: F821  INVALID_ARGUMENT, as NVML answers an unsupported pair
        gpu["application"] = [memory, graphics]

    _set("nvmlDeviceSetApplicationsClocks", handle, [memory, graphics], change)


def nvmlDeviceResetApplicationsClocks(handle):
    _set("nvmlDeviceResetApplicationsClocks", handle, [],
         lambda gpu: gpu.update(application=list(gpu["default_application"])))


def nvmlDeviceSetPowerManagementLimit(handle, milliwatts):
    def change(gpu):
        low, high = gpu["power_range_mw"]
        if not low <= milliwatts <= high:
            raise NVMLError(2)  # noqa: F821
        gpu["power_limit_mw"] = milliwatts

    _set("nvmlDeviceSetPowerManagementLimit", handle, [milliwatts], change)

