"""The hooks a cnnbench plugin can implement (pluggy project ``cnnbench``)."""

from __future__ import annotations

from pluggy import HookspecMarker

hookspec = HookspecMarker("cnnbench")


@hookspec
def cnnbench_register_adapters():
    """Return a FrameworkAdapter subclass, or a list of them."""


@hookspec
def cnnbench_register_meters():
    """Return a Meter subclass, or a list of them."""


@hookspec
def cnnbench_register_networks():
    """Return a path to a network spec file, or a list of them."""
