"""The plugin host: built-ins, entry points, broken plugins isolated, duplicate names rejected."""

from __future__ import annotations

import json
import os
import shutil
import textwrap

import pytest

from cnnbench.adapter import FrameworkAdapter
from cnnbench.plugins import DEFAULT_PLUGINS, PluginError, PluginHost
from conftest import FAKE_PLUGIN, ROOT, make_distribution


def write_module(path, name, source):
    (path / f"{name}.py").write_text(textwrap.dedent(source))


ADAPTER_SOURCE = """
from cnnbench import hookimpl
from cnnbench.adapter import Capabilities, FrameworkAdapter

class {cls}(FrameworkAdapter):
    name = "{name}"
    package = "{name}"
    @classmethod
    def capabilities(cls, device_kind):
        return Capabilities(("fp32",), ("vendor",))
    def prepare(self, config): pass
    def build(self, spec, config): return None
    def step(self, model): pass
    def synchronize(self, model): pass

@hookimpl
def cnnbench_register_adapters():
    return {cls}
"""


@pytest.fixture
def modules(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtin_plugins_register_through_the_hook():
    host = PluginHost(entry_points=False)
    assert "cnnbench_torch" in DEFAULT_PLUGINS
    assert host.failures == []
    assert list(host.adapters()) == ["caffe", "mxnet", "tensorflow", "torch"]
    assert host.adapter_plugin("caffe") == "cnnbench_caffe"
    assert {"nvml", "rapl"} <= set(host.meters())
    assert host.origins["cnnbench_torch"] == "built-in"
    assert host.adapter_plugin("torch") == "cnnbench_torch"


def test_plugin_that_fails_to_import_is_listed_and_skipped(modules):
    write_module(modules, "broken_plugin", "raise RuntimeError('boom at import')\n")
    host = PluginHost(default_plugins=("broken_plugin", "cnnbench_torch", "no_such_plugin_module"), entry_points=False)
    assert "torch" in host.adapters()
    by_name = {f.plugin: f for f in host.failures}
    assert "RuntimeError: boom at import" in by_name["broken_plugin"].error
    assert "failed to import" in by_name["no_such_plugin_module"].error
    assert by_name["broken_plugin"].origin == "built-in"


def test_strict_mode_reraises_with_the_plugin_name(modules, monkeypatch):
    write_module(modules, "broken_plugin2", "raise RuntimeError('boom')\n")
    monkeypatch.setenv("CNNBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'broken_plugin2'.*boom"):
        PluginHost(default_plugins=("broken_plugin2",), entry_points=False)


def test_misspelt_hook_is_caught_per_plugin(modules):
    write_module(modules, "typo_plugin", """
        from cnnbench import hookimpl
        @hookimpl
        def cnnbench_register_adapter():
            return []
    """)
    host = PluginHost(default_plugins=("typo_plugin", "cnnbench_torch"), entry_points=False)
    assert [f.plugin for f in host.failures] == ["typo_plugin"]
    assert "cnnbench_register_adapter" in host.failures[0].error
    assert "torch" in host.adapters()


def test_duplicate_adapter_names_are_rejected_naming_both(modules):
    write_module(modules, "dup_one", ADAPTER_SOURCE.format(cls="FirstDup", name="dup"))
    write_module(modules, "dup_two", ADAPTER_SOURCE.format(cls="SecondDup", name="dup"))
    host = PluginHost(default_plugins=("dup_one", "dup_two"), entry_points=False)
    adapters = host.adapters()
    assert adapters["dup"].__name__ == "FirstDup"
    (failure,) = host.failures
    assert failure.plugin == "dup_two"
    assert "dup_one.FirstDup" in failure.error and "dup_two.SecondDup" in failure.error
    assert "registered twice" in failure.error


def test_invalid_adapter_classes_are_rejected(modules):
    write_module(modules, "bad_adapters", """
        from cnnbench import hookimpl
        from cnnbench.adapter import FrameworkAdapter

        class NotAnAdapter:
            name = "nope"

        class Abstract(FrameworkAdapter):
            name = "abstract"
            package = "abstract"

        class BadName(FrameworkAdapter):
            name = "Bad Name"
            package = "x"

        @hookimpl
        def cnnbench_register_adapters():
            return [NotAnAdapter, Abstract, BadName]
    """)
    host = PluginHost(default_plugins=("bad_adapters",), entry_points=False)
    assert host.adapters() == {}
    errors = " | ".join(f.error for f in host.failures)
    assert "not a FrameworkAdapter subclass" in errors
    assert "does not implement: build, capabilities, prepare, step, synchronize" in errors
    assert "no valid 'name'" in errors


def test_availability_check_that_raises_makes_the_framework_unavailable(modules):
    write_module(modules, "odd_availability", ADAPTER_SOURCE.format(cls="Odd", name="odd") + """
def _boom(cls):
    raise OSError("cannot stat the driver")
Odd.availability = classmethod(_boom)
""")
    host = PluginHost(default_plugins=("odd_availability",), entry_points=False)
    availability = host.availability("odd")
    assert not availability.available
    assert "OSError: cannot stat the driver" in availability.reason


def test_dotted_module_with_a_missing_parent_is_unavailable(modules):
    write_module(modules, "dotted_plugin", ADAPTER_SOURCE.format(cls="Dotted", name="dotted") + """
Dotted.module = "no_such_parent_pkg.sub"
""")
    host = PluginHost(default_plugins=("dotted_plugin",), entry_points=False)
    availability = host.availability("dotted")
    assert not availability.available and "no_such_parent_pkg.sub" in availability.reason


def test_hook_that_raises_is_isolated(modules):
    write_module(modules, "raising_hook", """
        from cnnbench import hookimpl
        @hookimpl
        def cnnbench_register_adapters():
            raise ValueError("cannot register today")
    """)
    host = PluginHost(default_plugins=("raising_hook", "cnnbench_torch"), entry_points=False)
    assert "torch" in host.adapters()
    assert host.adapter_plugin("torch") == "cnnbench_torch"
    assert host.adapter_plugin("torch") == "cnnbench_torch"
    # asked several times, the failure is recorded once
    assert [f.error for f in host.failures] == ["cnnbench_register_adapters() raised ValueError: cannot register today"]


def test_third_party_distribution_found_through_its_entry_point(fake_site):
    host = PluginHost()
    adapters = host.adapters()
    assert {"torch", "fake", "fake-missing"} <= set(adapters)
    assert issubclass(adapters["fake"], FrameworkAdapter)
    assert host.origins["fake"] == "entry point of cnnbench-fake"


def test_unknown_framework_lists_valid_choices():
    from cnnbench.config import UsageError

    host = PluginHost(entry_points=False)
    with pytest.raises(UsageError, match=r"unknown framework 'nosuch'; valid choices: caffe, mxnet, tensorflow, torch"):
        host.adapter("nosuch")


def test_cli_survives_a_broken_third_party_plugin(tmp_path, cli):
    site = make_distribution(tmp_path / "site", "cnnbench-broken", {"broken": "cnnbench_broken_mod"})
    (site / "cnnbench_broken_mod.py").write_text("import this_module_does_not_exist\n")
    env = {"PYTHONPATH": str(site)}
    assert cli("--help", env=env).returncode == 0
    listed = cli("list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    # every framework is still there: the built-ins and any third-party adapter installed here (CI
    # installs the example plugin docs/examples/cnnbench-jax)
    installed = list(PluginHost().adapters())
    assert {"caffe", "mxnet", "tensorflow", "torch"} <= set(installed)
    assert [f["name"] for f in data["frameworks"]] == installed
    (error,) = data["plugin_errors"]
    assert error["plugin"] == "broken" and error["origin"] == "entry point of cnnbench-broken"
    assert "No module named 'this_module_does_not_exist'" in error["error"]
    text = cli("list", env=env)
    assert "broken (entry point of cnnbench-broken): failed to import" in text.stdout
    strict = cli("list", env={**env, "CNNBENCH_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2
    assert strict.stderr.strip().count("\n") == 0 and "plugin 'broken'" in strict.stderr


def test_fake_plugin_fixture_is_a_real_package():
    assert (FAKE_PLUGIN / "cnnbench_fake" / "__init__.py").is_file()


def test_every_builtin_adapter_meets_the_host_side_contract():
    """cnnbench.testing.check_host_side, as plugin authors run it: class attributes; availability() and
    capabilities() answer in a fresh interpreter, without importing the framework (MXNet's too, which is
    not even installed here); the name finds the same class there."""
    from cnnbench.testing import check_host_side

    host = PluginHost(entry_points=False)
    for name, cls in host.adapters().items():
        side = check_host_side(cls)
        assert side.registered_as == f"{cls.__module__}.{cls.__qualname__}", name
        assert side.capabilities["cpu"].precisions and side.capabilities["cpu"].kernels, name
        assert side.availability == host.availability(name), name


def test_a_plugin_registers_a_network(tmp_path, cli):
    """cnnbench_register_networks: the spec file a plugin returns is a network by its file's stem."""
    package = tmp_path / "src" / "cnnbench_tinynets"
    package.mkdir(parents=True)
    shutil.copy(ROOT / "networks" / "lenet.toml", package / "lenet_plugin.toml")
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        "from cnnbench import hookimpl\n\n"
        "@hookimpl\n"
        "def cnnbench_register_networks():\n"
        "    here = Path(__file__).parent\n"
        "    return [here / 'lenet_plugin.toml', here / 'missing.toml']\n"
    )
    site = make_distribution(tmp_path / "site", "cnnbench-tinynets", {"tinynets": "cnnbench_tinynets"},
                             {"cnnbench_tinynets": package})
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = json.loads(cli("list", "--json", env=env).stdout)
    assert "lenet_plugin" in listed["networks"] and "lenet" in listed["networks"]
    [failure] = listed["plugin_errors"]
    assert failure["plugin"] == "tinynets" and "missing.toml', which is not a file" in failure["error"]
    table = cli("networks", "lenet_plugin", env=env)
    assert table.returncode == 0, table.stderr
    assert "conv1" in table.stdout
