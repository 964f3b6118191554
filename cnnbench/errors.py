"""The exceptions the command line turns into exit codes, and those codes: one place for each. (Exceptions that
belong to one contract stay with it: ``Unsupported`` and ``OutOfMemory`` in ``cnnbench.adapter``, ``MeterError``
in ``cnnbench.meters``.)

Only the standard library: the worker, which may run under another interpreter, and ``cnnbench --help``
import this module.
"""

from __future__ import annotations

#: Every cell ok, or unsupported / unavailable (statuses with their reasons, not failures).
EXIT_OK = 0
#: Some cell failed (error / oom / timeout), ``verify`` found a mismatch, or results could not be stored.
EXIT_FAILED = 1
#: Bad usage: one line naming the problem and the valid choices.
EXIT_USAGE = 2
#: Interrupted by SIGINT (Ctrl-C), or by SIGTERM / SIGHUP; the cells that finished are still printed.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class UsageError(Exception):
    """Bad input from the user: the CLI prints it as one line and exits 2."""


class StoreError(Exception):
    """The results database cannot be opened, read or written (locked, full, not a database, ...); kept
    here, not in cnnbench.results.store, so the CLI can catch it without importing sqlite3."""


class SpecError(Exception):
    """An invalid network spec; the message starts with the source and names the layer."""


class PluginError(Exception):
    """A plugin is broken; raised only in strict mode, otherwise recorded as a PluginFailure."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP reached the host: stop like Ctrl-C, keeping what finished."""


def interrupted_code(exc: BaseException) -> int:
    """The exit code of a run cut short by ``exc`` (KeyboardInterrupt or Terminated)."""
    return EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_TERMINATED
