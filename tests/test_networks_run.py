"""Every built-in network builds and runs a training step in every installed adapter, through the
real path (CLI, planner, worker process), at batch 1 to keep it quick on small machines."""

from __future__ import annotations

import json

from cnnbench.spec.catalog import builtin_networks
from cnnbench.plugins import PluginHost


#: Issue 17's networks (batch norm, add, depthwise convolution, squeeze-and-excitation) and the adapters that
#: run them; any other (a third-party plugin) must refuse them as unsupported, with the layer type in the reason.
MODERN = {"resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0"}
RUNS_MODERN = {"caffe", "torch", "tensorflow", "jax", "mxnet"}


def installed_frameworks() -> list[str]:
    host = PluginHost(entry_points=False)
    return [name for name in host.adapters() if host.availability(name).available]


def test_every_network_steps_in_every_installed_adapter(cli):
    frameworks = installed_frameworks()
    networks = list(builtin_networks())
    assert {"lenet", "alexnet"} <= set(networks) and frameworks
    proc = cli("compare", "--frameworks", ",".join(frameworks), "--networks", ",".join(networks),
               "--batch-size", "1", "--device", "cpu", "--warmup", "0", "--iterations", "1", "--repeats", "1",
               "--meters", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    assert MODERN <= set(networks)
    results = json.loads(proc.stdout)["results"]
    assert {(r["framework"], r["network"]) for r in results} == {(f, n) for f in frameworks for n in networks}
    for r in results:
        if r["network"] in MODERN and r["framework"] not in RUNS_MODERN:
            assert r["status"] == "unsupported" and "cannot build layer" in r["reason"], r
            continue
        assert r["status"] == "ok", (r["framework"], r["network"], r["reason"])
        assert r["time_per_iter_ms"] > 0
