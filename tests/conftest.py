from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The TensorFlow tests that run the adapter in this process (layouts, the step, half precisions) need
# oneDNN, which TensorFlow turns on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; its workers set
# this themselves, before their import, for --kernels vendor. Set before any test module imports it.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

ROOT = Path(__file__).resolve().parent.parent
FAKE_PLUGIN = Path(__file__).resolve().parent / "fakeplugin"


def make_distribution(site: Path, dist: str, entry_points: dict[str, str], packages: dict[str, Path] | None = None) -> Path:
    """Write what pip would install for a distribution with ``cnnbench`` entry points into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    for name, source in (packages or {}).items():
        shutil.copytree(source, site / name)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[cnnbench]\n{lines}")
    return site


@pytest.fixture(autouse=True)
def _own_cnnbench_home(tmp_path_factory, monkeypatch):
    """Framework environments of the machine's user (~/.local/share/cnnbench) must not leak into tests."""
    if "CNNBENCH_HOME" not in os.environ or not os.environ["CNNBENCH_HOME"].startswith(str(tmp_path_factory.getbasetemp())):
        monkeypatch.setenv("CNNBENCH_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(autouse=True)
def _own_results_db(tmp_path, monkeypatch):
    """Runs in tests are stored in a database of the test's own, never in the working directory."""
    monkeypatch.setenv("CNNBENCH_DB", str(tmp_path / "results.sqlite"))
    return tmp_path / "results.sqlite"


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """The fake adapter installed as a third-party distribution, visible here and to subprocesses."""
    site = make_distribution(
        tmp_path / "site", "cnnbench-fake", {"fake": "cnnbench_fake"},
        {"cnnbench_fake": FAKE_PLUGIN / "cnnbench_fake"},
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    import cnnbench.plugins

    monkeypatch.setattr(cnnbench.plugins, "_host", None)
    return site


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``cnnbench ARGS`` in a fresh interpreter, as a user runs it."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(ROOT), str(ROOT / "plugins"), full_env.get("PYTHONPATH", "")] if p
    )
    return subprocess.run(
        [sys.executable, "-m", "cnnbench", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


@pytest.fixture
def cli():
    return run_cli


# Small, fast measurement settings for tests: behaviour, not speed, is under test.
FAST = ["--warmup", "1", "--min-time", "0.02", "--repeats", "2"]


# -- a real MXNet environment (cnnbench.system.envs), made once per session --------------------------------

#: What pip says when it cannot reach a package index, rather than when something is wrong with us.
_UNREACHABLE = ("No matching distribution found", "Could not find a version that satisfies", "NewConnectionError",
                "Temporary failure in name resolution", "Max retries exceeded", "Network is unreachable",
                "ProxyError", "Read timed out", "ConnectTimeoutError")


@pytest.fixture(scope="session")
def mxnet_env(tmp_path_factory):
    """``cnnbench env create mxnet`` for real, under a temporary CNNBENCH_HOME, once per session (about
    15 s with a warm pip cache, a minute or more without). Yields ``home`` (set CNNBENCH_HOME to it to
    see the environment), ``python`` and the EnvInfo; skips when no package index can be reached."""
    from types import SimpleNamespace

    from cnnbench.system.envs import EnvError, create_env
    from cnnbench.plugins import PluginHost

    host = PluginHost()
    if "mxnet" not in host.adapters():
        pytest.skip("cnnbench_mxnet is not importable here; reinstall cnnbench (pip install -e .)")
    home = tmp_path_factory.mktemp("cnnbench-home")
    log: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNBENCH_HOME", str(home))
        try:
            info = create_env("mxnet", host, progress=log.append)
        except EnvError as exc:
            if any(marker in str(exc) for marker in _UNREACHABLE):
                pytest.skip(f"cannot make the MXNet environment, the package index is unreachable: "
                            f"{str(exc).splitlines()[-1].strip()}")
            raise
    return SimpleNamespace(home=home, python=info.python, info=info, log=log)
