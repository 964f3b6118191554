from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
