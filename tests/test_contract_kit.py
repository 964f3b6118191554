"""cnnbench.testing as plugin authors use it: check_adapter passes the built-in adapters and names what is
broken in broken ones, registered() reaches workers and command lines, the tiny network, the fake meter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import cnnbench.testing
from cnnbench.adapter import Unsupported
from cnnbench.plugins import PluginError, PluginHost
from cnnbench.testing import (
    TINY_NETWORK, ContractWarning, check_adapter, check_host_side, registered, tiny_network)

# Adapters made to break one contract point each. The Caffe-style engine underneath needs only NumPy, so
# their workers start in a fraction of a second.
BROKEN = '''
from cnnbench import hookimpl
from cnnbench.adapter import Capabilities
from cnnbench_caffe.adapter import CaffeAdapter


class Crashy(CaffeAdapter):
    """Verify doubles the gradients; half precision raises RuntimeError instead of Unsupported."""
    name = "caffe-crashy"

    def prepare(self, config):
        if config.precision in ("fp16", "bf16"):
            raise RuntimeError("no half precision here")
        super().prepare(config)

    def verify(self, spec, config, weights, data, labels):
        out = super().verify(spec, config, weights, data, labels)
        out.grads = {layer: {kind: 2 * g for kind, g in kinds.items()} for layer, kinds in out.grads.items()}
        return out


class Lenient(CaffeAdapter):
    """Runs every precision in fp32, though its capabilities say fp32 only."""
    name = "caffe-lenient"

    def _dtype(self, config):
        import numpy
        return numpy.float32


class Refusing(CaffeAdapter):
    """Declares fp32 but refuses it on this machine, as bf16 on a CPU without the instructions is."""
    name = "caffe-refusing"

    def prepare(self, config):
        from cnnbench.adapter import Unsupported
        raise Unsupported("this machine lacks the instructions")


class Unregistered(CaffeAdapter):
    name = "caffe-unregistered"


class AsksTheFramework(CaffeAdapter):
    name = "caffe-asks"
    package = "kit_fakefw"

    @classmethod
    def availability(cls):
        import kit_fakefw  # the mistake under test
        return super().availability()


@hookimpl
def cnnbench_register_adapters():
    return [Crashy, Lenient, Refusing, AsksTheFramework]
'''

EAGER = '''
import kit_fakefw  # the mistake under test: the framework at module level
from cnnbench import hookimpl
from cnnbench_caffe.adapter import CaffeAdapter


class Eager(CaffeAdapter):
    name = "caffe-eager"
    package = "kit_fakefw"


@hookimpl
def cnnbench_register_adapters():
    return Eager
'''


@pytest.fixture
def broken(tmp_path, monkeypatch):
    """The broken adapters' module, importable here and (through registered()) in workers."""
    (tmp_path / "kit_broken.py").write_text(BROKEN)
    (tmp_path / "kit_eager.py").write_text(EAGER)
    (tmp_path / "kit_fakefw.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import kit_broken

    with registered(kit_broken) as registration:
        yield kit_broken, registration


# -- the built-in adapters pass ------------------------------------------------------------------------


def test_the_caffe_style_engine_passes_the_contract():
    from cnnbench_caffe.adapter import CaffeAdapter

    report = check_adapter(CaffeAdapter)
    assert report.kernels == "native" and report.network == "tiny"
    assert report.verify.status == "ok"
    # everything it leaves out is refused in the worker, with its reason; there is no GPU here or no CuPy
    assert {label: status for label, (status, _) in report.unsupported.items()} == {
        "precision=fp16": "unsupported", "precision=bf16": "unsupported", "precision=tf32": "unsupported",
        "kernels=vendor": "unsupported", "device=cuda": report.unsupported["device=cuda"][0]}
    assert "every contract point holds" in str(report)


def test_tensorflow_passes_the_contract():
    pytest.importorskip("tensorflow")
    from cnnbench_tensorflow.adapter import TensorFlowAdapter

    report = check_adapter(TensorFlowAdapter)
    assert report.verify.worst[1] < 1e-5
    assert report.unsupported["precision=tf32"][0] == "unsupported"


# -- broken adapters fail, naming the point -------------------------------------------------------------


def test_a_wrong_gradient_and_a_crash_on_an_unsupported_value_are_both_named(broken):
    module, _ = broken
    with pytest.raises(AssertionError) as failure:
        check_adapter(module.Crashy)
    text = str(failure.value)
    assert "check_adapter(caffe-crashy): 2 contract points failed" in text
    assert "verify(): the float64 reference's loss, logits and gradients" in text and "differs by" in text
    assert "axis values it cannot run raise Unsupported" in text
    assert "precision=fp16: the worker ended with status error" in text and "no half precision here" in text
    assert "raise Unsupported(reason) instead" in text
    # the step itself was fine
    assert "prepare(), build(), step()" not in text


def test_an_undeclared_value_that_runs_anyway_is_a_warning(broken):
    module, _ = broken
    with pytest.warns(ContractWarning) as record:
        report = check_adapter(module.Lenient)
    assert sorted(str(w.message).split(" is not")[0] for w in record if w.category is ContractWarning) == [
        "caffe-lenient: precision=bf16", "caffe-lenient: precision=fp16", "caffe-lenient: precision=tf32"]
    assert report.unsupported["precision=bf16"] == ("ok", None)
    assert len(report.notes) == 3


def test_a_declared_configuration_this_machine_cannot_run_raises_unsupported(broken):
    module, _ = broken
    with pytest.raises(Unsupported, match="caffe-refusing cannot run .* this machine lacks the instructions"):
        check_adapter(module.Refusing)


def test_importing_the_framework_on_the_host_side_is_caught(broken, tmp_path):
    module, _ = broken
    with pytest.raises(AssertionError, match=r"availability\(\) imported kit_fakefw"):
        check_host_side(module.AsksTheFramework)
    import kit_eager

    with registered(kit_eager):
        with pytest.raises(AssertionError, match="importing kit_eager imported kit_fakefw"):
            check_adapter(kit_eager.Eager)


def test_an_adapter_workers_cannot_find_is_caught_with_the_fix(broken):
    module, _ = broken
    with pytest.raises(AssertionError, match=r"no adapter named 'caffe-unregistered'.*registered\("):
        check_adapter(module.Unregistered)


def test_missing_class_attributes_are_caught_before_anything_runs(broken):
    module, _ = broken

    class NoHint(module.Crashy):
        name = "caffe-nohint"
        install_hint = ""

    with pytest.raises(AssertionError, match=r"class attributes .*no install_hint"):
        check_adapter(NoHint)


# -- registered() --------------------------------------------------------------------------------------


def test_registered_reaches_command_lines_and_is_gone_after(broken, cli):
    _, registration = broken
    assert registration.name == "kit_broken"
    proc = cli("list", "--json")
    frameworks = {f["name"]: f for f in json.loads(proc.stdout)["frameworks"]}
    assert frameworks["caffe-crashy"]["plugin"] == "kit_broken"
    assert "caffe-unregistered" not in frameworks
    path_before, env_before = list(sys.path), os.environ.get("PYTHONPATH")
    import kit_eager

    with registered(kit_eager.Eager) as inner:
        assert inner.name == "caffe-eager-adapter"
        assert "caffe-eager" in PluginHost().adapters()
    assert (sys.path, os.environ.get("PYTHONPATH")) == (path_before, env_before)
    assert "caffe-eager" not in PluginHost().adapters()


def test_registered_rejects_a_plugin_that_does_not_load(broken):
    module, _ = broken
    # the same adapters again: every name is taken
    with pytest.raises(PluginError, match="already registered under a different name"):
        with registered(module, name="kit_broken_again"):
            pass
    with pytest.raises(TypeError, match="module-level name"):
        with registered(object()):
            pass


def test_the_fake_meter_gives_known_joules_to_a_real_run(tmp_path, cli):
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY_NETWORK)
    from cnnbench.testing.proc import FakeProc

    # a quiet machine (a fake /proc) so that the idle baseline is trusted whatever else this one runs
    with registered(cnnbench.testing), FakeProc(cpus=4, busy_cpus=0.05, load1=0.1) as quiet:
        listing = json.loads(cli("list", "--json").stdout)
        assert "fake" in [m["name"] for m in listing["meters"]]
        proc = cli("compare", "--frameworks", "caffe", "--kernels", "native", "--network", str(spec_file),
                   "--batch-size", "2", "--meters", "fake", "--idle", "0.2", "--json",
                   "--warmup", "1", "--min-time", "0.2", "--repeats", "2",
                   env={"CNNBENCH_PROC_ROOT": str(quiet.root)})
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["status"] == "ok", result["reason"]
    package, dram = result["energy"]["cpu_package0"], result["energy"]["dram0"]
    # the meter's default watts, to the sampler's timestamps at the window edges (a sample is stamped
    # at the middle of its read, which a busy machine can stretch by milliseconds)
    assert package["power_w"] == pytest.approx(40.0, rel=0.05) and dram["power_w"] == pytest.approx(6.0, rel=0.05)
    windows = result["windows"]
    images = sum(w["iterations"] for w in windows) * 2
    seconds = sum(w["end"] - w["start"] for w in windows)
    assert package["energy_per_image_j"] == pytest.approx(40.0 * seconds / images, rel=0.05)
    # constant power: nothing above idle
    assert abs(package["dynamic_energy_per_image_j"]) < 1e-3 * package["energy_per_image_j"]


# -- the package -----------------------------------------------------------------------------------------


def test_every_name_of_the_old_module_is_still_here_and_importing_it_is_light():
    for name in ("INTEL_RANGE_UJ", "AMD_RANGE_UJ", "FakeZone", "PowercapTree", "CounterDriver", "unreadable",
                 "FakeGpu", "fake_pynvml", "FakeMeter", "cnnbench_register_meters"):
        assert hasattr(cnnbench.testing, name), name
    code = "import sys, cnnbench.testing; assert 'numpy' not in sys.modules, 'numpy'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_tiny_network_has_what_layout_bugs_need():
    spec = tiny_network()
    assert [layer.type for layer in spec.layers] == ["conv", "relu", "pool", "fc", "softmax_loss"]
    conv, fc = spec.layer("conv1"), spec.layer("fc1")
    _, height, width = spec.input_shape
    assert height != width and conv.params["kernel"][0] != conv.params["kernel"][1]
    assert conv.input_shapes[0][0] > 1 and conv.output_shape[0] > 1
    assert len(fc.input_shapes[0]) == 3 and min(fc.input_shapes[0]) > 1
    assert spec.training_flops < 10**6
    assert TINY_NETWORK.startswith('name = "tiny"')
