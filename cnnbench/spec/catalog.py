"""Built-in networks, found by name, and resolving what a user typed (a name, or the path of a TOML spec
or of a Caffe ``.prototxt``)."""

from __future__ import annotations

import os
import pathlib
from typing import Mapping

from cnnbench.spec import NetworkSpec, SpecError, load_spec


class UnknownNetwork(SpecError):
    """A network name that is neither built in nor registered; the message lists the valid choices."""

    def __init__(self, name: str, choices: list[str]):
        super().__init__(f"unknown network '{name}'; valid choices: {', '.join(choices)} "
                         f"(or a path to a .toml spec or a Caffe .prototxt file)")
        self.name = name
        self.choices = choices


def builtin_dir() -> pathlib.Path:
    """Where the built-in specs live: inside the package when installed, else the checkout's networks/."""
    here = pathlib.Path(__file__).resolve().parent.parent  # the cnnbench package
    # The wheel maps the top-level networks/ folder to cnnbench/_networks (see pyproject.toml); the
    # underscore keeps it from being confused with a module.
    installed = here / "_networks"
    return installed if installed.is_dir() else here.parent / "networks"


def builtin_networks() -> dict[str, pathlib.Path]:
    """Built-in network name (the file's stem) -> spec file, sorted by name."""
    folder = builtin_dir()
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.glob("*.toml"), key=lambda p: p.stem)}


def plugin_networks() -> dict[str, pathlib.Path]:
    """Network spec files that plugins register (``cnnbench_register_networks``), by name."""
    from cnnbench.plugins import get_host

    return get_host().networks()


def all_networks() -> dict[str, pathlib.Path]:
    """Built-in networks and those plugins register; a built-in name wins a clash."""
    return dict(sorted({**plugin_networks(), **builtin_networks()}.items()))


def is_path(name_or_path: str | os.PathLike) -> bool:
    """Whether what the user typed means a file rather than a network name."""
    if isinstance(name_or_path, os.PathLike):
        return True
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in name_or_path for sep in separators) or name_or_path.endswith((".toml", ".prototxt"))


def load_network_file(path: str | os.PathLike) -> NetworkSpec:
    """A spec file: a Caffe definition if its name ends in .prototxt, else a TOML spec."""
    if os.fspath(path).endswith(".prototxt"):
        from cnnbench.spec.prototxt import load_prototxt

        return load_prototxt(path)
    return load_spec(path)


def resolve_network(name_or_path: str | os.PathLike,
                    extra: Mapping[str, str | os.PathLike] | None = None) -> NetworkSpec:
    """Load a built-in network by name, or a spec file (.toml, or Caffe's .prototxt) by path.

    ``extra`` maps more names to spec files (those plugins register); a built-in name wins a clash,
    so a plugin cannot silently change what ``lenet`` means.
    """
    if is_path(name_or_path):
        path = pathlib.Path(name_or_path)
        if not path.is_file():
            why = "is not a file" if path.exists() else "no such file"
            raise SpecError(f"{os.fspath(path)}: cannot read: {why}")
        return load_network_file(path)
    choices: dict[str, str | os.PathLike] = {**(extra or {}), **builtin_networks()}
    if name_or_path not in choices and extra is None:
        choices = {**plugin_networks(), **builtin_networks()}
    if name_or_path not in choices:
        raise UnknownNetwork(name_or_path, sorted(choices))
    return load_network_file(choices[name_or_path])
