"""The nvml meter against a fake pynvml (cnnbench.testing.fake_pynvml) put in sys.modules: counters at
known watts, NOT_SUPPORTED, a lost GPU, UUID and PCI lookups, NVML kept initialised, the inventory."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from cnnbench.meters import MeterSession
from cnnbench.meters.nvml import normalize_pci, normalize_uuid
from cnnbench.plugins import PluginHost
from cnnbench.testing import FakeGpu, fake_pynvml

#: The fake counters are exact; what is left is the jitter of the sampler's timestamps on a busy machine.
TOLERANCE = 0.03
H200 = dict(name="NVIDIA H200", uuid="GPU-8a3f6c2e-1b4d-4e5f-9a7b-0c1d2e3f4a5b", pci_bus_id="00000000:17:00.0")
A100 = dict(name="NVIDIA A100-SXM4-80GB", uuid="GPU-11111111-2222-3333-4444-555555555555",
            pci_bus_id="00000000:CA:00.0")


@pytest.fixture
def host():
    return PluginHost(default_plugins=("cnnbench.meters.builtin",), entry_points=False)


@pytest.fixture
def nvml(monkeypatch):
    def install(*gpus: FakeGpu, **kwargs):
        module = fake_pynvml(*gpus, **kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", module)
        return module

    return install


def measure(session: MeterSession, seconds: float = 0.25, settle: float = 0.06):
    time.sleep(settle)
    start = time.monotonic()
    time.sleep(seconds)
    end = time.monotonic()
    return start, end, session.energy(start, end)


def test_energy_counter_at_known_watts_and_the_cross_check(nvml, host):
    gpus = [FakeGpu(**H200, watts=310.0), FakeGpu(**A100, watts=95.0)]
    nvml(*gpus)
    with MeterSession.open("auto", host) as session:
        assert set(session.domains) == {"gpu0", "gpu1"}
        assert session.domains["gpu0"].device == H200["uuid"]
        start, end, readings = measure(session)
    for gpu, domain in zip(gpus, ("gpu0", "gpu1")):
        reading = readings[domain]
        assert reading.ok and reading.method == "counter" and reading.warnings == ()
        assert reading.joules == pytest.approx(gpu.joules(start, end), rel=TOLERANCE)
        assert reading.power_w == pytest.approx(gpu.watts, rel=TOLERANCE)


def test_not_supported_counter_falls_back_to_power_integration(nvml, host):
    nvml(FakeGpu(**H200, watts=250.0, energy_counter=False))
    with MeterSession.open(["nvml"], host) as session:
        start, end, readings = measure(session)
    reading = readings["gpu0"]
    assert reading.method == "integrated" and reading.ok
    assert reading.joules == pytest.approx(250.0 * (end - start), rel=TOLERANCE)
    assert "method 'integrated'" in session.notes[0]


def test_a_gpu_with_neither_counter_nor_power_is_unavailable_not_zero(nvml, host):
    nvml(FakeGpu(**H200, energy_counter=False, power=False), FakeGpu(**A100))
    session = MeterSession.open(["nvml"], host)
    assert list(session.domains) == ["gpu1"]
    assert "reports neither an energy counter nor power (NOT_SUPPORTED)" in session.unavailable["nvml:gpu0"]
    session.close()


def test_counter_and_power_disagreeing_over_5_percent_is_a_warning(nvml, host):
    nvml(FakeGpu(**H200, watts=300.0, power_watts=330.0))
    with MeterSession.open(["nvml"], host) as session:
        _, _, readings = measure(session)
    reading = readings["gpu0"]
    assert reading.ok and reading.method == "counter" and reading.power_w == pytest.approx(300.0, rel=TOLERANCE)
    assert any(w.startswith("counter and power integration disagree by 10.0 %") for w in reading.warnings)


def test_windows_shorter_than_the_update_period_are_flagged(nvml, host):
    nvml(FakeGpu(**H200, update_period_s=0.1))
    with MeterSession.open(["nvml"], host, period=0.02) as session:
        time.sleep(0.05)
        start = time.monotonic()
        time.sleep(0.04)
        reading = session.energy(start, time.monotonic())["gpu0"]
    assert any("shorter than the counter's update period" in w for w in reading.warnings)


def test_a_lost_gpu_invalidates_the_windows_that_overlap_it(nvml, host):
    gpus = [FakeGpu(**H200, watts=300.0), FakeGpu(**A100, watts=90.0)]
    nvml(*gpus)
    with MeterSession.open(["nvml"], host) as session:
        before_start, before_end, before = measure(session, 0.15, 0.05)
        gpus[0].lose()
        _, _, after = measure(session, 0.15, 0.0)
    assert before["gpu0"].ok and before["gpu0"].joules == pytest.approx(300.0 * (before_end - before_start), rel=TOLERANCE)
    assert after["gpu0"].joules is None and "NVML_ERROR_GPU_IS_LOST" in after["gpu0"].error
    assert after["gpu1"].ok  # the other GPU is unaffected
    assert session.inventory()["nvml"]["gpus"][0]["lost"] is True


def test_the_workers_device_is_found_by_uuid_or_pci_bus_id_never_by_index(nvml, host):
    # NVML orders by PCI bus; CUDA's default order may differ, and CUDA_VISIBLE_DEVICES renumbers.
    nvml(FakeGpu(**H200), FakeGpu(**A100))
    session = MeterSession.open(["nvml"], host)
    assert session.gpu_domain(uuid="11111111-2222-3333-4444-555555555555") == "gpu1"  # torch's str(uuid)
    assert session.gpu_domain(uuid="GPU-8A3F6C2E-1B4D-4E5F-9A7B-0C1D2E3F4A5B") == "gpu0"
    assert session.gpu_domain(pci_bus_id="0000:ca:00.0") == "gpu1"  # CUDA's 4-digit domain
    assert session.gpu_domain(pci_bus_id="CA:00.0") == "gpu1"
    assert session.gpu_domain(uuid="GPU-ffffffff-0000-0000-0000-000000000000") is None
    assert session.gpu_domain() is None
    session.close()


def test_normalisation():
    assert normalize_uuid(b"GPU-AbC") == "abc"
    assert normalize_pci("00000000:17:00.0") == normalize_pci("0000:17:00.0") == normalize_pci("17:00") == (0, 0x17, 0, 0)
    assert normalize_pci("not a bus id") is None


def test_nvml_is_initialised_once_and_kept_across_runs(nvml, host):
    module = nvml(FakeGpu(**H200))
    session = MeterSession.open(["nvml"], host, period=0.02)
    assert module.init_calls == 1
    for _ in range(3):  # three cells of a grid
        session.start()
        measure(session, 0.03, 0.0)
        session.stop()
    assert module.init_calls == 1 and module.shutdown_calls == 0
    session.close()
    session.close()
    assert module.shutdown_calls == 1


def test_probe_pairs_init_and_shutdown(nvml, host):
    module = nvml(FakeGpu(**H200))
    probe = {p["name"]: p for p in MeterSession.probe_all(host)}["nvml"]
    assert probe["readable"] and probe["domains"] == ["gpu0"] and probe["reason"] is None
    assert module.init_calls == module.shutdown_calls == 1


def test_not_installed_and_no_driver(nvml, host, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    session = MeterSession.open(["nvml"], host)
    assert session.unavailable["nvml"] == (
        "nvidia-ml-py is not installed (its module is pynvml); fix: pip install 'cnnbench[nvml]'  "
        "(the nvidia-ml-py distribution; not the deprecated 'pynvml' one)"
    )
    nvml(init_error=12)
    probe = {p["name"]: p for p in MeterSession.probe_all(host)}["nvml"]
    assert not probe["readable"] and probe["reason"].startswith("no NVIDIA driver here")
    nvml()
    assert "NVML sees no GPU" in MeterSession.open(["nvml"], host).unavailable["nvml"]


def test_inventory_has_what_a_reader_needs_to_reproduce(nvml, host):
    nvml(FakeGpu(**H200, ecc=(1, 0), power_limit_w=600.0))
    session = MeterSession.open(["nvml"], host)
    inventory = session.inventory()["nvml"]
    session.close()
    assert inventory["driver"] == "550.54.15" and inventory["cuda_driver_version"] == "12.4"
    gpu = inventory["gpus"][0]
    assert gpu["name"] == "NVIDIA H200" and gpu["uuid"] == H200["uuid"] and gpu["pci_bus_id"] == "00000000:17:00.0"
    assert (gpu["ecc_mode_current"], gpu["ecc_mode_pending"]) == ("enabled", "disabled")
    assert gpu["clocks_mhz"]["sm"] == 1980 and gpu["clocks_mhz"]["mem_max"] == 3201
    assert gpu["clocks_mhz"]["sm_application"] == 1980
    assert gpu["power_limit_w"] == 600.0 and gpu["energy_counter"] is True and gpu["domain"] == "gpu0"


def test_loading_the_meters_imports_no_vendor_library():
    code = (
        "import sys\n"
        "from cnnbench.plugins import PluginHost\n"
        "host = PluginHost(default_plugins=('cnnbench.meters.builtin',), entry_points=False)\n"
        "assert sorted(host.meters()) == ['nvml', 'pyrapl', 'rapl'], host.failures\n"
        "import cnnbench.meters, cnnbench.cli\n"
        "assert 'pynvml' not in sys.modules and 'pyRAPL' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- power sources, the per-window cross-check, and what must not fool the meter ------------------------


def test_the_instantaneous_power_field_is_preferred_to_the_averaged_power_usage(nvml, host):
    # nvmlDeviceGetPowerUsage lags at 200 W (a one-second average); the field has the 300 W drawn now.
    nvml(FakeGpu(**H200, watts=300.0, usage_watts=200.0))
    with MeterSession.open(["nvml"], host) as session:
        start, end, readings = measure(session)
        inventory = session.inventory()["nvml"]["gpus"][0]
    reading = readings["gpu0"]
    assert reading.integrated_j == pytest.approx(300.0 * (end - start), rel=TOLERANCE)
    assert reading.warnings == ()
    assert inventory["power_source"] == "NVML_FI_DEV_POWER_INSTANT" and inventory["power_average_s"] == 0.0
    assert session.domains["gpu0"].power_average_s == 0.0


@pytest.mark.parametrize("gpu, averaged", [
    (dict(H200, architecture=9), True),    # Hopper: a one-second average
    (dict(A100, architecture=7), False),   # GA100: instantaneous, the documented exception
    (dict(name="NVIDIA A10", uuid="GPU-a10", pci_bus_id="00000000:3B:00.0", architecture=7), True),
    (dict(name="Tesla V100-SXM2-16GB", uuid="GPU-v100", pci_bus_id="00000000:3C:00.0", architecture=5), False),
])
def test_without_the_field_power_usage_is_used_and_said_to_be_averaged(nvml, host, gpu, averaged):
    nvml(FakeGpu(**gpu, instant_power=False, energy_counter=False, watts=120.0))
    with MeterSession.open(["nvml"], host) as session:
        start, end, readings = measure(session, 0.25)
    reading = readings["gpu0"]
    assert reading.method == "integrated" and reading.joules == pytest.approx(120.0 * (end - start), rel=TOLERANCE)
    assert session.domains["gpu0"].power_average_s == (1.0 if averaged else 0.0)
    note = next(n for n in session.notes if "nvmlDeviceGetPowerUsage" in n)
    flagged = [w for w in reading.warnings if "shorter than the power reading's averaging period" in w]
    if averaged:
        assert "averaged over 1 s" in note
        # the window's length is measured (a loaded machine stretches it): match the text around it
        assert len(flagged) == 1 and re.fullmatch(
            r"window shorter than the power reading's averaging period \(0\.\d+ s < 1 s\): its power integral "
            r"cannot follow the window", flagged[0]), flagged
    else:
        assert "instantaneous on this GPU" in note and not flagged


def _result(windows, device="cuda:0"):
    from cnnbench.results.record import Result

    result = Result(framework="torch", network="alexnet", batch_size=8, device=device, precision="fp32",
                    kernels="vendor", threads=None, status="ok")
    result.windows = [{"start": a, "end": b, "iterations": 4} for a, b in windows]
    return result


def test_counter_and_integral_are_reported_side_by_side_for_every_window(nvml, host):
    from cnnbench.meters.energy import attach_energy
    from cnnbench.meters.gpucheck import attach_gpu_checks

    nvml(FakeGpu(**H200, watts=300.0, power_watts=330.0))
    with MeterSession.open(["nvml"], host) as session:
        first = measure(session, 0.2)[:2]
        second = measure(session, 0.2, 0.0)[:2]
        result = _result([first, second])
        attach_energy(result, session, "gpu0")
        attach_gpu_checks(result, session, "gpu0")
    checks = result.energy["gpu0"]["windows"]
    assert [c["window"] for c in checks] == [1, 2]
    for (start, end), check in zip([first, second], checks):
        assert check["counter_j"] == pytest.approx(300.0 * (end - start), rel=TOLERANCE)
        assert check["integrated_j"] == pytest.approx(330.0 * (end - start), rel=TOLERANCE)
        assert check["disagreement"] == pytest.approx(0.10, abs=0.02)
    assert result.energy["gpu0"]["cross_check_tolerance"] == 0.05
    assert any(w.startswith("gpu0: counter and power integration disagree by 10.0 %") for w in result.warnings)


def test_a_counter_that_goes_backwards_is_an_error_for_that_window_never_a_figure(nvml, host):
    gpu = FakeGpu(**H200, watts=250.0)
    nvml(gpu)
    with MeterSession.open(["nvml"], host, period=0.02) as session:
        time.sleep(0.05)
        start = time.monotonic()
        time.sleep(0.1)
        gpu.restart_counter()  # driver reload: the counter starts again from 0
        time.sleep(0.1)
        across = session.energy(start, time.monotonic())["gpu0"]
        after_start, after_end, after = measure(session, 0.15, 0.05)
    assert across.joules is None and "energy counter went backwards" in across.error
    assert after["gpu0"].ok and after["gpu0"].joules == pytest.approx(250.0 * (after_end - after_start), rel=TOLERANCE)


def test_a_gpu_lost_mid_run_makes_the_cell_an_error_with_the_reason(nvml, host):
    from cnnbench.meters.energy import attach_energy

    gpu = FakeGpu(**H200)
    nvml(gpu)
    with MeterSession.open(["nvml"], host) as session:
        first = measure(session, 0.1)[:2]
        gpu.lose()
        second = measure(session, 0.1, 0.0)[:2]
        result = _result([first, second])
        attach_energy(result, session, "gpu0")
    assert result.status == "error"
    assert "NVML_ERROR_GPU_IS_LOST" in result.reason and result.energy["gpu0"]["energy_per_image_j"] is None


def test_mig_mode_keeps_the_whole_gpus_figure_and_says_so(nvml, host):
    from cnnbench.meters.energy import attach_energy
    from cnnbench.meters.gpucheck import attach_gpu_checks

    mig_uuid = "MIG-4f1e2d3c-0000-1111-2222-333344445555"
    nvml(FakeGpu(**H200, mig_mode=(1, 1), mig_uuids=(mig_uuid,)))
    with MeterSession.open(["nvml"], host) as session:
        # a worker on a MIG instance reports the instance's UUID: it is the GPU's domain all the same
        assert session.gpu_domain(uuid=mig_uuid) == "gpu0"
        result = _result([measure(session, 0.1)[:2]])
        result.provenance["gpu"] = session.inventory()["nvml"]["gpus"][0]
        attach_energy(result, session, "gpu0")
        attach_gpu_checks(result, session, "gpu0")
    assert result.provenance["gpu"]["mig_mode"] == "enabled"
    assert any("is in MIG mode" in n for n in session.notes)
    assert result.energy["gpu0"]["energy_per_image_j"] > 0 and result.energy["gpu0"]["mig"] is True
    assert ("gpu0: MIG mode: its energy counter and power are the whole GPU's, every MIG instance together: a "
            "cell on one instance is charged for all of them (NVML cannot measure one instance)") in result.warnings


def test_no_mig_no_mig_warning(nvml, host):
    from cnnbench.meters.energy import attach_energy
    from cnnbench.meters.gpucheck import attach_gpu_checks

    nvml(FakeGpu(**H200, mig_mode=(0, 0)))
    with MeterSession.open(["nvml"], host) as session:
        result = _result([measure(session, 0.1)[:2]])
        result.provenance["gpu"] = session.inventory()["nvml"]["gpus"][0]
        attach_energy(result, session, "gpu0")
        attach_gpu_checks(result, session, "gpu0")
    assert result.provenance["gpu"]["mig_mode"] == "disabled" and result.warnings == []


@pytest.mark.parametrize("installed, expected", [
    ({"pynvml": "11.5.0"}, "nvml: the deprecated 'pynvml' distribution 11.5.0 is installed instead of NVIDIA's "
                           "nvidia-ml-py; fix: pip uninstall pynvml && pip install nvidia-ml-py"),
    ({"pynvml": "11.5.0", "nvidia-ml-py": "12.560.30"},
     "nvml: the deprecated 'pynvml' distribution 11.5.0 is installed beside nvidia-ml-py 12.560.30: the two write "
     "the same files; fix: pip uninstall pynvml && pip install --force-reinstall nvidia-ml-py"),
    ({"nvidia-ml-py": "12.560.30"}, None),
])
def test_the_deprecated_pynvml_distribution_is_named_with_the_fix(nvml, host, monkeypatch, installed, expected):
    import cnnbench.meters.nvml as nvml_meter

    monkeypatch.setattr(nvml_meter, "_installed_version", installed.get)
    nvml(FakeGpu(**H200))
    session = MeterSession.open(["nvml"], host)
    session.close()
    found = [n for n in session.notes if "pynvml" in n]
    assert found == ([expected] if expected else [])
    probe = {p["name"]: p for p in MeterSession.probe_all(host)}["nvml"]
    assert probe["notes"] == found


def test_a_deprecated_pynvml_that_does_not_import_is_named_not_called_missing(host, monkeypatch):
    import cnnbench.meters.nvml as nvml_meter

    monkeypatch.setattr(nvml_meter, "_installed_version", {"pynvml": "8.0.4"}.get)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    session = MeterSession.open(["nvml"], host)
    assert session.unavailable["nvml"] == (
        "pynvml cannot be imported: the deprecated 'pynvml' distribution 8.0.4 is installed instead of NVIDIA's "
        "nvidia-ml-py; fix: pip uninstall pynvml && pip install nvidia-ml-py"
    )
