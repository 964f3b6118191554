"""What cnnbench will not do (issue 11): load code from anywhere but its built-in plugin list and the
``cnnbench`` entry points, execute anything a spec file says, take a job other than JSON on stdin, or
hand a string to a shell."""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

MARKER_CODE = "open({marker!r}, 'w').write('executed')"


def test_a_module_on_the_path_is_no_plugin_without_an_entry_point(tmp_path):
    """A package that looks like a plugin (named like one, with a hookimpl) but was not installed with a
    ``cnnbench`` entry point is never imported, by the host or by a worker."""
    marker = tmp_path / "imported"
    package = tmp_path / "site" / "cnnbench_evil"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"{MARKER_CODE.format(marker=str(marker))}\n"
        "from cnnbench import hookimpl\n\n@hookimpl\ndef cnnbench_register_adapters():\n    return []\n")
    env = {"PYTHONPATH": str(tmp_path / "site"), "CNNBENCH_PLUGINS": "cnnbench_evil"}
    proc = run_cli("list", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "cnnbench_evil" not in proc.stdout
    proc = run_cli("run", "--framework", "caffe", "--network", "lenet", "--batch-size", "2", "--meters", "none",
                   "--warmup", "0", "--iterations", "1", "--repeats", "1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "a module that is not a registered plugin was imported"


def test_spec_files_are_data_and_never_executed(tmp_path):
    """Strings that are Python, in every place a spec has strings, stay strings: the network loads and
    runs (or is refused for what it is), and nothing it says is executed."""
    marker = tmp_path / "executed"
    code = MARKER_CODE.format(marker=str(marker))
    spec = tmp_path / "net.toml"
    spec.write_text(
        f'name = "plain"\ndescription = "{code}"\ninput = [1, 8, 8]\ndefault_batch_size = 2\n'
        'layers = [\n  {name = "fc1", type = "fc", outputs = 4},\n  {name = "loss", type = "softmax_loss"},\n]\n')
    proc = run_cli("networks", str(spec), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["description"] == code
    proc = run_cli("run", "--framework", "caffe", "--network", str(spec), "--meters", "none", "--warmup", "0",
                   "--iterations", "1", "--repeats", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    for text in (f'name = "x"\ninput = [1, 8, 8]\ndefault_batch_size = 2\nlayers = [{{name = "{code}", type = "relu"}}]\n',
                 f'name = "x"\ninput = [1, 8, 8]\ndefault_batch_size = 2\nlayers = [{{name = "a", type = "{code}"}}]\n'):
        spec.write_text(text)
        proc = run_cli("networks", str(spec))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(f'name: "{code}"\ninput: "data"\ninput_dim: 1 input_dim: 1 input_dim: 8 input_dim: 8\n'
                        f'layer {{ name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1" '
                        f'inner_product_param {{ num_output: 4 }} }}\n')
    proc = run_cli("networks", str(prototxt))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not marker.exists(), "a spec file's text was executed"


def _worker(stdin: bytes, tmp_path: Path) -> tuple[list[dict], subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    proc = subprocess.run([sys.executable, "-m", "cnnbench.execution.worker", "--job", "x"], input=stdin, capture_output=True,
                          env=env, timeout=60, cwd=tmp_path)
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    return events, proc


class _Payload:
    """What an unpickler would run: the marker write."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (MARKER_CODE.format(marker=self.marker),))


def test_a_worker_takes_only_a_json_job_on_stdin(tmp_path):
    marker = tmp_path / "executed"
    for stdin in (pickle.dumps(_Payload(str(marker))), b"[1, 2, 3]", b"", b"\xff\xfe"):
        events, proc = _worker(stdin, tmp_path)
        assert proc.returncode == 1
        assert [e["event"] for e in events] == ["error"], events
    assert not marker.exists(), "the worker unpickled its input"


def test_a_worker_loads_only_registered_frameworks(tmp_path):
    """A job naming a module (``os``) as its framework is refused with the valid choices, not imported."""
    from cnnbench.config import Measurement, RunConfig
    from cnnbench.spec.catalog import resolve_network
    from cnnbench.execution.worker import PROTOCOL_VERSION
    from dataclasses import asdict

    spec = resolve_network("lenet")
    job = {"protocol": PROTOCOL_VERSION, "mode": "bench",
           "config": RunConfig(framework="os", network="lenet", batch_size=2).to_dict(),
           "measurement": asdict(Measurement(warmup=0, min_time=0.01, repeats=1)),
           "spec": {"data": spec.data, "source": spec.source}}
    events, proc = _worker(json.dumps(job).encode(), tmp_path)
    assert proc.returncode == 1
    (error,) = events
    assert error["event"] == "error" and "unknown framework 'os'; valid choices: caffe" in error["message"]


FORBIDDEN_CALLS = {"system", "popen", "eval", "exec", "execfile", "compile", "__import__"}


@pytest.mark.parametrize("folder", ["cnnbench", "plugins"])
def test_no_shell_strings_and_no_eval_in_the_code(folder):
    """Guards the rules in code: every subprocess gets an argument list (no shell=True, no os.system or
    os.popen), and nothing evaluates text (eval, exec, compile, pickle.load)."""
    problems = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
                if name in FORBIDDEN_CALLS and owner in ("", "os", "builtins"):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}()")
                if owner == "pickle" and name in ("load", "loads"):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: pickle.{name}()")
                for keyword in node.keywords:
                    if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                        problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: shell=")
                    if keyword.arg == "allow_pickle" and not (isinstance(keyword.value, ast.Constant)
                                                              and keyword.value.value is False):
                        problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: allow_pickle=")
    assert not problems, problems
