"""The TensorFlow adapter: every axis value through the real CLI path (one worker per cell, so the grids
are kept few), and in process: the layout conversions, Caffe's pooling, the step it times."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from conftest import FAST, ROOT  # noqa: E402

if importlib.util.find_spec("cnnbench_tensorflow") is None:
    # an editable install made before the package joined pyproject.toml: use the checkout's, as workers do
    sys.path.append(str(ROOT / "plugins"))

from cnnbench.adapter import Unsupported  # noqa: E402
from cnnbench.config import RunConfig  # noqa: E402
from cnnbench.spec.catalog import resolve_network  # noqa: E402
from cnnbench.spec import loads_spec  # noqa: E402
from cnnbench.execution.verify import TOLERANCES, make_inputs, relative_error  # noqa: E402
from cnnbench_tensorflow.adapter import TensorFlowAdapter  # noqa: E402
from cnnbench_tensorflow.model import SpecNet  # noqa: E402

# Everything the spec has beyond a chain of convolutions: ceil pooling with padding (max and average,
# Caffe's divisor at the edges), a convolution whose pad is not TensorFlow's SAME, LRN, grouped
# convolution, a channel concat, an implicit flatten into fc (rows permuted in NHWC), an explicit flatten
# concatenated with an fc's output, dropout.
TINY = """
name = "tiny"
input = [3, 13, 13]
default_batch_size = 2
layers = [
  {name = "conv1", type = "conv", filters = 8, kernel = 5, stride = 2, pad = 1},
  {name = "relu1", type = "relu"},
  {name = "lrn1", type = "lrn", local_size = 3, alpha = 0.5, beta = 0.75, k = 2.0},
  {name = "pool1", type = "pool", mode = "max", kernel = 3, stride = 2, pad = 1, round = "ceil"},
  {name = "conv2a", type = "conv", input = "pool1", filters = 4, kernel = 1},
  {name = "pool2b", type = "pool", input = "pool1", mode = "avg", kernel = 3, stride = 1, pad = 1},
  {name = "conv2c", type = "conv", input = "pool1", filters = 4, kernel = 3, pad = 1, groups = 2},
  {name = "cat2", type = "concat", inputs = ["conv2a", "pool2b", "conv2c"]},
  {name = "pool3", type = "pool", mode = "avg", kernel = 3, stride = 2, pad = 1, round = "ceil"},
  {name = "fc4", type = "fc", outputs = 10},
  {name = "relu4", type = "relu"},
  {name = "drop4", type = "dropout", ratio = 0.5},
  {name = "flat3", type = "flatten", input = "pool3"},
  {name = "cat4", type = "concat", inputs = ["flat3", "drop4"]},
  {name = "fc5", type = "fc", outputs = 5},
  {name = "loss", type = "softmax_loss"},
]
"""


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def config(**values) -> RunConfig:
    return RunConfig(**{"framework": "tensorflow", "network": "lenet", "batch_size": 2, **values})


def results(proc: subprocess.CompletedProcess) -> dict[tuple, dict]:
    assert proc.returncode == 0, proc.stderr
    return {(r["device"], r["precision"], r["kernels"], r["threads"]): r for r in json.loads(proc.stdout)["results"]}


def reference(spec, arrays):
    """The Caffe-style engine's float64 forward and backward: the reference of ``cnnbench verify``."""
    from cnnbench_caffe.adapter import CaffeAdapter

    weights = {}
    for key, value in arrays.items():
        if "/" in key:
            layer, _, kind = key.partition("/")
            weights.setdefault(layer, {})[kind] = value
    cfg = RunConfig(framework="caffe", network=spec.name, batch_size=len(arrays["labels"]), kernels="native")
    out = CaffeAdapter().verify(spec, cfg, weights, arrays["data"], arrays["labels"])
    return weights, out


def worst_error(got, ref) -> tuple[str, float]:
    errors = {"loss": relative_error(got.loss, ref.loss), "logits": relative_error(got.logits, ref.logits)}
    for layer, kinds in ref.grads.items():
        for kind, array in kinds.items():
            errors[f"{layer}/{kind}"] = relative_error(got.grads[layer][kind], array)
    return max(errors.items(), key=lambda item: item[1])


# -- through the CLI: one worker per cell -----------------------------------------------------------


def test_every_cpu_axis_value_runs_with_the_kernels_it_names(cli):
    """fp32/fp16/bf16 x vendor/native at 1 thread: oneDNN's ops run for vendor and none of them for
    native (the executed graph's op types, and TensorFlow's own oneDNN switch, in the worker)."""
    proc = cli("compare", "--frameworks", "tensorflow", "--network", "lenet", "--batch-size", "2", "--device", "cpu",
               "--precision", "fp32,fp16,bf16", "--kernels", "vendor,native", "--threads", "1", "--meters", "none",
               "--json", *FAST)
    cells = results(proc)
    assert len(cells) == 6
    refused = []
    for (_, precision, kernels, threads), r in cells.items():
        if r["status"] == "unsupported" and kernels == "vendor" and precision in ("fp16", "bf16"):
            # oneDNN has no kernels of this precision for this CPU (no AVX-512 FP16 / BF16, no AMX), and
            # TensorFlow fell back to Eigen's: refused, naming the ops that ran, not run under a wrong label
            assert "oneDNN took none of the convolutions" in r["reason"] and "Conv2D" in r["reason"], r["reason"]
            refused.append(precision)
            continue
        assert r["status"] == "ok", (precision, kernels, r["reason"])
        assert r["time_per_iter_ms"] > 0 and r["images_per_s"] > 0
        worker = r["provenance"]["worker"]
        assert worker["threads_used"] == 1 and worker["intra_op_threads"] == 1 and worker["inter_op_threads"] == 1
        assert worker["tf_enable_onednn_opts"] == ("1" if kernels == "vendor" else "0")
        assert worker["onednn"] is (kernels == "vendor")
        seen = worker["kernels_seen"]
        assert any("Conv2D" in op for op in seen), seen
        if kernels == "vendor":
            assert "_MklNativeFusedConv2D" in seen and "Conv2D" not in seen, seen
        else:
            # Eigen's own: Conv2D or _FusedConv2D (with bias), Conv2DBackpropFilter
            assert "Conv2DBackpropFilter" in seen and not any(op.startswith("_Mkl") for op in seen), seen
        assert worker["layout"] == "NHWC" and worker["xla"] is False
    flags = cpu_flags()
    if "amx_bf16" in flags or "avx512_bf16" in flags:
        assert "bf16" not in refused
    if "amx_fp16" in flags or "avx512_fp16" in flags:
        assert "fp16" not in refused


def test_xla_option_default_threads_and_what_the_gpu_cannot_do(cli):
    proc = cli("compare", "--frameworks", "tensorflow", "--network", "lenet", "--batch-size", "2",
               "--device", "cpu,cuda", "--kernels", "vendor,native", "--option", "xla=on", "--meters", "none",
               "--json", *FAST)
    cells = results(proc)
    from cnnbench.system.provenance import usable_cores

    threads = usable_cores()[0]  # no --threads: the physical cores cnnbench may use, as for every framework
    for kernels in ("vendor", "native"):
        r = cells[("cpu", "fp32", kernels, threads)]
        assert r["status"] == "ok", r["reason"]
        assert r["options"] == {"xla": "on"}
        worker = r["provenance"]["worker"]
        assert worker["xla"] is True
        # the whole step is one XLA computation: none of TensorFlow's own convolution kernels runs
        assert not any("Conv" in op for op in worker["kernels_seen"]), worker["kernels_seen"]
        assert worker["threads_used"] == threads
    native_gpu = cells[("cuda", "fp32", "native", threads)]
    assert native_gpu["status"] == "unsupported" and "no convolution without cuDNN" in native_gpu["reason"]
    gpu = cells[("cuda", "fp32", "vendor", threads)]
    if not tf.config.list_physical_devices("GPU"):
        assert gpu["status"] == "unsupported" and "CUDA is not available to tensorflow" in gpu["reason"]


def test_verify_matches_the_reference_on_lenet_and_on_everything_the_spec_has(cli, tmp_path):
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(TINY)
    for network in ("lenet", str(tiny)):
        proc = cli("verify", "--frameworks", "caffe,tensorflow", "--network", network, "--batch-size", "3", "--json")
        assert proc.returncode == 0, proc.stderr
        _, ours = json.loads(proc.stdout)["results"]
        assert ours["status"] == "ok", ours["reason"]
        spec = resolve_network(network)
        assert set(ours["errors"]) == {"loss", "logits"} | {k for k in make_inputs(spec, 1) if "/" in k}
        # fp32 against float64: rounding only, far below the tolerance
        assert max(ours["errors"].values()) < 1e-5 < TOLERANCES["fp32"], ours["errors"]


def test_availability_and_capabilities_do_not_import_tensorflow():
    code = textwrap.dedent("""
        import sys
        from cnnbench_tensorflow.adapter import TensorFlowAdapter as A
        a = A.availability()
        assert a.available and a.version, a
        cpu, gpu = A.capabilities("cpu"), A.capabilities("cuda")
        assert cpu.kernels == ("vendor", "native") and "tf32" in cpu.unsupported
        assert gpu.kernels == ("vendor",) and "cuDNN" in gpu.unsupported["native"]
        assert A.options["xla"][0] == ("on", "off")
        assert "tensorflow" not in sys.modules
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


# -- in process (TensorFlow was imported above, with oneDNN on) --------------------------------------


def test_native_kernels_need_tensorflow_not_yet_imported():
    with pytest.raises(RuntimeError, match="TF_ENABLE_ONEDNN_OPTS=0 before tensorflow is imported"):
        TensorFlowAdapter().prepare(config(kernels="native"))
    with pytest.raises(Unsupported, match="no convolution without cuDNN"):
        TensorFlowAdapter().prepare(config(device="cuda", kernels="native"))
    with pytest.raises(Unsupported, match="TF32"):
        TensorFlowAdapter().prepare(config(precision="tf32"))


@pytest.mark.parametrize("layout, xla", [("NHWC", False), ("NCHW", False), ("NHWC", True), ("NCHW", True)])
def test_both_layouts_compute_the_reference_function(layout, xla, monkeypatch):
    """NHWC (the CPU's) and NCHW (the GPU's for fp32), compiled by TensorFlow or XLA: the same function."""
    spec = loads_spec(TINY)
    arrays = make_inputs(spec, 3, seed=1)
    weights, ref = reference(spec, arrays)
    adapter = TensorFlowAdapter()
    cfg = config(network="tiny", options=(("xla", "on" if xla else "off"),))
    adapter.prepare(cfg)
    monkeypatch.setattr(adapter, "_layout", lambda config: layout)
    got = adapter.verify(spec, cfg, weights, arrays["data"], arrays["labels"])
    name, error = worst_error(got, ref)
    assert error < 1e-5, (name, error)


def test_fc_rows_are_permuted_once_at_load_and_no_transpose_runs():
    spec = resolve_network("lenet")
    net = SpecNet(spec, "NHWC")
    # fc1 reads pool2 (50 x 4 x 4): NHWC flattens it in H, W, C order
    order = net.row_order["fc1"]
    assert order is not None and order[:3].tolist() == [0, 16, 32] and net.row_order["fc2"] is None
    canonical = np.random.default_rng(0).standard_normal((500, 800))
    assert np.array_equal(net.to_canonical("fc1", "weight", net.to_framework("fc1", "weight", canonical)), canonical)
    graph = tf.function(lambda x: net(x, training=False)).get_concrete_function(tf.TensorSpec([2, 28, 28, 1]))
    assert not [op for op in graph.graph.get_operations() if op.type == "Transpose"]
    # and the permutation is what makes it right: without it the logits move far off
    arrays = make_inputs(spec, 2)
    weights, ref = reference(spec, arrays)
    x = arrays["data"].transpose(0, 2, 3, 1).astype(np.float32)
    net.load(weights)
    assert relative_error(net(x, training=False).numpy(), ref.logits) < 1e-5
    net.row_order["fc1"] = None
    net.load(weights)
    assert relative_error(net(x, training=False).numpy(), ref.logits) > 0.1


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size, kernel, stride, pad, rounding", [
    (7, 3, 2, 0, "ceil"), (8, 3, 2, 0, "ceil"), (8, 3, 2, 1, "ceil"), (7, 3, 2, 1, "ceil"), (6, 2, 2, 1, "ceil"),
    (9, 3, 3, 1, "floor"), (8, 3, 2, 1, "floor"), (5, 3, 1, 1, "ceil"), (10, 4, 3, 2, "ceil"), (4, 3, 2, 0, "floor"),
])
def test_pooling_gives_caffes_sizes_and_values(mode, size, kernel, stride, pad, rounding):
    spec = loads_spec(f"""
name = "pool"
input = [2, {size}, {size}]
default_batch_size = 2
layers = [
  {{name = "pool", type = "pool", mode = "{mode}", kernel = {kernel}, stride = {stride}, pad = {pad}, round = "{rounding}"}},
  {{name = "fc", type = "fc", outputs = 3}},
  {{name = "loss", type = "softmax_loss"}},
]
""")
    arrays = make_inputs(spec, 2, seed=3)
    weights, ref = reference(spec, arrays)
    net = SpecNet(spec, "NHWC")
    net.load(weights)
    x = tf.constant(arrays["data"].transpose(0, 2, 3, 1).astype(np.float32))
    pooled = net.plan[0][2](x)
    assert tuple(pooled.shape[1:]) == spec.layer("pool").output_shape[1:] + (2,)
    assert relative_error(net(x, training=False).numpy(), ref.logits) < 1e-6


def test_step_is_forward_loss_and_every_gradient_without_an_update():
    adapter = TensorFlowAdapter()
    cfg = config(batch_size=4)
    adapter.prepare(cfg)
    spec = resolve_network("lenet")
    model = adapter.build(spec, cfg)
    before = [v.numpy().copy() for v in model.net.variables_in_order]
    adapter.step(model)
    adapter.synchronize(model)
    loss, grads = model.outputs
    assert np.isfinite(loss.numpy()) and len(grads) == len(before) == 8
    assert sum(int(np.prod(g.shape)) for g in grads) == spec.param_count
    assert all(np.isfinite(g.numpy()).all() and np.abs(g.numpy()).sum() > 0 for g in grads)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.net.variables_in_order))


@pytest.fixture
def any_kernels(monkeypatch):
    """The step's arithmetic whichever kernels run it: on a CPU without AVX-512 FP16 / BF16 or AMX oneDNN
    leaves half-precision convolutions to Eigen, which the adapter refuses to call "vendor" (tested through
    the CLI above); these tests are about what is computed, so they skip that check."""
    monkeypatch.setattr(TensorFlowAdapter, "_check_kernels", lambda self, config, seen: None)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_optimizer_update_is_an_option(precision, any_kernels):
    adapter = TensorFlowAdapter()
    cfg = config(batch_size=4, optimizer=True, precision=precision)
    adapter.prepare(cfg)
    model = adapter.build(resolve_network("lenet"), cfg)
    adapter.step(model)  # the first step traces the graph (and updates already)
    before = [v.numpy().copy() for v in model.net.variables_in_order]
    adapter.step(model)
    adapter.synchronize(model)
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(before, model.net.variables_in_order))


@pytest.mark.parametrize("precision, dtype", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_half_precisions_compute_in_half_and_keep_float32_variables_and_loss(precision, dtype, any_kernels):
    adapter = TensorFlowAdapter()
    cfg = config(precision=precision)
    adapter.prepare(cfg)
    spec = resolve_network("lenet")
    model = adapter.build(spec, cfg)
    adapter.step(model)
    graph = model.step.get_concrete_function(model.x, model.y).graph
    convs = [op for op in graph.get_operations() if op.type == "Conv2D"]
    assert convs and all(op.get_attr("T").name == dtype for op in convs)
    loss, grads = model.outputs
    assert loss.dtype == tf.float32 and all(g.dtype == tf.float32 for g in grads)
    # and it is still the reference function, within the precision's tolerance
    arrays = make_inputs(spec, 2)
    weights, ref = reference(spec, arrays)
    got = adapter.verify(spec, cfg, weights, arrays["data"], arrays["labels"])
    name, error = worst_error(got, ref)
    assert error < TOLERANCES[precision], (name, error)


def test_every_network_builds_in_both_layouts_with_the_spec_shapes():
    for name in ("alexnet", "googlenet"):
        spec = resolve_network(name)
        for layout in ("NHWC", "NCHW"):
            net = SpecNet(spec, layout)
            assert sum(int(np.prod(v.shape)) for v in net.variables_in_order) == spec.param_count
        c, h, w = spec.input_shape
        logits = tf.function(lambda x: net(x, training=False))(tf.zeros([1, c, h, w]))
        assert tuple(logits.shape) == (1, spec.num_classes)
