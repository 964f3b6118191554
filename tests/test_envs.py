"""Framework environments: where they live, what counts as one, the `cnnbench env` command, and one
real MXNet environment (the session fixture ``mxnet_env``)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.system import envs
from cnnbench.config import UsageError
from cnnbench.plugins import PluginHost

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def fake_env(framework: str, *, marker: bool = True, package: str = "pluggy") -> Path:
    """An environment as create_env leaves one, with this interpreter standing in for the venv's (run
    through a script, not a symlink: a symlink to a venv's python, away from its pyvenv.cfg, would be
    the venv's base interpreter)."""
    path = envs.env_dir(framework)
    (path / "bin").mkdir(parents=True)
    python = path / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    if marker:
        (path / envs.MARKER).write_text(json.dumps({"framework": framework, "package": package}))
    return path


def env_parser():
    from cnnbench.cli.options import Parser as _Parser
    from cnnbench.cli.env import add_env_parser

    parser = _Parser(prog="cnnbench")
    add_env_parser(parser.add_subparsers(dest="command", parser_class=_Parser))
    return parser


def run_env_command(*argv: str) -> int:
    from cnnbench.cli.env import cmd_env

    return cmd_env(env_parser().parse_args(["env", *argv]))


# -- paths ------------------------------------------------------------------------------------------


def test_data_dir_prefers_cnnbench_home_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("CNNBENCH_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert envs.data_dir() == tmp_path / "user" / ".local" / "share" / "cnnbench"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")  # invalid by the XDG spec: ignored
    assert envs.data_dir() == tmp_path / "user" / ".local" / "share" / "cnnbench"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert envs.data_dir() == tmp_path / "xdg" / "cnnbench"
    monkeypatch.setenv("CNNBENCH_HOME", str(tmp_path / "cb"))
    assert envs.data_dir() == tmp_path / "cb"
    assert envs.env_dir("mxnet") == tmp_path / "cb" / "envs" / "mxnet"


def test_env_dir_takes_framework_names_only(home):
    for bad in ("../etc", "MXNet", "a/b", ""):
        with pytest.raises(UsageError, match="is not a framework name"):
            envs.env_dir(bad)


def test_an_environment_exists_once_its_creation_finished(home):
    assert envs.interpreter("mxnet") is None
    path = fake_env("mxnet", marker=False)  # what an interrupted creation leaves
    assert envs.interpreter("mxnet") is None
    info = envs.env_info("mxnet")
    assert not info.exists and "did not finish" in info.problem
    (path / envs.MARKER).write_text("{}")
    assert envs.interpreter("mxnet") == str(path / "bin" / "python")
    # the base interpreter of a venv can disappear under it
    (path / "bin" / "python").unlink()
    (path / "bin" / "python").symlink_to(path / "nowhere")
    assert envs.interpreter("mxnet") is None
    assert "is missing" in envs.env_info("mxnet").problem


def test_list_reads_versions_with_the_environments_interpreter(home):
    fake_env("alpha", package="pluggy")
    fake_env("beta", package="no-such-distribution")
    alpha, beta = envs.list_envs()
    assert alpha.framework == "alpha" and alpha.problem is None
    assert alpha.packages == {"pluggy": importlib.metadata.version("pluggy"),
                              "numpy": importlib.metadata.version("numpy"),
                              "cnnbench": importlib.metadata.version("cnnbench")}
    assert beta.packages["no-such-distribution"] is None
    assert "not installed in it: no-such-distribution" in beta.problem


def test_remove_deletes_and_names_the_existing_ones_when_there_is_none(home):
    fake_env("alpha")
    with pytest.raises(UsageError, match=r"no environment for 'beta'; existing environments: alpha$"):
        envs.remove_env("beta")
    envs.remove_env("alpha")
    assert not envs.env_dir("alpha").exists()
    with pytest.raises(UsageError, match=r"existing environments: \(none\)"):
        envs.remove_env("alpha")


# -- create: errors before and after pip --------------------------------------------------------------


def test_create_names_the_valid_choices_for_an_unknown_framework(home):
    with pytest.raises(UsageError, match="unknown framework 'torhc'; valid choices: .*torch"):
        envs.create_env("torhc", PluginHost())
    assert not home.exists()


def test_create_refuses_a_framework_without_an_extra(home):
    # the Caffe-style engine needs nothing beyond the core, so cnnbench has no extra for it
    with pytest.raises(UsageError, match="no extra 'caffe' that installs caffe; environments can be made for: .*torch"):
        envs.create_env("caffe", PluginHost())


def test_source_tree_installs_editable():
    assert envs.source_tree() == ROOT
    assert envs.requirement("mxnet") == ["-e", f"{ROOT}[mxnet]"]
    assert "mxnet" in envs.extras()


def test_a_failing_pip_names_its_command_and_last_lines_and_leaves_nothing(home, monkeypatch):
    monkeypatch.setattr(envs, "requirement", lambda extra: [str(home / "not-a-project")])
    lines = []
    with pytest.raises(envs.EnvError) as err:
        envs.create_env("torch", PluginHost(), progress=lines.append)
    message = str(err.value)
    assert f"{envs.env_dir('torch')}/bin/python -m pip install" in message and "failed with exit code 1" in message
    assert "| ERROR: Invalid requirement" in message  # pip's own last lines
    assert "the environment's Python is 3." in message
    assert any("pip install" in line for line in lines)  # progress saw the commands and pip's output
    assert not envs.env_dir("torch").exists() and envs.interpreter("torch") is None


# -- the command line ---------------------------------------------------------------------------------


def test_env_command_errors_are_one_line_naming_the_choices(home):
    with pytest.raises(UsageError, match="choose an action: create, list, remove"):
        run_env_command()
    with pytest.raises(UsageError, match="invalid choice: 'creat'"):
        run_env_command("creat", "mxnet")
    with pytest.raises(UsageError, match="no environment for 'mxnet'"):
        run_env_command("remove", "mxnet")
    with pytest.raises(UsageError, match="--python no-such-python: no such interpreter"):
        run_env_command("create", "mxnet", "--python", "no-such-python")


def test_env_list_prints_a_table_or_json(home, capsys):
    assert run_env_command("list") == 0
    assert "no framework environments" in capsys.readouterr().out
    fake_env("alpha")
    assert run_env_command("list") == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "pluggy" in out and "ok" in out
    assert run_env_command("list", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["data_dir"] == str(home)
    assert [e["framework"] for e in data["environments"]] == ["alpha"]
    assert data["environments"][0]["python"].endswith("bin/python")


# -- one real environment -----------------------------------------------------------------------------


def test_mxnet_environment_holds_the_pins_and_this_cnnbench(mxnet_env, monkeypatch):
    monkeypatch.setenv("CNNBENCH_HOME", str(mxnet_env.home))
    assert envs.interpreter("mxnet") == mxnet_env.python
    (info,) = envs.list_envs()
    assert info.problem is None and info.python == mxnet_env.python
    assert info.packages["mxnet"] == "1.9.1"
    assert tuple(int(p) for p in info.packages["numpy"].split(".")[:2]) < (1, 24)
    assert info.created["install"] == ["-e", f"{ROOT}[mxnet]"]
    # editable: the environment runs this checkout's code, with no PYTHONPATH help
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([mxnet_env.python, "-c", "import cnnbench, cnnbench_mxnet; print(cnnbench.__file__)"],
                           capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert Path(where) == ROOT / "cnnbench" / "__init__.py"
    # and this interpreter kept its own NumPy
    assert tuple(int(p) for p in importlib.metadata.version("numpy").split(".")[:2]) >= (1, 24)


def test_a_framework_with_an_environment_joins_the_default_comparison(mxnet_env, cli):
    """Not importable here, but its environment exists: `cnnbench compare` with no --frameworks runs it."""
    env = {"CNNBENCH_HOME": str(mxnet_env.home)}
    listed = {f["name"]: f for f in json.loads(cli("list", "--json", env=env).stdout)["frameworks"]}
    assert listed["mxnet"]["available"] and listed["mxnet"]["interpreter"] == mxnet_env.python
    proc = cli("compare", "--network", "lenet", "--batch-size", "1", "--device", "cpu", "--warmup", "0",
               "--iterations", "1", "--repeats", "1", "--meters", "none", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    statuses = {r["framework"]: r["status"] for r in json.loads(proc.stdout)["results"]}
    assert statuses.get("mxnet") == "ok" and statuses.get("torch") == "ok"
