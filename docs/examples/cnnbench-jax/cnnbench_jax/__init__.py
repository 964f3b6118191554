"""cnnbench-jax: a JAX adapter for cnnbench (``--frameworks jax``), and a worked example of a third-party
framework plugin.

A plugin is a module that cnnbench finds through the ``cnnbench`` entry-point group (see this
distribution's ``pyproject.toml``) and whose hooks return adapter classes. Keep this module and the
adapter's module free of framework imports: cnnbench imports them for ``cnnbench list`` and ``--help``,
and JAX (with XLA) takes seconds to import. The framework is imported inside the adapter's worker-side
methods, which run in a worker process of their own.
"""

from __future__ import annotations

from cnnbench import hookimpl


@hookimpl
def cnnbench_register_adapters():
    from cnnbench_jax.adapter import JaxAdapter

    return [JaxAdapter]
