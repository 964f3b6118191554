"""cnnbench: how fast and how energy-efficiently convolutional networks train, across frameworks.

Plugins implement hooks with ``from cnnbench import hookimpl``. Nothing heavy is imported here, so
``cnnbench --help`` and the host stay instant; frameworks are imported only inside worker processes.
"""

from __future__ import annotations

from pluggy import HookimplMarker

__version__ = "0.1.0"

hookimpl = HookimplMarker("cnnbench")

__all__ = ["__version__", "hookimpl"]
