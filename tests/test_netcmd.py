"""``cnnbench networks``: the list, one network's table and JSON, and importing a Caffe prototxt."""

from __future__ import annotations

import json
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_list_names_every_builtin_network(cli):
    proc = cli("networks", "--json")
    assert proc.returncode == 0, proc.stderr
    nets = {n["name"]: n for n in json.loads(proc.stdout)["networks"]}
    assert set(nets) == {"lenet", "alexnet", "overfeat", "vgg_a", "googlenet", "resnet18", "resnet50", "mobilenet_v2",
                         "efficientnet_b0"}
    # Issue 17: torchvision's published parameter counts (torchvision 0.29.1, its weights' meta "num_params")
    # and 2 x its published multiply-adds ("_ops", GMAC) as forward FLOPs.
    torchvision = {"resnet18": (11_689_512, 1.814), "resnet50": (25_557_032, 4.089),
                   "mobilenet_v2": (3_504_872, 0.301), "efficientnet_b0": (5_288_548, 0.386)}
    for name, (params, gmac) in torchvision.items():
        assert nets[name]["params"] == params, name
        assert round(nets[name]["forward_flops"] / 2e9, 3) == gmac, name
    assert nets["vgg_a"]["default_batch_size"] == 64 and nets["overfeat"]["input"] == [3, 231, 231]
    text = cli("networks").stdout
    assert "132,863,336" in text and "googlenet" in text


def test_one_network_layer_by_layer(cli):
    proc = cli("networks", "alexnet", "--json")
    doc = json.loads(proc.stdout)
    assert doc["params"] == 61_100_840 and doc["forward_flops"] == 1_428_376_960
    assert sum(layer["params"] for layer in doc["layers"]) == doc["params"]
    assert sum(layer["forward_flops"] for layer in doc["layers"]) == doc["forward_flops"]
    conv1 = doc["layers"][0]
    assert conv1 == {"name": "conv1", "type": "conv", "inputs": ["data"], "output_shape": [64, 55, 55],
                     "params": 23_296, "forward_flops": 140_553_600}
    table = cli("networks", "alexnet").stdout
    assert "total" in table and "61,100,840" in table and "1,428,376,960" in table


def test_import_writes_a_spec_that_runs_anywhere_a_network_is_accepted(cli, tmp_path):
    out = tmp_path / "googlenet.toml"
    proc = cli("networks", "import", str(FIXTURES / "convnet-benchmarks" / "googlenet.prototxt"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "6,998,552 parameters" in proc.stderr
    data = tomllib.loads(out.read_text())
    assert data["name"] == "googlenet" and data["input"] == [3, 224, 224]
    shown = json.loads(cli("networks", str(out), "--json").stdout)
    assert shown["params"] == 6_998_552 and shown["forward_flops"] == 3_165_343_744
    # and straight from the prototxt, in a run
    proc = cli("run", "--framework", "torch", "--network", str(FIXTURES / "prototxt" / "new_syntax.prototxt"),
               "--batch-size", "2", "--device", "cpu", "--warmup", "0", "--iterations", "1", "--repeats", "1",
               "--meters", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["status"] == "ok"


def test_bad_network_arguments_are_one_line_errors(cli, tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
                   'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }\n')
    cases = [
        (["networks", "nosuch"], "unknown network 'nosuch'"),
        (["networks", "import"], "name the .prototxt file to import"),
        (["networks", "import", str(tmp_path / "missing.prototxt")], "cannot read"),
        (["networks", "import", str(bad)], "'bn'"),
        (["networks", "lenet", "extra"], "FILE and --output go with 'import' only"),
    ]
    for argv, expected in cases:
        proc = cli(*argv)
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (argv, proc.stderr)
