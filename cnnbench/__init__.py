"""cnnbench: how fast and how energy-efficiently convolutional networks train, across frameworks.

Plugins implement hooks with ``from cnnbench import hookimpl``; notebooks and scripts call
``cnnbench.compare(...)``, ``cnnbench.run(...)`` and ``cnnbench.load(RUN)`` (see ``cnnbench.api``). Nothing heavy is imported here, so
``cnnbench --help`` and the host stay instant; frameworks are imported only inside worker processes.
"""

from __future__ import annotations

from pluggy import HookimplMarker

__version__ = "0.1.0"

hookimpl = HookimplMarker("cnnbench")

__all__ = ["__version__", "compare", "history", "hookimpl", "load", "run"]


def compare(*args, **kwargs):
    """``cnnbench compare`` from Python; see ``cnnbench.api.compare``."""
    from cnnbench.api import compare

    return compare(*args, **kwargs)


def run(*args, **kwargs):
    """``cnnbench run`` from Python; see ``cnnbench.api.run``."""
    from cnnbench.api import run

    return run(*args, **kwargs)


def load(*args, **kwargs):
    """A stored run from the results store; see ``cnnbench.api.load``."""
    from cnnbench.api import load

    return load(*args, **kwargs)


def history(*args, **kwargs):
    """The stored runs, newest first; see ``cnnbench.api.history``."""
    from cnnbench.api import history

    return history(*args, **kwargs)
