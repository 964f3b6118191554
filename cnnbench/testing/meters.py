"""A meter with known joules, for testing anything that turns samples into energy.

:class:`FakeMeter` (name ``fake``) reports constant watts per domain, so the energy of any interval is
known exactly. This module is a plugin that registers it, as is the :mod:`cnnbench.testing` package:

- in process: ``PluginHost(default_plugins=("cnnbench.meters.builtin", "cnnbench.testing"))``, then
  ``MeterSession.open(["fake"], host)``;
- for the command line and its workers: ``with registered(cnnbench.testing): ...`` and
  ``cnnbench compare ... --meters fake`` in a subprocess.
"""

from __future__ import annotations

from typing import Mapping

from cnnbench import hookimpl
from cnnbench.meters.base import DomainInfo, Meter, MeterError, Sample


class FakeMeter(Meter):
    """Constant, known watts per domain: the energy of ``[a, b]`` is exactly ``watts * (b - a)``.

    Settings: ``domains`` ({domain: (kind, watts)}, default 40 W cpu_package0 and 6 W dram0),
    ``unavailable`` ({domain: reason}) and ``fail`` (a reason: the meter cannot be read at all).

    For plugin authors: with it, a test can check what a run reports about energy without hardware —
    every ok cell's ``energy[domain]["power_w"]`` is the domain's watts, its ``energy_per_image_j`` the
    watts times the timed windows' seconds over their images, and ``dynamic_energy_per_image_j`` (above
    the idle power) about 0, since the power never changes — where the idle baseline is trusted, i.e. the
    machine was quiet during it (a busy test machine can be made to look quiet with
    :class:`cnnbench.testing.proc.FakeProc` and ``$CNNBENCH_PROC_ROOT``)::

        from cnnbench.meters import MeterSession
        from cnnbench.plugins import PluginHost
        from cnnbench.testing import FakeMeter

        host = PluginHost(default_plugins=("cnnbench.testing",), entry_points=False)
        settings = {"fake": {"domains": {"gpu0": ("gpu", 250.0)}}}
        with MeterSession.open(["fake"], host, settings=settings) as session:
            ...                                   # session.energy(start, end)["gpu0"].joules
            assert session.meters["fake"].joules("gpu0", 0.0, 2.0) == 500.0

    It counts as a meter of ``--meters auto`` like any other, so a command line run under
    ``registered(cnnbench.testing)`` picks it up; pass ``--meters fake`` to use it alone.
    """

    name = "fake"
    description = "known constant watts per domain (cnnbench.testing), for tests"
    DEFAULT_DOMAINS: Mapping[str, tuple[str, float]] = {"cpu_package0": ("cpu_package", 40.0), "dram0": ("dram", 6.0)}

    def open(self) -> None:
        for domain, reason in (self.settings.get("unavailable") or {}).items():
            self.unavailable[domain] = MeterError(reason, "none: this is a fake meter")
        if self.settings.get("fail"):
            raise MeterError(self.settings["fail"], "none: this is a fake meter")
        self.watts: dict[str, float] = {}
        for domain, (kind, watts) in (self.settings.get("domains") or self.DEFAULT_DOMAINS).items():
            self.watts[domain] = float(watts)
            self.domains[domain] = DomainInfo(
                meter=self.name, kind=kind, device=f"fake {domain}", source="cnnbench.testing.FakeMeter",
                energy_counter=True, power_samples=True,
            )
        self._t0: float | None = None

    def sample(self, now: float) -> dict[str, Sample]:
        if self._t0 is None:
            self._t0 = now
        return {d: Sample(energy_j=w * (now - self._t0), power_w=w) for d, w in self.watts.items()}

    def joules(self, domain: str, start: float, end: float) -> float:
        """The known energy of ``domain`` over ``[start, end]``."""
        return self.watts[domain] * (end - start)


@hookimpl
def cnnbench_register_meters():
    return FakeMeter
