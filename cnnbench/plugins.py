"""The plugin host: built-in plugins from DEFAULT_PLUGINS, third-party ones from the ``cnnbench`` entry points.

A plugin that fails to import, misspells a hook or registers a clashing name is recorded as a
:class:`PluginFailure` (shown by ``cnnbench list``) and skipped: one broken plugin never breaks
``cnnbench --help`` or the other frameworks. ``CNNBENCH_STRICT_PLUGINS=1`` re-raises instead, for plugin
authors. ``CNNBENCH_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pluggy

from cnnbench import hookspecs
from cnnbench.adapter import Availability, FrameworkAdapter
from cnnbench.errors import PluginError  # public here too: plugin authors catch cnnbench.plugins.PluginError

#: Built-in plugins, registered through the same hooks as third-party ones. Importable from a bare
#: checkout with ``PYTHONPATH=.:plugins``; a missing framework only makes its adapter "unavailable".
DEFAULT_PLUGINS: tuple[str, ...] = ("cnnbench.meters.builtin", "cnnbench_caffe", "cnnbench_torch", "cnnbench_tensorflow", "cnnbench_mxnet")
ENTRY_POINT_GROUP = "cnnbench"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    #: Where it came from: "built-in" or "entry point of <distribution>".
    origin: str
    error: str


def strict_mode() -> bool:
    return os.environ.get("CNNBENCH_STRICT_PLUGINS", "") not in ("", "0")


class PluginHost:
    """Loads plugins once and answers: which adapters (and later meters, networks) exist."""

    def __init__(self, default_plugins: tuple[str, ...] = DEFAULT_PLUGINS, entry_points: bool = True):
        self.pm = pluggy.PluginManager("cnnbench")
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get("CNNBENCH_TRACE_PLUGINS", "") not in ("", "0"):
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        self.failures: list[PluginFailure] = []
        #: plugin name -> origin, in registration order (which decides who wins a name clash).
        self.origins: dict[str, str] = {}
        for module_name in default_plugins:
            self._register(module_name, "built-in", lambda m=module_name: importlib.import_module(m))
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                dist = ep.dist.name if ep.dist is not None else "unknown distribution"
                self._register(ep.name, f"entry point of {dist}", ep.load)
        self._adapters: dict[str, type[FrameworkAdapter]] | None = None
        self._networks: dict[str, Path] | None = None
        self._meters: dict[str, type] | None = None

    # -- loading ----------------------------------------------------------------------------------

    def _fail(self, plugin: str, origin: str, error: str, cause: BaseException | None = None) -> None:
        if strict_mode():
            raise PluginError(f"plugin '{plugin}' ({origin}): {error}") from cause
        self.failures.append(PluginFailure(plugin, origin, error))

    def _register(self, name: str, origin: str, load: Callable[[], Any]) -> None:
        if name in self.origins:
            self._fail(name, origin, f"a plugin named '{name}' is already registered ({self.origins[name]})")
            return
        try:
            plugin = load()
        except Exception as exc:  # a broken plugin must not take the host down
            self._fail(name, origin, f"failed to import: {type(exc).__name__}: {exc}", exc)
            return
        try:
            self.pm.register(plugin, name=name)
            # Catch misspelt hooks (e.g. cnnbench_register_adapter) per plugin, so the blame is precise.
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(name, origin, f"invalid plugin: {exc}", exc)
            return
        self.origins[name] = origin

    def _collect(self, hook_name: str) -> list[tuple[str, Any]]:
        """Call one registration hook per plugin, in registration order: [(plugin name, item), ...]."""
        hook = getattr(self.pm.hook, hook_name)
        impls = {impl.plugin_name: impl for impl in hook.get_hookimpls()}
        collected: list[tuple[str, Any]] = []
        for plugin in self.origins:
            impl = impls.get(plugin)
            if impl is None:
                continue
            try:
                returned = impl.function()
            except Exception as exc:
                self._fail(plugin, self.origins[plugin], f"{hook_name}() raised {type(exc).__name__}: {exc}", exc)
                continue
            if returned is None:
                continue
            items = returned if isinstance(returned, (list, tuple)) else [returned]
            collected.extend((plugin, item) for item in items)
        return collected

    # -- adapters ---------------------------------------------------------------------------------

    def _registry(
        self, hook_name: str, kind: str, problem_of: Callable[[Any], str | None]
    ) -> dict[str, tuple[str, Any]]:
        """Classes a registration hook returned, by name, sorted: name -> (plugin, class). Invalid
        classes and later duplicates of a name are recorded as failures naming both classes."""
        found: dict[str, tuple[str, Any]] = {}
        for plugin, cls in self._collect(hook_name):
            origin = self.origins[plugin]
            problem = problem_of(cls)
            if problem:
                self._fail(plugin, origin, problem)
                continue
            if cls.name in found:
                first_plugin, first = found[cls.name]
                self._fail(
                    plugin,
                    origin,
                    f"{kind} name '{cls.name}' is registered twice: by {_qualname(first)} (plugin "
                    f"'{first_plugin}') and by {_qualname(cls)} (plugin '{plugin}'); the second is ignored",
                )
                continue
            found[cls.name] = (plugin, cls)
        return {name: found[name] for name in sorted(found)}

    def adapters(self) -> dict[str, type[FrameworkAdapter]]:
        """Adapter classes by name, sorted; invalid and duplicate ones are recorded as failures."""
        if self._adapters is None:
            registry = self._registry("cnnbench_register_adapters", "adapter", adapter_problem)
            self._adapters = {name: cls for name, (_, cls) in registry.items()}
            self._adapter_plugins = {name: plugin for name, (plugin, _) in registry.items()}
        return self._adapters

    def adapter(self, name: str) -> type[FrameworkAdapter]:
        adapters = self.adapters()
        if name not in adapters:
            from cnnbench.config import UsageError

            raise UsageError(f"unknown framework '{name}'; valid choices: {', '.join(adapters) or '(none)'}")
        return adapters[name]

    def adapter_plugin(self, name: str) -> str | None:
        """The plugin that registered adapter ``name`` (for messages and provenance)."""
        self.adapters()
        return self._adapter_plugins.get(name)

    def availability(self, name: str) -> Availability:
        """The adapter's availability; a plugin whose check raises is unavailable, with the error."""
        cls = self.adapter(name)
        try:
            return cls.availability()
        except Exception as exc:
            if strict_mode():
                raise
            return Availability(False, None, f"its availability check raised {type(exc).__name__}: {exc}",
                                getattr(cls, "install_hint", None))

    # -- meters -----------------------------------------------------------------------------------

    def meters(self) -> dict[str, type]:
        """Meter classes by name, sorted; invalid and duplicate ones are recorded as failures."""
        if self._meters is None:
            registry = self._registry("cnnbench_register_meters", "meter", _meter_problem)
            self._meters = {name: cls for name, (_, cls) in registry.items()}
        return self._meters


    # -- networks ---------------------------------------------------------------------------------

    def networks(self) -> dict[str, Path]:
        """Network spec files plugins register, by name (the file's stem), sorted; a path that is not a
        file, or a second file of one name, is recorded as a failure naming the plugin."""
        if self._networks is None:
            found: dict[str, tuple[str, Path]] = {}
            for plugin, item in self._collect("cnnbench_register_networks"):
                path = Path(item)
                if not path.is_file():
                    self._fail(plugin, self.origins[plugin],
                               f"cnnbench_register_networks() returned {str(item)!r}, which is not a file")
                    continue
                if path.stem in found:
                    first_plugin, first = found[path.stem]
                    self._fail(plugin, self.origins[plugin],
                               f"network name '{path.stem}' is registered twice: {first} (plugin '{first_plugin}') "
                               f"and {path} (plugin '{plugin}'); the second is ignored")
                    continue
                found[path.stem] = (plugin, path)
            self._networks = {name: found[name][1] for name in sorted(found)}
        return self._networks


def _qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"


def adapter_problem(cls: Any) -> str | None:
    if not (inspect.isclass(cls) and issubclass(cls, FrameworkAdapter)):
        return f"cnnbench_register_adapters() returned {cls!r}, which is not a FrameworkAdapter subclass"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return f"adapter {_qualname(cls)} has no valid 'name' (lower-case letters, digits, '_' or '-'): {name!r}"
    if not isinstance(getattr(cls, "package", None), str):
        return f"adapter {_qualname(cls)} does not set 'package' (the distribution that provides the framework)"
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        return f"adapter {_qualname(cls)} does not implement: {missing}"
    return None


def _meter_problem(cls: Any) -> str | None:
    from cnnbench.meters.base import Meter  # here, so that loading plugins stays light

    if not (inspect.isclass(cls) and issubclass(cls, Meter)):
        return f"cnnbench_register_meters() returned {cls!r}, which is not a Meter subclass"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return f"meter {_qualname(cls)} has no valid 'name' (lower-case letters, digits, '_' or '-'): {name!r}"
    if name in ("auto", "none"):
        return f"meter {_qualname(cls)} uses the reserved name '{name}' (a --meters keyword)"
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        return f"meter {_qualname(cls)} does not implement: {missing}"
    return None


_host: PluginHost | None = None


def replace_host(host: PluginHost | None) -> PluginHost | None:
    """Put ``host`` in place of the one :func:`get_host` keeps (None: the next call loads the plugins afresh);
    returns the one it replaced, to be put back."""
    global _host
    previous, _host = _host, host
    return previous


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    if _host is None:
        _host = PluginHost()
    return _host
