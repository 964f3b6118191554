"""--threads physical / logical: one thread per core against one per hardware thread (the paper's Fig. 7)."""

from __future__ import annotations

import os

import pytest

from cnnbench import cli
from cnnbench.system import provenance
from cnnbench.config import UsageError


def sysfs(tmp_path, cores_of_cpus):
    for cpu, (package, core) in enumerate(cores_of_cpus):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return str(tmp_path)


def test_hyper_threads_of_one_core_count_once(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    root = sysfs(tmp_path, [(0, 0), (0, 1), (0, 0), (0, 1)])  # 2 cores, 2 threads each
    assert provenance.usable_cores(root) == (2, 4)
    # only the CPUs this process may run on count (a container's cpuset)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2})
    assert provenance.usable_cores(root) == (1, 2)
    # two sockets with the same core ids are different cores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert provenance.usable_cores(sysfs(tmp_path / "two", [(0, 0), (1, 0)])) == (2, 2)


def test_words_resolve_to_counts(monkeypatch):
    monkeypatch.setattr(provenance, "usable_cores", lambda: (8, 16))
    assert cli.thread_counts(["physical", "logical"]) == [8, 16]
    assert cli.thread_counts(["1", "physical"]) == [1, 8]


def test_without_smt_the_two_words_are_one_cell_and_the_user_is_told(monkeypatch, capsys):
    monkeypatch.setattr(provenance, "usable_cores", lambda: (2, 2))
    assert cli.thread_counts(["physical", "logical"]) == [2]
    assert "2 physical cores and 2 logical CPUs here (SMT off or absent)" in capsys.readouterr().err


@pytest.mark.parametrize("values, message", [
    (["many"], "--threads takes whole numbers or physical, logical, not 'many'"),
    (["-1"], "not '-1'"),
    (["0"], "--threads must be a positive whole number, not '0'"),
    (["4", "4"], "--threads lists 4 twice"),
])
def test_bad_thread_values(values, message, monkeypatch):
    monkeypatch.setattr(provenance, "usable_cores", lambda: (2, 4))
    with pytest.raises(UsageError, match=message):
        cli.thread_counts(values)


def test_provenance_records_smt_and_usable_cores():
    topology = provenance.cpu_topology()
    assert {"smt_active", "smt_control", "usable_physical_cores", "usable_logical_cpus"} <= set(topology)
    assert 1 <= topology["usable_physical_cores"] <= topology["usable_logical_cpus"] <= os.cpu_count()


def _planned(argv):
    from cnnbench.plugins import get_host

    args = cli.build_parser().parse_args(argv)
    cells, _ = cli.plan(args, get_host(), single=argv[0] == "run")
    return [(c.config.framework, c.config.threads) for c in cells]


def test_a_comparison_gives_every_framework_the_same_threads_by_default(monkeypatch):
    # Left alone, PyTorch takes the physical cores, TensorFlow the logical CPUs and MXNet half of them: a default
    # comparison would measure those defaults, not the frameworks.
    monkeypatch.setattr(provenance, "usable_cores", lambda: (6, 12))
    planned = _planned(["compare", "--frameworks", "torch,tensorflow,mxnet,caffe", "--network", "lenet",
                        "--device", "cpu"])
    assert planned == [("torch", 6), ("tensorflow", 6), ("mxnet", 6), ("caffe", 6)]
    assert _planned(["run", "--framework", "mxnet", "--network", "lenet", "--device", "cpu"]) == [("mxnet", 6)]


def test_asked_threads_win_and_an_adapter_without_thread_control_keeps_its_default(monkeypatch):
    monkeypatch.setattr(provenance, "usable_cores", lambda: (6, 12))
    assert _planned(["compare", "--frameworks", "torch,caffe", "--network", "lenet", "--device", "cpu",
                     "--threads", "3"]) == [("torch", 3), ("caffe", 3)]
    from cnnbench.plugins import get_host

    if "jax" not in get_host().adapters():
        pytest.skip("the example JAX plugin (no thread control) is not installed")
    assert _planned(["compare", "--frameworks", "torch,jax", "--network", "lenet", "--device", "cpu"]) == [
        ("torch", 6), ("jax", None)]
