"""Framework environments: one virtual environment per framework, in cnnbench's data directory.

Some frameworks cannot share an interpreter (MXNet 1.9 needs numpy<1.24, TensorFlow 2.21 needs
numpy>=1.26), and every worker is a fresh process anyway, so each framework may run with its own
interpreter. ``cnnbench env create FRAMEWORK`` makes that interpreter: a venv under
``data_dir()/envs/FRAMEWORK`` holding the cnnbench core and the framework's extra
(``pip install "cnnbench[mxnet]"``, which carries the framework's own pins). From a source tree the
core is installed editable, so the environment always runs the host's cnnbench code.

An environment counts as existing once its marker file (written after pip succeeded) is there, so a
creation that was interrupted or failed never hands out a half-made interpreter. pip runs with the
host's pip configuration (pip.conf and ``PIP_*`` variables apply inside venvs too).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import cnnbench
from cnnbench.config import UsageError

#: Written into an environment once pip has finished; its presence is what "the env exists" means.
MARKER = "cnnbench-env.json"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
#: Lines of pip's output quoted when it fails.
ERROR_TAIL_LINES = 15


class EnvError(Exception):
    """Making an environment failed (venv or pip); the message names the command and its last lines."""


@dataclass
class EnvInfo:
    framework: str
    path: Path
    #: The environment's interpreter; None where there is no usable one.
    python: str | None
    #: Creation finished (the marker is there).
    exists: bool
    #: Distribution name -> version in the environment (the framework's, numpy, cnnbench); None: missing.
    packages: dict[str, str | None] = field(default_factory=dict)
    #: Why the environment cannot be used, if it cannot.
    problem: str | None = None
    #: What ``create`` recorded: base interpreter, what cnnbench was installed from, when.
    created: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


# -- where environments live ------------------------------------------------------------------------


def data_dir() -> Path:
    """``$CNNBENCH_HOME``, else ``$XDG_DATA_HOME/cnnbench``, else ``~/.local/share/cnnbench``."""
    home = os.environ.get("CNNBENCH_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    # The XDG spec says relative paths are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "cnnbench"
    return Path.home() / ".local" / "share" / "cnnbench"


def envs_root() -> Path:
    return data_dir() / "envs"


def env_dir(framework: str) -> Path:
    """``data_dir()/envs/<framework>``; the name must be a framework name (no path tricks)."""
    if not _NAME_RE.match(framework):
        raise UsageError(f"'{framework}' is not a framework name (lower-case letters, digits, '_' or '-')")
    return envs_root() / framework


def _python_in(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def interpreter(framework: str) -> str | None:
    """The environment's python if its creation finished and the interpreter is still there (a venv's
    python links to its base interpreter, which may have been removed), else None. No subprocess:
    the host asks this for every cell."""
    path = env_dir(framework)
    python = _python_in(path)
    if (path / MARKER).is_file() and python.exists() and os.access(python, os.X_OK):
        return str(python)
    return None


# -- what gets installed ----------------------------------------------------------------------------


def source_tree() -> Path | None:
    """The project directory when cnnbench runs from a source tree (the folder with cnnbench's
    pyproject.toml above cnnbench/__init__.py); None for an installed wheel."""
    root = Path(cnnbench.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        name = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name")
    except (OSError, ValueError):
        return None
    return root if name == "cnnbench" else None


def extras() -> list[str] | None:
    """cnnbench's pip extras (from pyproject.toml in a source tree, else the installed metadata);
    None when they cannot be read."""
    root = source_tree()
    if root is not None:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
        return sorted(project.get("optional-dependencies", {}))
    import importlib.metadata

    try:
        return sorted(importlib.metadata.metadata("cnnbench").get_all("Provides-Extra") or [])
    except importlib.metadata.PackageNotFoundError:
        return None


def requirement(extra: str) -> list[str]:
    """pip's arguments for cnnbench with ``extra``: the source tree, editable, or the same version of
    cnnbench from the index."""
    root = source_tree()
    if root is not None:
        return ["-e", f"{root}[{extra}]"]
    return [f"cnnbench[{extra}]=={cnnbench.__version__}"]


def _extra_of(cls: Any) -> str:
    return getattr(cls, "extra", None) or cls.name


def creatable(host: Any) -> list[str]:
    """Frameworks whose install recipe is an extra of cnnbench."""
    known = extras()
    return [name for name, cls in host.adapters().items() if known is None or _extra_of(cls) in known]


# -- running commands -------------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    """The host's environment without what would make another interpreter see the host's packages:
    PYTHONPATH (a source checkout's cnnbench.egg-info would look installed to pip) and PYTHONHOME."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(var, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(cmd: list[str], progress: Callable[[str], Any]) -> None:
    """Run ``cmd``, passing each line of its output to ``progress``; EnvError naming the command and
    its last lines if it fails."""
    tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_clean_env(), text=True, errors="replace")
    except OSError as exc:
        raise EnvError(f"cannot run {shlex.join(cmd)}: {exc.strerror or exc}") from None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            progress(line)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        last = "\n".join(f"  | {line}" for line in tail if line.strip())
        raise EnvError(f"{shlex.join(cmd)} failed with exit code {code}; its last lines:\n{last}")


# -- create, list, remove ---------------------------------------------------------------------------


def create_env(framework: str, host: Any, *, python: str = sys.executable, progress: Callable[[str], Any] = print,
               clear: bool = False) -> EnvInfo:
    """Make (or bring up to date) the environment of ``framework``: a venv with the cnnbench core and
    the framework's extra. ``python`` is the base interpreter; ``clear`` starts from an empty venv.
    UsageError for an unknown framework or one without an extra; EnvError if venv or pip fails
    (a new environment is then removed again, an existing one left as it was)."""
    cls = host.adapter(framework)  # UsageError naming the valid choices
    extra = _extra_of(cls)
    known = extras()
    if known is not None and extra not in known:
        raise UsageError(f"cnnbench has no extra '{extra}' that installs {framework}; environments can be made "
                         f"for: {', '.join(creatable(host)) or '(none)'}")
    path = env_dir(framework)
    # A folder without the marker is what an interrupted or failed creation left, and a venv cannot
    # change its base interpreter: start afresh then.
    if path.exists() and (clear or _recorded(path).get("base_python") != python):
        shutil.rmtree(path)
    fresh = not path.exists()
    started = time.monotonic()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        progress(f"$ {shlex.join([python, '-m', 'venv', str(path)])}")
        _run([python, "-m", "venv", str(path)], progress)
        env_python = str(_python_in(path))
        pip = [env_python, "-m", "pip", "install", *requirement(extra)]
        progress(f"$ {shlex.join(pip)}")
        try:
            _run(pip, progress)
        except EnvError as exc:
            version = subprocess.run([env_python, "-c", "import platform; print(platform.python_version())"],
                                     capture_output=True, text=True, env=_clean_env()).stdout.strip()
            raise EnvError(f"{exc}\n(the environment's Python is {version or 'unknown'}; 'cnnbench env create "
                           f"{framework} --python PATH' makes it with another interpreter)") from None
        record = {
            "framework": framework,
            "extra": extra,
            "package": cls.package,
            "base_python": python,
            "install": requirement(extra),
            "cnnbench": cnnbench.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.monotonic() - started, 1),
        }
        (path / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        if fresh:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return env_info(framework)


def _recorded(path: Path) -> dict[str, Any]:
    """What ``create`` wrote into the marker; {} without one."""
    try:
        return json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _versions(python: str, packages: list[str]) -> dict[str, str | None]:
    """Versions of distributions as the environment's interpreter sees them (isolated mode: no
    PYTHONPATH, no user site)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: out[name] = None\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([python, "-I", "-c", code, *packages], capture_output=True, text=True,
                          env=_clean_env(), timeout=60)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvError(f"its interpreter {python} does not run: {last}")
    return json.loads(proc.stdout)


def env_info(framework: str) -> EnvInfo:
    """What is known about one environment (runs its interpreter once for the package versions)."""
    path = env_dir(framework)
    marker = path / MARKER
    info = EnvInfo(framework, path, None, marker.is_file())
    if not info.exists:
        info.problem = (f"creation did not finish; run 'cnnbench env create {framework}' again" if path.exists()
                        else "no environment")
        return info
    info.created = _recorded(path)
    python = interpreter(framework)
    if python is None:
        info.problem = f"its interpreter {_python_in(path)} is missing; run 'cnnbench env create {framework} --clear'"
        return info
    packages = list(dict.fromkeys([info.created.get("package") or framework, "numpy", "cnnbench"]))
    try:
        info.packages = _versions(python, packages)
    except (EnvError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        info.problem = str(exc)
        return info
    info.python = python
    missing = [name for name, version in info.packages.items() if version is None]
    if missing:
        info.problem = f"not installed in it: {', '.join(missing)}; run 'cnnbench env create {framework}' again"
    return info


def existing() -> list[str]:
    """Names of the folders under the environments' root (finished or not)."""
    root = envs_root()
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir() and _NAME_RE.match(entry.name))


def list_envs() -> list[EnvInfo]:
    return [env_info(name) for name in existing()]


def remove_env(framework: str) -> None:
    path = env_dir(framework)
    if not path.exists():
        raise UsageError(f"there is no environment for '{framework}'; existing environments: "
                         f"{', '.join(existing()) or '(none)'}")
    shutil.rmtree(path)
