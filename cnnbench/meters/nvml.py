"""The ``nvml`` meter: NVIDIA GPUs through NVML (the ``nvidia-ml-py`` distribution, module ``pynvml``).

``pynvml`` is imported inside the methods only: ``cnnbench --help`` never loads it. NVML is initialised once
when the session opens and kept initialised across every run of the grid (``nvmlInit`` is reference
counted, so a probe elsewhere in the process does not disturb it); ``close()`` shuts it down.

**Domains** are ``gpuN`` with N the NVML index, which follows PCI bus order and ignores
``CUDA_VISIBLE_DEVICES``; the GPU a worker ran on is found by UUID or PCI bus id
(``MeterSession.gpu_domain``), never by CUDA index, which the two can number differently.

**Energy.** The total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver loaded,
Volta and newer) comes first: method ``counter``. Power is sampled too, from the instantaneous field
``NVML_FI_DEV_POWER_INSTANT`` (``nvmlDeviceGetFieldValues``) where the driver has it, else from
``nvmlDeviceGetPowerUsage``, which NVIDIA documents as "averaged over 1 sec interval" on Ampere (except GA100)
and newer GPUs (NVML API reference, nvmlDeviceGetPowerUsage); its integral is reported beside the counter's
figure for every window and cross-checked, a disagreement over 5 % being a warning on the reading. Where the
counter is NOT_SUPPORTED the integral is the figure, method ``integrated``. Both values are refreshed by the
driver, not per call: we assume every ~100 ms (measured 10-100 ms on recent GPUs), flag windows shorter than
that and than a power average, and sample at 50 ms so that every refresh is seen.

**Cannot be fooled.** A counter that goes backwards (driver reload, GPU reset) is an error for the windows
across it, never a figure. MIG mode: NVML's counter and power are the whole GPU's, every instance together, so
a cell on a MIG instance keeps that figure with a warning saying so (the instance's own share cannot be
measured). The deprecated ``pynvml`` distribution, installed instead of or beside ``nvidia-ml-py``, is named
with the fix.

**A lost GPU** (``NVML_ERROR_GPU_IS_LOST``: fell off the bus, Xid 79) is not sampled again, and every window
that overlaps the time since its last good sample gets a reading with an error, which the runner turns into
the cell's status.
"""

from __future__ import annotations

import os
import re
from typing import Any

from cnnbench.meters.base import DomainInfo, Meter, MeterError, Sample

#: Assumed refresh period of NVML's energy counter and power value (see the module docstring).
UPDATE_PERIOD_S = 0.1
INSTALL_HINT = "pip install 'cnnbench[nvml]'  (the nvidia-ml-py distribution; not the deprecated 'pynvml' one)"

# NVML return codes, as in nvml.h (used when the module lacks the constant).
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_GPU_IS_LOST = 15
# nvmlClockType_t
_CLOCK_GRAPHICS, _CLOCK_SM, _CLOCK_MEM = 0, 1, 2
_FUNCTION_NOT_FOUND = 13
# nvml.h: the instantaneous power field, and the union member each value type is read from.
FI_POWER_INSTANT = 186
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
_TEMPERATURE_GPU = 0
_ARCH_AMPERE = 7
#: nvmlDeviceGetPowerUsage's averaging period where NVIDIA documents one (Ampere except GA100, and newer).
POWER_AVERAGE_S = 1.0
#: GA100 boards (A100, A30, A800) report instantaneous power through nvmlDeviceGetPowerUsage.
_GA100 = re.compile(r"\bA(100|30|800)\b")
#: Clocks-event (throttle) reasons of nvml.h, bit -> name; the heat and power ones are warned about.
CLOCKS_EVENT_REASONS = {
    0x1: "gpu idle", 0x2: "applications clocks setting", 0x4: "sw power cap", 0x8: "hw slowdown",
    0x10: "sync boost", 0x20: "sw thermal slowdown", 0x40: "hw thermal slowdown",
    0x80: "hw power brake slowdown", 0x100: "display clocks setting",
}
HEAT_OR_POWER_REASONS = 0x4 | 0x8 | 0x20 | 0x40 | 0x80
PYNVML_FIX = "pip uninstall pynvml && pip install nvidia-ml-py"


def reason_names(bits: int) -> list[str]:
    """``0x24`` -> ``["sw power cap", "sw thermal slowdown"]``; unknown bits by their value."""
    names = [name for bit, name in CLOCKS_EVENT_REASONS.items() if bits & bit]
    unknown = bits & ~sum(CLOCKS_EVENT_REASONS)
    return names + ([f"0x{unknown:x}"] if unknown else [])


def _installed_version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def deprecated_pynvml(module_file: str | None = None) -> str | None:
    """Why the ``pynvml`` module may not be NVIDIA's, when the deprecated ``pynvml`` distribution is installed
    (instead of ``nvidia-ml-py``, or beside it: the two write the same files); None when it is not.

    Releases of ``pynvml`` before 12 ship their own, older copy of NVIDIA's bindings as a package, which wins
    over ``nvidia-ml-py``'s ``pynvml.py``; later ones are a wrapper that needs ``nvidia-ml-py``."""
    old = _installed_version("pynvml")
    if old is None:
        return None
    nvidia = _installed_version("nvidia-ml-py")
    shadowed = bool(module_file) and module_file.endswith(os.path.join("pynvml", "__init__.py"))
    if nvidia is None:
        return (f"the deprecated 'pynvml' distribution {old} is installed instead of NVIDIA's nvidia-ml-py; "
                f"fix: {PYNVML_FIX}")
    where = " (and its module is the one imported)" if shadowed else ""
    return (f"the deprecated 'pynvml' distribution {old} is installed beside nvidia-ml-py {nvidia}{where}: the two "
            f"write the same files; fix: pip uninstall pynvml && pip install --force-reinstall nvidia-ml-py")


def text_of(value: Any) -> str:
    """nvidia-ml-py returns str; releases before 11.5 returned bytes."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def normalize_uuid(uuid: str) -> str:
    """``GPU-58a7d1a9-...`` (NVML) and ``58a7d1a9-...`` (torch) -> ``58a7d1a9-...``."""
    text = text_of(uuid).strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


_PCI_RE = re.compile(r"^(?:([0-9a-f]+):)?([0-9a-f]+):([0-9a-f]+)(?:\.([0-9a-f]+))?$")


def normalize_pci(bus_id: str) -> tuple[int, int, int, int] | None:
    """``00000000:17:00.0`` (NVML), ``0000:17:00.0`` (CUDA) and ``17:00.0`` -> (0, 0x17, 0, 0)."""
    m = _PCI_RE.match(text_of(bus_id).strip().lower())
    if m is None:
        return None
    domain, bus, device, function = m.groups()
    return int(domain or "0", 16), int(bus, 16), int(device, 16), int(function or "0", 16)


class NvmlMeter(Meter):
    name = "nvml"
    description = "NVIDIA GPU energy through NVML (nvidia-ml-py)"
    install_hint = INSTALL_HINT
    default_period_s = 0.05

    @classmethod
    def could_apply_here(cls) -> bool:
        from cnnbench.system.nvidia import nvidia_gpu_present

        return nvidia_gpu_present()

    def __init__(self, settings=None):
        super().__init__(settings)
        self._nvml: Any = None
        #: domain -> "instant" (the NVML_FI_DEV_POWER_INSTANT field) or "usage" (nvmlDeviceGetPowerUsage)
        self._power_source: dict[str, str] = {}
        self._initialised = False
        self._handles: dict[str, Any] = {}
        self._gpus: dict[str, dict[str, Any]] = {}
        self._base_mj: dict[str, int] = {}
        self._previous_mj: dict[str, int] = {}
        self._offset_mj: dict[str, int] = {}
        self._lost: set[str] = set()

    # -- NVML plumbing ----------------------------------------------------------------------------

    def _code(self, name: str, default: int) -> int:
        return getattr(self._nvml, name, default)

    def _is(self, exc: BaseException, name: str, default: int) -> bool:
        return getattr(exc, "value", None) == self._code(name, default)

    def _describe(self, exc: BaseException) -> str:
        value = getattr(exc, "value", None)
        return f"{exc} (NVML error {value})" if value is not None else f"{type(exc).__name__}: {exc}"

    def _optional(self, call, *args) -> Any:
        """A value for the inventory; None where the GPU or driver does not support it."""
        try:
            return call(*args)
        except Exception:
            return None

    # -- the contract -----------------------------------------------------------------------------

    def open(self) -> None:
        try:
            import pynvml
        except ImportError:
            why = deprecated_pynvml()
            if why:
                raise MeterError(f"pynvml cannot be imported: {why.split('; fix: ')[0]}", PYNVML_FIX) from None
            raise MeterError("nvidia-ml-py is not installed (its module is pynvml)", INSTALL_HINT) from None
        self._nvml = nvml = pynvml
        why = deprecated_pynvml(getattr(pynvml, "__file__", None))
        if why:
            self.notes.append(f"nvml: {why}")
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            if self._is(exc, "NVML_ERROR_LIBRARY_NOT_FOUND", _LIBRARY_NOT_FOUND):
                raise MeterError(
                    "no NVIDIA driver here: NVML's library (libnvidia-ml.so.1) was not found",
                    "install the NVIDIA driver on a machine with an NVIDIA GPU",
                ) from None
            if self._is(exc, "NVML_ERROR_DRIVER_NOT_LOADED", _DRIVER_NOT_LOADED):
                raise MeterError("the NVIDIA driver is not loaded", "load it (sudo modprobe nvidia) or reboot") from None
            if self._is(exc, "NVML_ERROR_NO_PERMISSION", _NO_PERMISSION):
                raise MeterError(
                    f"NVML refused access: {self._describe(exc)}", "check the permissions of /dev/nvidia*"
                ) from None
            raise MeterError(f"nvmlInit failed: {self._describe(exc)}") from None
        self._initialised = True
        try:
            self._find_devices()
        except BaseException:
            self.close()
            raise
        if not self.domains:
            reasons = "; ".join(f"{d}: {e.reason}" for d, e in self.unavailable.items())
            self.close()
            raise MeterError(f"no GPU can be metered through NVML ({reasons or 'NVML sees no GPU'})")

    def _find_devices(self) -> None:
        nvml = self._nvml
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            raise MeterError(f"nvmlDeviceGetCount failed: {self._describe(exc)}") from None
        for index in range(count):
            domain = f"gpu{index}"
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = text_of(nvml.nvmlDeviceGetUUID(handle))
                name = text_of(nvml.nvmlDeviceGetName(handle))
                bus_id = text_of(nvml.nvmlDeviceGetPciInfo(handle).busId)
            except nvml.NVMLError as exc:
                self.unavailable[domain] = MeterError(f"NVML device {index} cannot be opened: {self._describe(exc)}")
                continue
            counter = self._supported(nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
            instant = self._instant_power(handle) is not None
            power = True if instant else self._supported(nvml.nvmlDeviceGetPowerUsage, handle)
            if isinstance(counter, MeterError) or isinstance(power, MeterError):
                error = counter if isinstance(counter, MeterError) else power
                self.unavailable[domain] = MeterError(f"NVML device {index} ({name}): {error.reason}", error.fix)
                continue
            if not counter and not power:
                self.unavailable[domain] = MeterError(
                    f"NVML device {index} ({name}) reports neither an energy counter nor power (NOT_SUPPORTED)"
                )
                continue
            if not counter:
                self.notes.append(
                    f"nvml: {domain} ({name}) has no total-energy counter (it needs Volta or newer): its energy "
                    "is integrated from power samples (method 'integrated')"
                )
            average_s = 0.0
            if power and not instant:
                average_s = self._power_average(handle, name)
                self.notes.append(
                    f"nvml: {domain} ({name}): the driver has no instantaneous power field, so power comes from "
                    "nvmlDeviceGetPowerUsage, " + (f"averaged over {average_s:g} s on this GPU: its integral cannot "
                                                  "follow windows shorter than that" if average_s else
                                                  "instantaneous on this GPU")
                )
            mig = self._mig(handle)
            self._handles[domain] = handle
            self._power_source[domain] = "instant" if instant else "usage"
            self._gpus[domain] = {"index": index, "name": name, "uuid": uuid, "pci_bus_id": bus_id,
                                  "power_source": "NVML_FI_DEV_POWER_INSTANT" if instant else "nvmlDeviceGetPowerUsage",
                                  "power_average_s": average_s, **mig}
            if mig.get("mig_mode") == "enabled":
                self.notes.append(f"nvml: {domain} ({name}) is in MIG mode: {MIG_WARNING}")
            self.domains[domain] = DomainInfo(
                meter=self.name, kind="gpu", device=uuid, source=f"NVML device {index} ({name}, {bus_id})",
                update_period_s=UPDATE_PERIOD_S, energy_counter=counter, power_samples=power,
                power_average_s=average_s,
            )

    def _instant_power(self, handle) -> float | None:
        """Watts from the NVML_FI_DEV_POWER_INSTANT field; None where the driver or library lacks it.

        The call itself succeeds on drivers without the field: the value's own ``nvmlReturn`` says so."""
        nvml = self._nvml
        get = getattr(nvml, "nvmlDeviceGetFieldValues", None)
        if get is None:
            return None
        try:
            value = get(handle, [getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", FI_POWER_INSTANT)])[0]
        except nvml.NVMLError as exc:
            if self._is(exc, "NVML_ERROR_GPU_IS_LOST", _GPU_IS_LOST):
                raise
            return None
        if value.nvmlReturn != getattr(nvml, "NVML_SUCCESS", 0):
            return None
        member = _VALUE_MEMBERS.get(int(value.valueType), "uiVal")
        return float(getattr(value.value, member)) / 1e3  # mW

    def _power_average(self, handle, name: str) -> float:
        """nvmlDeviceGetPowerUsage's averaging period on this GPU (0: instantaneous), per NVIDIA's API reference.
        Where the architecture cannot be read, the average is assumed, so short windows are flagged, not trusted."""
        arch = self._optional(getattr(self._nvml, "nvmlDeviceGetArchitecture", lambda h: None), handle)
        if arch is None:
            return POWER_AVERAGE_S
        if int(arch) >= getattr(self._nvml, "NVML_DEVICE_ARCH_AMPERE", _ARCH_AMPERE) and not _GA100.search(name):
            return POWER_AVERAGE_S
        return 0.0

    def _mig(self, handle) -> dict[str, Any]:
        """MIG mode and the UUIDs of its instances (a worker on an instance reports the instance's UUID)."""
        nvml = self._nvml
        mode = self._optional(getattr(nvml, "nvmlDeviceGetMigMode", lambda h: None), handle)
        if not mode or not int(mode[0]):
            return {"mig_mode": "disabled" if mode else None}
        uuids = []
        for i in range(self._optional(nvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
            mig = self._optional(nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, i)
            uuid = mig is not None and self._optional(nvml.nvmlDeviceGetUUID, mig)
            if uuid:
                uuids.append(text_of(uuid))
        return {"mig_mode": "enabled", "mig_uuids": uuids}

    def _supported(self, call, handle) -> bool | MeterError:
        """Whether a query works on this GPU: True, False (NOT_SUPPORTED), or why it failed otherwise."""
        try:
            call(handle)
            return True
        except self._nvml.NVMLError as exc:
            if self._is(exc, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED):
                return False
            if self._is(exc, "NVML_ERROR_GPU_IS_LOST", _GPU_IS_LOST):
                return MeterError("the GPU is lost (NVML_ERROR_GPU_IS_LOST: it fell off the bus)", "reset the GPU or reboot")
            return MeterError(f"{getattr(call, '__name__', 'a query')} failed: {self._describe(exc)}")

    def sample(self, now: float) -> dict[str, Sample]:
        nvml = self._nvml
        out: dict[str, Sample] = {}
        for domain, handle in self._handles.items():
            if domain in self._lost:
                continue
            info = self.domains[domain]
            try:
                mj = nvml.nvmlDeviceGetTotalEnergyConsumption(handle) if info.energy_counter else None
                mw = None
                if info.power_samples and self._power_source[domain] == "instant":
                    watts = self._instant_power(handle)
                    mw = None if watts is None else watts * 1e3
                elif info.power_samples:
                    mw = nvml.nvmlDeviceGetPowerUsage(handle)
            except nvml.NVMLError as exc:
                if self._is(exc, "NVML_ERROR_GPU_IS_LOST", _GPU_IS_LOST):
                    self._lost.add(domain)
                    out[domain] = Sample(
                        error=f"{domain} was lost (NVML_ERROR_GPU_IS_LOST: it fell off the bus): readings of "
                        "windows overlapping the loss are invalid",
                        lost=True,
                    )
                else:
                    out[domain] = Sample(warning=f"NVML read of {domain} failed: {self._describe(exc)}")
                continue
            energy_j = None
            error = None
            if mj is not None:
                mj = int(mj)
                base = self._base_mj.setdefault(domain, mj)
                previous = self._previous_mj.get(domain, mj)
                if mj < previous:
                    # The counter restarted (driver reload, GPU reset): keep the total monotone, and let
                    # windows across the restart fail rather than report a made-up figure.
                    self._offset_mj[domain] = self._offset_mj.get(domain, 0) + previous - mj
                    error = f"{domain}'s energy counter went backwards ({previous} -> {mj} mJ): driver reloaded or GPU reset?"
                self._previous_mj[domain] = mj
                energy_j = (mj - base + self._offset_mj.get(domain, 0)) / 1e3
            power_w = None if mw is None else mw / 1e3
            out[domain] = Sample(energy_j=energy_j, power_w=power_w, error=error)
        return out

    def conditions(self) -> dict[str, dict[str, Any]]:
        """Heat and clocks of every live GPU now: temperature (°C), SM and memory clocks (MHz), the enforced
        power limit (W) and the clocks-event (throttle) reason bits. A value the GPU does not report is None."""
        nvml = self._nvml
        if nvml is None or not self._initialised:
            return {}
        opt = self._optional
        out = {}
        for domain, handle in self._handles.items():
            if domain in self._lost:
                continue
            out[domain] = {
                "temperature_c": opt(nvml.nvmlDeviceGetTemperature, handle,
                                     getattr(nvml, "NVML_TEMPERATURE_GPU", _TEMPERATURE_GPU)),
                "sm_clock_mhz": opt(nvml.nvmlDeviceGetClockInfo, handle, _CLOCK_SM),
                "mem_clock_mhz": opt(nvml.nvmlDeviceGetClockInfo, handle, _CLOCK_MEM),
                "power_limit_w": _milli(opt(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)),
                "clocks_event_reasons": self._clocks_event_reasons(handle),
            }
        return out

    def _clocks_event_reasons(self, handle) -> int | None:
        """The reason bits, by the current name (drivers 535 and newer) or the older "throttle" one."""
        nvml = self._nvml
        for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            call = getattr(nvml, name, None)
            if call is None:
                continue
            try:
                return int(call(handle))
            except nvml.NVMLError as exc:
                if self._is(exc, "NVML_ERROR_FUNCTION_NOT_FOUND", _FUNCTION_NOT_FOUND):
                    continue
                return None
        return None

    def close(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass

    def domain_for_device(self, uuid: str | None = None, pci_bus_id: str | None = None) -> str | None:
        if uuid:
            wanted = normalize_uuid(uuid)
            for domain, gpu in self._gpus.items():
                # a MIG instance's UUID belongs to its GPU, whose (whole) energy is what NVML measures
                if wanted in {normalize_uuid(u) for u in [gpu["uuid"], *gpu.get("mig_uuids", ())]}:
                    return domain
        if pci_bus_id:
            wanted_pci = normalize_pci(pci_bus_id)
            if wanted_pci is not None:
                for domain, gpu in self._gpus.items():
                    if normalize_pci(gpu["pci_bus_id"]) == wanted_pci:
                        return domain
        return None

    def inventory(self) -> dict[str, Any]:
        nvml = self._nvml
        if nvml is None or not self._initialised:
            # After close(): what was learnt when the meter opened, without live values.
            return {"gpus": [{**gpu, "domain": d, "lost": d in self._lost} for d, gpu in self._gpus.items()]}
        opt = self._optional
        cuda = opt(nvml.nvmlSystemGetCudaDriverVersion)
        gpus = []
        for domain, handle in self._handles.items():
            gpu = dict(self._gpus[domain])
            ecc = opt(nvml.nvmlDeviceGetEccMode, handle)
            app_sm = opt(nvml.nvmlDeviceGetApplicationsClock, handle, _CLOCK_SM)
            app_mem = opt(nvml.nvmlDeviceGetApplicationsClock, handle, _CLOCK_MEM)
            limits = opt(nvml.nvmlDeviceGetPowerManagementLimitConstraints, handle)
            memory = opt(nvml.nvmlDeviceGetMemoryInfo, handle)
            gpu.update(
                domain=domain,
                lost=domain in self._lost,
                serial=_maybe_text(opt(nvml.nvmlDeviceGetSerial, handle)),
                vbios=_maybe_text(opt(nvml.nvmlDeviceGetVbiosVersion, handle)),
                memory_total_bytes=getattr(memory, "total", None),
                ecc_mode_current=_on_off(ecc[0]) if ecc else None,
                ecc_mode_pending=_on_off(ecc[1]) if ecc else None,
                persistence_mode=_on_off(opt(nvml.nvmlDeviceGetPersistenceMode, handle)),
                performance_state=opt(nvml.nvmlDeviceGetPerformanceState, handle),
                clocks_mhz={
                    "sm": opt(nvml.nvmlDeviceGetClockInfo, handle, _CLOCK_SM),
                    "mem": opt(nvml.nvmlDeviceGetClockInfo, handle, _CLOCK_MEM),
                    "graphics": opt(nvml.nvmlDeviceGetClockInfo, handle, _CLOCK_GRAPHICS),
                    "sm_max": opt(nvml.nvmlDeviceGetMaxClockInfo, handle, _CLOCK_SM),
                    "mem_max": opt(nvml.nvmlDeviceGetMaxClockInfo, handle, _CLOCK_MEM),
                    "sm_application": app_sm,
                    "mem_application": app_mem,
                    "sm_application_default": opt(nvml.nvmlDeviceGetDefaultApplicationsClock, handle, _CLOCK_SM),
                    "mem_application_default": opt(nvml.nvmlDeviceGetDefaultApplicationsClock, handle, _CLOCK_MEM),
                },
                power_limit_w=_milli(opt(nvml.nvmlDeviceGetPowerManagementLimit, handle)),
                power_limit_enforced_w=_milli(opt(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)),
                power_limit_default_w=_milli(opt(nvml.nvmlDeviceGetPowerManagementDefaultLimit, handle)),
                power_limit_min_w=_milli(limits[0]) if limits else None,
                power_limit_max_w=_milli(limits[1]) if limits else None,
                energy_counter=self.domains[domain].energy_counter,
                power_samples=self.domains[domain].power_samples,
            )
            gpus.append(gpu)
        return {
            "driver": _maybe_text(opt(nvml.nvmlSystemGetDriverVersion)),
            "nvml_version": _maybe_text(opt(nvml.nvmlSystemGetNVMLVersion)),
            # 12040 -> "12.4": the newest CUDA the driver supports (the toolkit's version comes from the worker).
            "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None,
            "gpus": gpus,
        }


#: What a cell on a GPU in MIG mode is told about its energy figure.
MIG_WARNING = ("its energy counter and power are the whole GPU's, every MIG instance together: a cell on one "
               "instance is charged for all of them (NVML cannot measure one instance)")


def _maybe_text(value: Any) -> str | None:
    return None if value is None else text_of(value)


def _on_off(value: Any) -> str | None:
    if value is None:
        return None
    return "enabled" if int(value) else "disabled"


def _milli(value: Any) -> float | None:
    return None if value is None else value / 1e3
