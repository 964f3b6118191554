"""``registered(plugin)``: a plugin installed for one test, here and in every process the test starts.

cnnbench finds third-party plugins through the ``cnnbench`` entry-point group, and it finds them again in
every worker process (one per run) and in every ``cnnbench`` command a test runs. Registering a plugin
object with pluggy in the test's process would reach none of those, so this does what ``pip install``
does, in a temporary directory: it writes a ``*.dist-info`` folder whose ``entry_points.txt`` names the
plugin, and puts that directory on ``sys.path`` (for this process) and ``PYTHONPATH`` (for the processes
it starts). On exit both are restored and the directory removed.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
import os
import re
import shutil
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

_counter = itertools.count()


@dataclass(frozen=True)
class Registration:
    """What :func:`registered` made: the plugin's name (as ``cnnbench list`` shows it), the entry point's
    target, and the directory that holds the distribution's metadata."""

    name: str
    target: str
    site: Path


def _import_root(module: types.ModuleType) -> str | None:
    """The ``sys.path`` entry a module was imported from (``/x`` for ``/x/pkg/sub.py`` as ``pkg.sub``), so
    that processes started later can import it too; None for a module without a file."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    depth = module.__name__.count(".") + 1
    if path.name == "__init__.py":
        depth += 1  # a package's file is one folder further down than its name says
    root = path
    for _ in range(depth):
        root = root.parent
    return str(root)


def _find_attribute(obj: Any) -> tuple[types.ModuleType, str]:
    """(module, dotted attribute) under which ``obj`` can be imported again, as an entry point needs."""
    module_name = getattr(obj, "__module__", None) or type(obj).__module__
    module = sys.modules.get(module_name)
    qualname = getattr(obj, "__qualname__", None)
    if module is not None and qualname and "<locals>" not in qualname:
        found: Any = module
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if found is obj:
            return module, qualname
    if module is not None:
        # An instance (or anything else) bound to a module-level name.
        for attribute, value in vars(module).items():
            if value is obj:
                return module, attribute
    raise TypeError(
        f"registered() cannot give {obj!r} to worker processes: pass a module, or an object bound to a "
        f"module-level name (worker processes import it as 'module:attribute')"
    )


def _target(plugin: Any) -> tuple[str, types.ModuleType, str]:
    """(entry-point target, the module it lives in, a default plugin name)."""
    from cnnbench.adapter import FrameworkAdapter

    if isinstance(plugin, str):
        plugin = importlib.import_module(plugin)
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__, plugin, plugin.__name__
    module, attribute = _find_attribute(plugin)
    if inspect.isclass(plugin) and issubclass(plugin, FrameworkAdapter):
        # An adapter class is not a plugin; the wrapper module written next to the metadata is.
        return "", module, f"{plugin.name}-adapter"
    return f"{module.__name__}:{attribute}", module, attribute


_ADAPTER_WRAPPER = '''\
"""Written by cnnbench.testing.registered(): a plugin that registers one adapter class."""
from cnnbench import hookimpl


@hookimpl
def cnnbench_register_adapters():
    from {module} import {head}
    return {qualname}
'''


def _failures(host_class: Any) -> list[tuple[str, str, str]]:
    """(plugin, origin, error) of everything a fresh host cannot load, adapters and meters included."""
    host = host_class()
    host.adapters()
    host.meters()
    return [(f.plugin, f.origin, f.error) for f in host.failures]


@contextlib.contextmanager
def registered(plugin: Any, name: str | None = None) -> Iterator[Registration]:
    """Register ``plugin`` with cnnbench for the duration of a ``with`` block, as an installed
    distribution's entry point would: :class:`~cnnbench.plugins.PluginHost` instances made inside the
    block, ``cnnbench`` commands run as subprocesses and every worker process see it.

    ``plugin`` is a plugin module (or its dotted name), an object with ``@hookimpl`` functions bound to a
    module-level name, or a :class:`~cnnbench.adapter.FrameworkAdapter` subclass (wrapped in a plugin
    that returns it). ``name`` is the plugin's name (default: the module's name, or ``<adapter>-adapter``).
    Modules imported from a folder that is not on ``PYTHONPATH`` (a test's own folder) have that folder
    added for the processes the block starts.

    Raises :class:`~cnnbench.plugins.PluginError` with the host's message when the plugin does not load
    (an import error, a misspelt hook, an adapter name that another plugin has).
    """
    import cnnbench.plugins
    from cnnbench.plugins import ENTRY_POINT_GROUP, PluginError, PluginHost

    target, module, default_name = _target(plugin)
    name = name or default_name
    if not re.fullmatch(r"[\w.:-]+", name):
        raise ValueError(f"plugin name {name!r} cannot be an entry point name (letters, digits, '_.:-')")
    # What is broken already is not this plugin's doing; whatever breaks once it is added is.
    known = _failures(PluginHost)
    site = Path(tempfile.mkdtemp(prefix="cnnbench-registered-"))
    wrapper = None
    if not target:
        wrapper = f"_cnnbench_registered_{next(_counter)}_{os.getpid()}"
        qualname = plugin.__qualname__
        (site / f"{wrapper}.py").write_text(_ADAPTER_WRAPPER.format(
            module=module.__name__, head=qualname.split(".")[0], qualname=qualname))
        target = wrapper
    # A distribution name of its own per registration: importlib.metadata keeps one distribution per
    # name, so two blocks registering the same plugin name must not share one.
    dist = f"cnnbench_registered_{re.sub(r'[^A-Za-z0-9]', '_', name)}_{site.name.rsplit('-', 1)[-1]}"
    info = site / f"{dist}-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {target}\n")

    saved_env = os.environ.get("PYTHONPATH")
    saved_path = list(sys.path)
    entries = [str(site), *filter(None, (saved_env or "").split(os.pathsep))]
    root = _import_root(module)
    # A test's own folder goes last, so that it cannot shadow an installed package in the workers; an
    # installed module's site-packages never goes (PYTHONPATH outranks site-packages, and a worker may
    # run another interpreter, whose own packages must win: see cnnbench.execution.runner._source_root).
    if root and root not in entries and Path(root).name not in ("site-packages", "dist-packages"):
        entries.append(root)
    os.environ["PYTHONPATH"] = os.pathsep.join(entries)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    # get_host() caches the plugins it loaded first; drop it so that it sees this one.
    saved_host = cnnbench.plugins.replace_host(None)
    try:
        failures = [f for f in _failures(PluginHost) if f not in known]
        if failures or name not in PluginHost().origins:
            why = "; ".join(f"plugin '{plugin}' ({origin}): {error}" for plugin, origin, error in failures)
            raise PluginError(f"registered(): plugin '{name}' ({target}) did not load cleanly: "
                              f"{why or 'it was not found among the entry points'}")
        yield Registration(name, target, site)
    finally:
        sys.path[:] = saved_path
        if saved_env is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_env
        cnnbench.plugins.replace_host(saved_host)
        if wrapper:
            sys.modules.pop(wrapper, None)
        importlib.invalidate_caches()
        shutil.rmtree(site, ignore_errors=True)
