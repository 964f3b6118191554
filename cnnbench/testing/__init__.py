"""Test helpers for people who write cnnbench plugins — and for cnnbench's own tests, which use the same.

Quickstart for an adapter plugin
--------------------------------

A plugin distribution declares an entry point in the ``cnnbench`` group, and its module returns adapter
classes from the registration hook (see ``docs/examples/cnnbench-jax`` for a complete one)::

    # pyproject.toml
    [project.entry-points.cnnbench]
    myfw = "cnnbench_myfw"

    # cnnbench_myfw/__init__.py
    from cnnbench import hookimpl

    @hookimpl
    def cnnbench_register_adapters():
        from cnnbench_myfw.adapter import MyAdapter     # the framework is imported inside its methods
        return [MyAdapter]

One test checks the whole adapter contract, the way ``cnnbench compare`` and ``cnnbench verify`` will run
the adapter (a fresh interpreter for the host-side questions, a worker process per run)::

    # tests/test_myfw.py
    import pytest
    from cnnbench.testing import check_adapter

    pytest.importorskip("myfw")

    def test_contract():
        from cnnbench_myfw.adapter import MyAdapter
        report = check_adapter(MyAdapter)                  # the tiny network, batch 2, fp32, on the CPU
        print(report)

    def test_contract_bf16_alexnet():
        from cnnbench_myfw.adapter import MyAdapter
        check_adapter(MyAdapter, network="alexnet", precision="bf16", batch_size=1)

:func:`check_adapter` fails with an AssertionError that names each broken contract point:

- ``name``, ``package`` and ``install_hint`` are set, and every abstract method is implemented;
- the adapter is registered under its name where cnnbench and its workers look (the entry points);
- ``availability()`` and ``capabilities()`` answer, with valid axis values, without importing the
  framework (checked in a fresh interpreter, through ``sys.modules``);
- ``prepare``, ``build``, ``step`` and ``synchronize`` run in a real worker (warm-up, two timed windows);
  ``peak_memory`` returns ``(int or None, str)``;
- ``verify`` gets the float64 reference's loss, logits and gradients for the same weights and data, within
  the tolerance of the precision (:data:`cnnbench.execution.verify.TOLERANCES`);
- every precision and kernel family the adapter leaves out, and ``cuda`` on a machine without a GPU, ends
  as ``unsupported`` in the worker — an ``Unsupported`` exception, never another one.

The plugin must be installed (``pip install -e .``) for workers to find it. A plugin that is not, or one
made up in a test, can be registered for a ``with`` block instead, here and in every subprocess::

    from cnnbench.testing import registered

    with registered(my_plugin_module):                     # or an adapter class, or a dotted module name
        check_adapter(MyAdapter)

Helpers
-------

- :func:`check_adapter`, :class:`ContractReport`, :func:`check_host_side` (the no-worker part alone),
  :class:`ContractWarning`: the contract test (:mod:`cnnbench.testing.contract`).
- :func:`registered`: a plugin installed for one ``with`` block (:mod:`cnnbench.testing.registration`).
- :data:`TINY_NETWORK` (spec text) and :func:`tiny_network` (the :class:`~cnnbench.spec.NetworkSpec`): conv,
  relu, max pool, fc, softmax loss, shaped so that layout bugs show (:mod:`cnnbench.testing.network`);
  :data:`TINY_MODERN_NETWORK`: batch norm, depthwise convolution, squeeze-and-excitation and a residual add.
- :class:`FakeMeter`: a meter (``--meters fake``) with known constant watts per domain, so the energy of any
  window is known exactly (:mod:`cnnbench.testing.meters`). This package is itself a plugin that registers
  it: ``PluginHost(default_plugins=("cnnbench.meters.builtin", "cnnbench.testing"))`` in process, or
  ``with registered(cnnbench.testing):`` for command lines run as subprocesses.
- For meter plugins and cnnbench's own meters, nothing here needs hardware:
  :class:`PowercapTree` writes a powercap tree in the real sysfs layout (Intel client and server, several
  sockets and dies, psys, the MMIO alias, AMD) — point ``$CNNBENCH_POWERCAP_ROOT`` at ``tree.root``;
  :class:`CounterDriver` advances its ``energy_uj`` counters in real time at known watts, wrapping at
  ``max_energy_range_uj``; :func:`unreadable` makes files of the tree fail with EACCES as for a non-root
  user (:mod:`cnnbench.testing.powercap`); :func:`fake_pynvml` builds a stand-in for nvidia-ml-py's
  ``pynvml`` module with :class:`FakeGpu` devices (counters at known watts, NOT_SUPPORTED, a GPU that gets
  lost, UUIDs and PCI bus ids) to put in ``sys.modules`` (:mod:`cnnbench.testing.nvml`).

Importing this package is cheap (no framework, no NumPy), since ``cnnbench`` loads it as a plugin.
"""

from __future__ import annotations

from cnnbench.testing.contract import (
    ContractReport, ContractWarning, HostSide, check_adapter, check_host_side)
from cnnbench.testing.meters import FakeMeter, cnnbench_register_meters
from cnnbench.testing.network import TINY_MODERN_NETWORK, TINY_NETWORK, tiny_network
from cnnbench.testing.nvml import FakeGpu, fake_pynvml
from cnnbench.testing.powercap import (
    AMD_RANGE_UJ, INTEL_RANGE_UJ, CounterDriver, FakeZone, PowercapTree, unreadable)
from cnnbench.testing.registration import Registration, registered

__all__ = [
    "AMD_RANGE_UJ", "INTEL_RANGE_UJ", "TINY_MODERN_NETWORK", "TINY_NETWORK", "ContractReport", "ContractWarning", "CounterDriver",
    "FakeGpu", "FakeMeter", "FakeZone", "HostSide", "PowercapTree", "Registration", "check_adapter",
    "check_host_side", "cnnbench_register_meters", "fake_pynvml", "registered", "tiny_network", "unreadable",
]
