"""``cnnbench layers``: every layer timed alone, sums and shares that add up, the coherence line, energy per
layer from a meter with known watts, the figure's shares, and one-line refusals and usage errors."""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import re
from dataclasses import asdict

import pytest

from cnnbench.config import Measurement, RunConfig
from cnnbench.execution.layer_timing import PARTS, TYPE_OF, TYPES, run_layers
from cnnbench.cli.layers import layers_text
from cnnbench.spec.catalog import resolve_network
from cnnbench.execution.runner import Cell
from conftest import FAST

LENET = ["--network", "lenet", "--batch-size", "2", "--device", "cpu", *FAST]
COHERENCE = re.compile(r"^coherence: sum of layers ([\d.]+) ms/iter, whole network ([\d.]+) ms/iter, ratio ([\d.]+)",
                       re.MULTILINE)
TOP_KEYS = {"schema_version", "kind", "framework", "network", "batch_size", "device", "precision", "kernels",
            "threads", "options", "status", "reason", "measurement", "energy_unavailable", "layers", "types",
            "totals", "network_step", "coherence", "notes", "provenance", "meters"}
MEASURED_KEYS = {"time_ms", "time_ms_stdev", "mean_ms", "iterations", "windows", "energy_per_image_j", "power_w",
                 "dynamic_energy_per_image_j", "method", "energy_error", "energy"}
AGGREGATE_KEYS = {"time_ms", "mean_ms", "energy_per_image_j", "power_w", "time_pct", "energy_pct"}


def _displayed(text: str, value: float) -> None:
    """A number as the table prints it (3 significant digits, or 2 decimals from 10 up) is ``value``."""
    assert float(text) == pytest.approx(value, rel=5e-3, abs=5e-3)


def _check_sums(doc: dict) -> None:
    layers, types, totals = doc["layers"], doc["types"], doc["totals"]
    for part in PARTS:
        directions = ("forward", "backward") if part == "total" else (part,)
        layer_sum = sum(layer[d]["time_ms"] for layer in layers for d in directions)
        assert totals[part]["time_ms"] == pytest.approx(layer_sum)
        assert sum(t[part]["time_ms"] for t in types) == pytest.approx(layer_sum)
        assert sum(t[part]["time_pct"] for t in types) == pytest.approx(100.0)
        for t in types:
            members = [layer for layer in layers if layer["name"] in t["layers"]]
            assert t[part]["time_ms"] == pytest.approx(sum(m[d]["time_ms"] for m in members for d in directions))
    assert sum(layer["time_pct"] for layer in layers) == pytest.approx(100.0)
    for layer in layers:
        assert layer["time_ms"] == pytest.approx(layer["forward"]["time_ms"] + layer["backward"]["time_ms"])
        assert layer["type"] == TYPE_OF[layer["kind"]]
    assert [t["type"] for t in types] == [t for t in TYPES if any(layer["type"] == t for layer in layers)]
    coherence = doc["coherence"]
    assert coherence["sum_of_layers_ms"] == pytest.approx(totals["total"]["time_ms"])
    assert coherence["whole_network_ms"] == pytest.approx(doc["network_step"]["time_ms"])
    assert coherence["ratio"] == pytest.approx(coherence["sum_of_layers_ms"] / coherence["whole_network_ms"])


@pytest.mark.parametrize("framework", ["caffe", "torch"])
def test_every_layer_alone_sums_shares_coherence_schema_and_figure(cli, tmp_path, framework):
    figure = tmp_path / "layers.png"
    proc = cli("layers", "--framework", framework, *LENET, "--meters", "none", "--json", "--plot", str(figure))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == TOP_KEYS
    assert (doc["status"], doc["kind"], doc["framework"], doc["network"], doc["batch_size"]) == (
        "ok", "layers", framework, "lenet", 2)
    spec = resolve_network("lenet")
    assert [(layer["name"], layer["kind"]) for layer in doc["layers"]] == [(l.name, l.type) for l in spec.layers]
    for layer in doc["layers"]:
        for direction in ("forward", "backward"):
            part = layer[direction]
            assert set(part) == MEASURED_KEYS
            assert len(part["windows"]) == 2 and part["time_ms"] > 0
            assert all(w["end"] - w["start"] >= 0.02 for w in part["windows"])
            assert part["energy_per_image_j"] is None  # no meter: unknown, never 0
    for t in doc["types"]:
        assert all(set(t[part]) == AGGREGATE_KEYS for part in PARTS)
    assert doc["energy_unavailable"] == "meters disabled (--meters none)"
    _check_sums(doc)

    # The table is drawn from the same report: its coherence line has the JSON's numbers.
    text = layers_text(doc)
    (line,) = COHERENCE.findall(text)
    for shown, key in zip(line, ("sum_of_layers_ms", "whole_network_ms", "ratio")):
        _displayed(shown, doc["coherence"][key])
    assert f"coherence: {doc['coherence']['text']}" in text
    assert "unavailable [1]" in text and "[1] meters disabled (--meters none)" in text

    # The figure: a real PNG, and its drawn shares are the report's.
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from cnnbench.results.plots import build_layers_figure

    fig = build_layers_figure(doc)
    drawn = {a.get_gid(): a for a in fig.findobj(lambda a: (a.get_gid() or "").startswith("share|"))}
    assert set(drawn) == {f"share|{part}|{t['type']}" for part in PARTS for t in doc["types"]}
    for part in PARTS:
        bottom = 0.0
        for t in doc["types"]:
            rect = drawn[f"share|{part}|{t['type']}"]
            assert rect.get_height() == pytest.approx(t[part]["time_pct"])  # time: no energy here
            assert rect.get_y() == pytest.approx(bottom)
            bottom += rect.get_height()
        assert bottom == pytest.approx(100.0)


def test_table_prints_both_tables_and_the_coherence_line(cli):
    proc = cli("layers", "--framework", "caffe", *LENET, "--meters", "none")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "by layer\n" in out and "by layer type\n" in out
    for layer in resolve_network("lenet").layers:
        assert re.search(rf"^{layer.name}\s", out, re.MULTILINE)
    (line,) = COHERENCE.findall(out)
    summed, whole, ratio = map(float, line)
    assert ratio == pytest.approx(summed / whole, rel=0.02)
    total = next(row for row in out.splitlines() if row.startswith("total "))
    assert "100.0" in total


TINY = """
name = "tiny"
input = [1, 8, 8]
default_batch_size = 2
layers = [
  {name = "pool0", type = "pool", mode = "max", kernel = 2, stride = 2},
  {name = "fc", type = "fc", outputs = 4},
  {name = "loss", type = "softmax_loss"},
]
"""


def test_a_backward_that_training_skips_is_not_timed_and_says_why(cli, tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    proc = cli("layers", "--framework", "caffe", "--network", str(spec), "--device", "cpu", *FAST,
               "--meters", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    pool = doc["layers"][0]
    assert pool["backward"]["skipped"].startswith("a training step runs no backward here")
    assert pool["backward"]["time_ms"] == 0.0 and pool["backward"]["windows"] == []
    assert pool["forward"]["time_ms"] > 0
    assert any("no backward timed for pool0" in note for note in doc["notes"])
    _check_sums(doc)
    assert "skipped" in layers_text(doc)


@pytest.fixture
def fake_meter_host():
    """A host with the built-in meters, the FakeMeter of cnnbench.testing and the caffe engine."""
    from cnnbench.plugins import PluginHost

    # The module whose hook registers FakeMeter: cnnbench.testing itself, or its meters module.
    plugin = next(name for name in ("cnnbench.testing.meters", "cnnbench.testing")
                  if hasattr(_imported(name), "cnnbench_register_meters"))
    return PluginHost(default_plugins=("cnnbench.meters.builtin", plugin, "cnnbench_caffe"), entry_points=False)


def _imported(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def test_energy_per_layer_is_the_meters_watts_times_window_time_over_images(fake_meter_host):
    from cnnbench.meters import MeterSession

    spec = resolve_network("lenet")
    cell = Cell(RunConfig("caffe", "lenet", 2, kernels="native"), spec)
    watts = {"cpu_package0": ("cpu_package", 40.0), "dram0": ("dram", 6.0)}
    with MeterSession.open(["fake"], fake_meter_host, settings={"fake": {"domains": watts}}) as meters:
        doc = run_layers(cell, Measurement(warmup=1, min_time=0.02, repeats=2), fake_meter_host, meters=meters,
                         timeout=300)
    assert doc["status"] == "ok", doc["reason"]
    assert doc["energy_unavailable"] is None
    for layer in doc["layers"]:
        for direction in ("forward", "backward"):
            part = layer[direction]
            seconds = sum(w["end"] - w["start"] for w in part["windows"])
            images = sum(w["iterations"] for w in part["windows"]) * 2
            assert part["energy_per_image_j"] == pytest.approx(46.0 * seconds / images, rel=1e-3)
            assert part["power_w"] == pytest.approx(46.0, rel=1e-3)
            assert part["energy"]["dram0"]["energy_per_image_j"] == pytest.approx(6.0 * seconds / images, rel=1e-3)
        assert layer["energy_per_image_j"] == pytest.approx(
            layer["forward"]["energy_per_image_j"] + layer["backward"]["energy_per_image_j"])
    totals, types = doc["totals"], doc["types"]
    for part in PARTS:
        directions = ("forward", "backward") if part == "total" else (part,)
        summed = sum(layer[d]["energy_per_image_j"] for layer in doc["layers"] for d in directions)
        assert totals[part]["energy_per_image_j"] == pytest.approx(summed)
        assert sum(t[part]["energy_per_image_j"] for t in types) == pytest.approx(summed)
        assert sum(t[part]["energy_pct"] for t in types) == pytest.approx(100.0)
        # constant power: every sum draws the meter's watts too
        assert totals[part]["power_w"] == pytest.approx(46.0, rel=1e-3)
    assert sum(layer["energy_pct"] for layer in doc["layers"]) == pytest.approx(100.0)
    assert doc["coherence"]["energy_ratio"] == pytest.approx(
        totals["total"]["energy_per_image_j"] / doc["network_step"]["energy_per_image_j"])

    text = layers_text(doc)
    assert "J/image" in text and "energy %" in text and "unavailable" not in text
    assert "energy: sum of layers" in text
    from cnnbench.results.plots import build_layers_figure

    drawn = build_layers_figure(doc).findobj(lambda a: a.get_gid() == "share|total|convolution")
    conv = next(t for t in types if t["type"] == "convolution")
    assert drawn[0].get_height() == pytest.approx(conv["total"]["energy_pct"])  # energy shares when metered


def test_rapl_tree_at_known_watts_through_the_cli(cli):
    from cnnbench.testing import CounterDriver, PowercapTree

    with PowercapTree.intel(watts={"package": 40.0, "dram": 6.0}) as tree, CounterDriver(tree):
        proc = cli("layers", "--framework", "caffe", "--network", "lenet", "--batch-size", "2", "--device", "cpu",
                   "--warmup", "1", "--min-time", "0.1", "--repeats", "2", "--meters", "rapl", "--idle", "0",
                   "--json", env={"CNNBENCH_POWERCAP_ROOT": str(tree.root)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    conv2 = next(layer for layer in doc["layers"] if layer["name"] == "conv2")["forward"]
    seconds = sum(w["end"] - w["start"] for w in conv2["windows"])
    images = sum(w["iterations"] for w in conv2["windows"]) * 2
    assert conv2["power_w"] == pytest.approx(46.0, rel=0.05)
    assert conv2["energy_per_image_j"] == pytest.approx(46.0 * seconds / images, rel=0.05)
    assert conv2["method"] == "counter"


@pytest.mark.parametrize("framework", ["fake", "tensorflow"])
def test_an_adapter_without_build_layer_says_so_in_one_line(cli, fake_site, framework):
    if framework == "tensorflow" and importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed: it would be 'unavailable' before anything else")
    proc = cli("layers", "--framework", framework, *LENET, "--meters", "none")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert f"{framework} does not run single layers" in line
    assert "caffe" in line and "torch" in line  # the frameworks that do
    doc = json.loads(cli("layers", "--framework", framework, *LENET, "--meters", "none", "--json").stdout)
    assert doc["status"] == "unsupported" and doc["layers"] == []


def test_the_default_contract_methods_refuse_in_the_worker(fake_site):
    """A third-party adapter that predates the layer methods still loads; the worker says unsupported."""
    from cnnbench.execution.worker import PROTOCOL_VERSION, Channel, run_job

    spec = resolve_network("lenet")
    out = io.StringIO()
    run_job({"protocol": PROTOCOL_VERSION, "mode": "layers", "config": RunConfig("fake", "lenet", 2).to_dict(),
             "measurement": asdict(Measurement(warmup=0, min_time=0.01, repeats=1)),
             "spec": {"data": spec.data, "source": spec.source}}, Channel(out))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[-1]["event"] == "unsupported"
    assert events[-1]["reason"] == "fake does not run single layers"


def test_torch_layer_alone_sees_the_networks_dtype_and_computes_trainings_gradients():
    torch = pytest.importorskip("torch")
    from cnnbench_torch.adapter import TorchAdapter

    spec = resolve_network("lenet")
    config = RunConfig("torch", "lenet", 2, precision="bf16", kernels="native")
    adapter = TorchAdapter()
    adapter.prepare(config)
    relu = adapter.build_layer(spec, "relu1", config)
    assert relu.inputs[0].dtype == torch.bfloat16  # fc1's output under autocast
    conv1 = adapter.build_layer(spec, "conv1", config)
    assert not conv1.inputs[0].requires_grad  # the data gets no gradient in training
    assert [tuple(t.shape) for t in conv1.targets] == [(20, 1, 5, 5), (20,)]
    for handle in (relu, conv1, adapter.build_layer(spec, "loss", config)):
        adapter.step_layer(handle, "forward")
        adapter.step_layer(handle, "backward")
        adapter.step_layer(handle, "backward")  # repeatable without a new forward
        adapter.synchronize(handle)


@pytest.mark.parametrize("args, expected", [
    (["--framework", "nope"], "valid choices: caffe"),
    (["--framework", "caffe", "--network", "nonet"], "unknown network 'nonet'; valid choices: alexnet"),
    (["--framework", "caffe", "--batch-size", "0"], "--batch-size must be a positive whole number, not '0'"),
    (["--framework", "caffe", "--batch-size", "2,4"], "--batch-size takes one value with 'layers'"),
    (["--framework", "caffe", "--precision", "fp8"], "unknown precision 'fp8'; valid choices: fp32, fp16"),
    (["--framework", "caffe", "--plot", "out.gif"], "unknown figure format '.gif'; valid choices: png, svg, pdf"),
    (["--framework", "caffe", "--meters", "nometer"], "unknown meter 'nometer'; valid choices: auto, none"),
    (["--network", "lenet"], "--framework is required (or --preset layers)"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, expected):
    proc = cli("layers", *args, "--meters", "none") if "--meters" not in args else cli("layers", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert expected in line


def test_layers_is_in_the_help(cli):
    proc = cli("layers", "--help")
    assert proc.returncode == 0
    for flag in ("--framework", "--network", "--batch-size", "--device", "--precision", "--kernels", "--threads",
                 "--warmup", "--min-time", "--repeats", "--timeout", "--meters", "--idle", "--json", "--plot"):
        assert flag in proc.stdout


@pytest.mark.parametrize("ratio, coherent", [(1.0, True), (0.9, True), (1.1, True), (0.85, False), (1.2, False)])
def test_coherence_outside_point_nine_to_one_point_one_is_marked_incoherent(ratio, coherent):
    from cnnbench.execution.layer_timing import coherence

    out = coherence({"time_ms": 100.0 * ratio, "energy_per_image_j": None},
                    {"time_ms": 100.0, "energy_per_image_j": None})
    assert out["coherent"] is coherent
    assert ("INCOHERENT" in out["text"]) is not coherent
    assert (out["warning"] is None) is coherent
    if not coherent:
        assert f"time ratio {ratio:.3f}" in out["warning"]


def test_an_energy_ratio_off_alone_is_incoherent_too():
    from cnnbench.execution.layer_timing import coherence

    out = coherence({"time_ms": 100.0, "energy_per_image_j": 1.5}, {"time_ms": 100.0, "energy_per_image_j": 1.0})
    assert not out["coherent"] and "energy ratio 1.500" in out["warning"]


def test_an_incoherent_breakdown_says_so_under_the_table_and_on_the_figure():
    from cnnbench.execution.layer_timing import coherence
    from cnnbench.cli.layers import layers_text
    from cnnbench.results.plots import build_layers_figure

    part = {"time_ms": 1.0, "energy_per_image_j": None, "power_w": None, "energy_pct": None, "time_pct": 100.0}
    layer = {"name": "conv1", "type": "convolution", "forward": dict(part), "backward": dict(part), **part}
    report = {"status": "ok", "framework": "torch", "network": "lenet", "batch_size": 8, "device": "cpu", "precision": "fp32",
              "kernels": "vendor", "threads": 2, "layers": [layer],
              "types": [{"type": "convolution", "layers": ["conv1"], "forward": dict(part), "backward": dict(part),
                         "total": dict(part)}],
              "totals": {"forward": dict(part), "backward": dict(part), "total": dict(part)},
              "coherence": coherence({"time_ms": 130.0, "energy_per_image_j": None},
                                     {"time_ms": 100.0, "energy_per_image_j": None}),
              "notes": []}
    text = layers_text(report)
    assert "INCOHERENT (time ratio 1.300 outside 0.9-1.1)" in text
    assert "warning: incoherent: time ratio 1.300" in text
    fig = build_layers_figure(report)
    footnotes = [t.get_text() for t in fig.findobj(lambda a: a.get_gid() == "note|footnote")]
    assert any("INCOHERENT" in t for t in footnotes), footnotes
