"""The Caffe-style engine: every layer's backward against finite differences, forwards and whole
networks against PyTorch, and the adapter through the real worker."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import numpy as np
import pytest

from conftest import ROOT

if importlib.util.find_spec("cnnbench_caffe") is None:
    # An editable install made before pyproject.toml mapped cnnbench_caffe: use the checkout's plugins/,
    # as a bare checkout does (PYTHONPATH=.:plugins).
    sys.path.insert(0, str(ROOT / "plugins"))

from cnnbench.adapter import Unsupported  # noqa: E402
from cnnbench.config import RunConfig  # noqa: E402
from cnnbench.spec.catalog import resolve_network  # noqa: E402
from cnnbench.spec import loads_spec  # noqa: E402
from cnnbench_caffe.adapter import CaffeAdapter  # noqa: E402
from cnnbench_caffe.backend import Backend  # noqa: E402
from cnnbench_caffe.engine import Net  # noqa: E402
from cnnbench_caffe.layers import FC, LRN, Concat, Conv, Dropout, Pool, ReLU, SoftmaxLoss  # noqa: E402

CPU = Backend("cpu")


def conv_params(filters, kernel, stride=(1, 1), pad=(0, 0), groups=1, bias=True):
    return {"filters": filters, "kernel": kernel, "stride": stride, "pad": pad, "groups": groups, "bias": bias}


def pool_params(mode, kernel, stride, pad=(0, 0), round="floor"):
    return {"mode": mode, "kernel": kernel, "stride": stride, "pad": pad, "round": round}


LRN_PARAMS = {"local_size": 5, "alpha": 0.5, "beta": 0.75, "k": 2.0}


def randomise(layer, rng):
    for array in layer.weights.values():
        array[...] = rng.standard_normal(array.shape)
    return layer


# -- backward against central differences (float64, tiny shapes) --------------------------------------

def numeric_check(layer, inputs, rng, eps=1e-6):
    """Largest relative difference between the layer's gradients of sum(output * r) and central
    differences of it, over every input entry that needs a gradient and every parameter entry."""
    loss = isinstance(layer, SoftmaxLoss)
    layer.forward()
    r = np.ones(()) if loss else rng.standard_normal(layer.output.shape)
    analytic = [None if dx is None else np.array(dx) for dx in layer.backward(r)]
    analytic_params = {key: np.array(grad) for key, grad in layer.grads.items()}

    def objective():
        layer.forward()
        return float(np.sum(layer.output * r))

    def numeric(array):
        grad = np.zeros(array.shape)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + eps
            plus = objective()
            array[index] = saved - eps
            minus = objective()
            array[index] = saved
            grad[index] = (plus - minus) / (2 * eps)
        return grad

    worst = 0.0
    pairs = [(x, dx) for x, dx, needed in zip(inputs, analytic, layer.grad_inputs) if needed]
    pairs += [(layer.weights[key], analytic_params[key]) for key in layer.weights]
    assert pairs, "nothing to check"
    for array, grad in pairs:
        expected = numeric(array)
        worst = max(worst, np.abs(expected - grad).max() / max(np.abs(expected).max(), 1e-12))
    return worst


def images(rng, *shape):
    return rng.standard_normal(shape)


GRADIENT_CASES = {
    "conv stride/pad/groups": lambda rng: (
        lambda x: Conv("c", conv_params(6, (3, 2), (2, 1), (1, 2), groups=2), [x], [True], CPU),
        [images(rng, 2, 4, 7, 6)]),
    "conv no bias, 1x1": lambda rng: (
        lambda x: Conv("c", conv_params(3, (1, 1), bias=False), [x], [True], CPU), [images(rng, 2, 2, 3, 3)]),
    "max pool ceil pad": lambda rng: (
        lambda x: Pool("p", pool_params("max", (3, 3), (2, 2), (1, 1), "ceil"), [x], [True], CPU),
        [images(rng, 2, 3, 6, 7)]),
    "max pool ceil no pad": lambda rng: (
        lambda x: Pool("p", pool_params("max", (3, 2), (2, 2), round="ceil"), [x], [True], CPU),
        [images(rng, 1, 2, 6, 7)]),
    "avg pool ceil pad": lambda rng: (
        lambda x: Pool("p", pool_params("avg", (3, 3), (2, 2), (1, 1), "ceil"), [x], [True], CPU),
        [images(rng, 2, 3, 6, 7)]),
    "avg pool floor": lambda rng: (
        lambda x: Pool("p", pool_params("avg", (2, 3), (1, 2)), [x], [True], CPU), [images(rng, 1, 2, 5, 6)]),
    "lrn": lambda rng: (lambda x: LRN("n", LRN_PARAMS, [x], [True], CPU), [images(rng, 2, 7, 3, 2)]),
    "lrn size 3": lambda rng: (lambda x: LRN("n", dict(LRN_PARAMS, local_size=3), [x], [True], CPU),
                               [images(rng, 1, 4, 2, 2)]),
    "fc with 3-D input": lambda rng: (
        lambda x: FC("f", {"outputs": 5, "bias": True}, [x], [True], CPU), [images(rng, 3, 2, 3, 2)]),
    "fc 1-D input, no bias": lambda rng: (
        lambda x: FC("f", {"outputs": 4, "bias": False}, [x], [True], CPU), [images(rng, 3, 6)]),
    # away from the kink at 0, where the derivative is undefined
    "relu": lambda rng: (lambda x: ReLU("r", {}, [x], [True], CPU),
                         [np.sign(images(rng, 2, 3, 4)) * (0.1 + np.abs(images(rng, 2, 3, 4)))]),
    "concat": lambda rng: (lambda a, b: Concat("c", {}, [a, b], [True, True], CPU),
                           [images(rng, 2, 3, 2, 2), images(rng, 2, 1, 2, 2)]),
    "softmax loss": lambda rng: (
        lambda x: SoftmaxLoss("l", {}, [x], [True], CPU, labels=np.array([2, 0, 3])), [images(rng, 3, 4) * 3]),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_backward_matches_central_differences(case):
    rng = np.random.default_rng(7)
    make, inputs = GRADIENT_CASES[case](rng)
    layer = randomise(make(*inputs), rng)
    assert numeric_check(layer, inputs, rng) < 1e-7


def test_max_pool_ties_go_to_the_first_maximum_in_caffe_order():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 3, 4] = -1.0
    layer = Pool("p", pool_params("max", (2, 2), (2, 2), (1, 1)), [x], [True], CPU)
    layer.forward()
    dx = layer.backward(np.ones(layer.output.shape))[0][0, 0]
    # Windows start at -1 (the pad), so the first in-image element of each window is at an even index
    # (0, 1, 3 for the clipped first/last windows); each one takes its window's whole gradient.
    expected = np.zeros((5, 5))
    for row in (0, 1, 3):
        for col in (0, 1, 3):
            expected[row, col] = 1
    assert np.array_equal(dx, expected)


def test_input_gradients_are_skipped_where_not_needed():
    x = images(np.random.default_rng(0), 2, 3, 5, 5)
    layer = randomise(Conv("c", conv_params(4, (3, 3)), [x], [False], CPU), np.random.default_rng(1))
    layer.forward()
    assert layer.backward(np.ones(layer.output.shape)) == [None]
    assert np.abs(layer.grads["weight"]).sum() > 0


def test_dropout_scales_kept_units_and_is_the_identity_outside_training():
    x = np.ones((4, 1000))
    layer = Dropout("d", {"ratio": 0.3}, [x], [True], CPU, train=True, seed=3)
    layer.forward()
    kept = layer.output != 0
    assert abs(1 - kept.mean() - 0.3) < 0.03
    assert np.allclose(layer.output[kept], 1 / 0.7)
    dy = np.arange(4000.0).reshape(4, 1000)
    assert np.array_equal(layer.backward(dy)[0], dy * layer.output)
    test = Dropout("d", {"ratio": 0.3}, [x], [True], CPU, train=False)
    test.forward()
    assert np.array_equal(test.output, x) and np.array_equal(test.backward(dy)[0], dy)


# -- forward against PyTorch ------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


FORWARD_CASES = {
    "conv": (lambda x: Conv("c", conv_params(6, (3, 5), (2, 1), (1, 2), groups=2), [x], [False], CPU),
             lambda F, t, w: F.conv2d(t, w["weight"], w["bias"], stride=(2, 1), padding=(1, 2), groups=2),
             (2, 4, 11, 9)),
    "max pool ceil": (lambda x: Pool("p", pool_params("max", (3, 3), (2, 2), (1, 1), "ceil"), [x], [False], CPU),
                      lambda F, t, w: F.max_pool2d(t, 3, 2, 1, ceil_mode=True), (2, 3, 10, 13)),
    "avg pool ceil": (lambda x: Pool("p", pool_params("avg", (3, 3), (2, 2), (1, 1), "ceil"), [x], [False], CPU),
                      lambda F, t, w: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=True),
                      (2, 3, 10, 13)),
    "avg pool floor": (lambda x: Pool("p", pool_params("avg", (2, 2), (2, 2)), [x], [False], CPU),
                       lambda F, t, w: F.avg_pool2d(t, 2, 2), (2, 3, 9, 8)),
    "lrn": (lambda x: LRN("n", LRN_PARAMS, [x], [False], CPU),
            lambda F, t, w: F.local_response_norm(t, 5, alpha=0.5, beta=0.75, k=2.0), (2, 9, 4, 5)),
    "fc": (lambda x: FC("f", {"outputs": 7, "bias": True}, [x], [False], CPU),
           lambda F, t, w: F.linear(t.flatten(1), w["weight"], w["bias"]), (3, 4, 3, 2)),
}


@pytest.mark.parametrize("case", FORWARD_CASES)
def test_forward_matches_pytorch(case):
    torch = _torch()
    import torch.nn.functional as F

    make, reference, shape = FORWARD_CASES[case]
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(np.float32)
    layer = randomise(make(x), rng)
    layer.forward()
    with torch.no_grad():
        expected = reference(F, torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in layer.weights.items()})
    assert layer.output.shape == tuple(expected.shape)
    np.testing.assert_allclose(layer.output, expected.numpy(), rtol=1e-5, atol=1e-5)


# -- whole networks against PyTorch autograd ----------------------------------------------------------

def torch_reference(spec, weights, data, labels):
    """Loss, logits and gradients of the spec's network by PyTorch autograd in float64."""
    torch = _torch()
    import torch.nn.functional as F

    params = {name: {key: torch.tensor(value, requires_grad=True) for key, value in arrays.items()}
              for name, arrays in weights.items()}
    blobs = {"data": torch.tensor(data)}
    for layer in spec.layers:
        xs, p, w = [blobs[name] for name in layer.inputs], layer.params, params.get(layer.name, {})
        if layer.type == "conv":
            y = F.conv2d(xs[0], w["weight"], w.get("bias"), p["stride"], p["pad"], groups=p["groups"])
        elif layer.type == "pool" and p["mode"] == "max":
            y = F.max_pool2d(xs[0], p["kernel"], p["stride"], p["pad"], ceil_mode=p["round"] == "ceil")
        elif layer.type == "pool":
            y = F.avg_pool2d(xs[0], p["kernel"], p["stride"], p["pad"], ceil_mode=p["round"] == "ceil",
                             count_include_pad=True)
        elif layer.type == "fc":
            y = F.linear(xs[0].flatten(1), w["weight"], w.get("bias"))
        elif layer.type == "lrn":
            y = F.local_response_norm(xs[0], p["local_size"], p["alpha"], p["beta"], p["k"])
        elif layer.type == "concat":
            y = torch.cat(xs, 1)
        elif layer.type == "relu":
            y = F.relu(xs[0])
        elif layer.type == "flatten":
            y = xs[0].flatten(1)
        elif layer.type == "dropout":
            y = xs[0]
        elif layer.type == "softmax_loss":
            logits, loss = xs[0], F.cross_entropy(xs[0], torch.tensor(labels))
            continue
        blobs[layer.name] = y
    loss.backward()
    grads = {name: {key: t.grad.numpy() for key, t in arrays.items()} for name, arrays in params.items()}
    return loss.item(), logits.detach().numpy(), grads


def canonical_weights(spec, seed):
    """Seeded float64 weights in the canonical layout, from the spec alone (as the host makes them)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for layer in spec.layers:
        p = layer.params
        if layer.type == "conv":
            shape = (p["filters"], layer.input_shapes[0][0] // p["groups"], *p["kernel"])
        elif layer.type == "fc":
            shape = (p["outputs"], math.prod(layer.input_shapes[0]))
        else:
            continue
        scale = 1 / math.sqrt(math.prod(shape[1:]))
        weights[layer.name] = {"weight": rng.uniform(-scale, scale, shape)}
        if p["bias"]:
            weights[layer.name]["bias"] = rng.uniform(-scale, scale, shape[:1])
    return weights


def relative_errors(out, reference):
    """Largest |a - b| / largest |b| per tensor, as `cnnbench verify` reports it."""
    loss, logits, grads = reference
    errors = {"loss": abs(out.loss - loss) / abs(loss), "logits": np.abs(out.logits - logits).max() / np.abs(logits).max()}
    assert set(out.grads) == set(grads)
    for name, arrays in grads.items():
        assert set(out.grads[name]) == set(arrays), name
        for key, expected in arrays.items():
            got = out.grads[name][key]
            assert got.dtype == np.float64 and got.shape == expected.shape
            errors[f"{name}.{key}"] = np.abs(got - expected).max() / np.abs(expected).max()
    return errors


def verify_against_torch(spec, batch, seed=5):
    rng = np.random.default_rng(seed)
    weights = canonical_weights(spec, seed)
    data = rng.standard_normal((batch, *spec.input_shape))
    labels = rng.integers(0, spec.num_classes, batch)
    config = RunConfig(framework="caffe", network=spec.name, batch_size=batch)
    out = CaffeAdapter().verify(spec, config, weights, data, labels)
    assert out.logits.dtype == np.float64 and out.logits.shape == (batch, spec.num_classes)
    return relative_errors(out, torch_reference(spec, weights, data, labels))


def test_verify_lenet_matches_pytorch_autograd_in_float64():
    errors = verify_against_torch(resolve_network("lenet"), batch=4)
    print("\nlenet verify, max relative error vs PyTorch float64:",
          ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert max(errors.values()) < 1e-10, errors


SMALL = """
name = "small"
input = [3, 13, 12]
default_batch_size = 2
layers = [
  {name = "pool0", type = "pool", mode = "avg", kernel = 2, stride = 1},
  {name = "conv1", type = "conv", filters = 6, kernel = 3, stride = 2, pad = 1},
  {name = "relu1", type = "relu"},
  {name = "conv2", type = "conv", filters = 4, kernel = [3, 2], pad = [1, 0], groups = 2, bias = false},
  {name = "pool1", type = "pool", mode = "avg", kernel = 3, stride = 2, pad = 1, round = "ceil"},
  {name = "pool2", type = "pool", mode = "max", kernel = 2, stride = 2, round = "ceil"},
  {name = "flat", type = "flatten"},
  {name = "drop", type = "dropout", ratio = 0.5},
  {name = "fc1", type = "fc", outputs = 5},
  {name = "loss", type = "softmax_loss"},
]
"""


def test_verify_small_net_with_groups_avg_pool_dropout_and_a_paramless_first_layer():
    errors = verify_against_torch(loads_spec(SMALL), batch=3)
    assert max(errors.values()) < 1e-10, errors


BRANCHING = """
name = "branching"
input = [3, 8, 8]
default_batch_size = 2
layers = [
  {name = "conv0", type = "conv", filters = 4, kernel = 3, pad = 1},
  {name = "relu0", type = "relu"},
  {name = "a", type = "conv", filters = 3, kernel = 1, input = "relu0"},
  {name = "b", type = "conv", filters = 2, kernel = 3, pad = 1, input = "relu0"},
  {name = "cat", type = "concat", inputs = ["a", "b"]},
  {name = "norm", type = "lrn", local_size = 3, alpha = 0.3, beta = 0.75, k = 1.0},
  {name = "pool", type = "pool", mode = "max", kernel = 3, stride = 2, round = "ceil"},
  {name = "fc", type = "fc", outputs = 6},
  {name = "loss", type = "softmax_loss"},
]
"""


def test_branches_concat_and_lrn_through_the_net_match_pytorch():
    # relu0 is read by two convolutions, whose gradients the net must sum (Caffe's Split layer)
    errors = verify_against_torch(loads_spec(BRANCHING), batch=2)
    assert max(errors.values()) < 1e-10, errors


def test_shared_columns_relowering_gives_the_same_gradients():
    spec = resolve_network("lenet")
    nets = []
    for budget in (1 << 30, 0):
        net = Net(spec, 3, CPU, np.float64, train=False, column_budget=budget)
        net.init_weights(0)
        net.synthetic_input(1)
        net.step()
        nets.append(net)
    kept, shared = nets
    assert kept.layers[0][0].relower is False and shared.layers[0][0].relower is True
    for name, arrays in kept.gradients().items():
        for key, grad in arrays.items():
            assert np.array_equal(grad, shared.gradients()[name][key])


@pytest.mark.parametrize("kernel, stride, pad, rounding", [
    (3, 2, 0, "ceil"), (3, 2, 1, "ceil"), (2, 2, 1, "ceil"), (3, 3, 2, "ceil"), (3, 2, 1, "floor"), (5, 3, 2, "ceil"),
])
def test_pooled_sizes_follow_the_spec(kernel, stride, pad, rounding):
    for size in range(5, 12):
        spec = loads_spec(f"""
name = "p"
input = [1, {size}, {size + 1}]
default_batch_size = 1
layers = [
  {{name = "pool", type = "pool", mode = "max", kernel = {kernel}, stride = {stride}, pad = {pad}, round = "{rounding}"}},
  {{name = "fc", type = "fc", outputs = 2}},
  {{name = "loss", type = "softmax_loss"}},
]""")
        Net(spec, 1, CPU, np.float32)  # asserts the engine's shapes equal the spec's


# -- the adapter --------------------------------------------------------------------------------------

def build(**config):
    cfg = RunConfig(framework="caffe", network="lenet", batch_size=config.pop("batch_size", 4), kernels="native",
                    **config)
    adapter = CaffeAdapter()
    adapter.prepare(cfg)
    return adapter, adapter.build(resolve_network("lenet"), cfg), cfg


def test_step_is_forward_loss_backward_for_every_parameter_without_update():
    adapter, model, _ = build()
    before = {name: {k: v.copy() for k, v in arrays.items()} for name, arrays in model.net.parameters().items()}
    adapter.step(model)
    adapter.synchronize(model)
    grads = model.net.gradients()
    assert sum(g.size for arrays in grads.values() for g in arrays.values()) == resolve_network("lenet").param_count
    assert all(np.isfinite(g).all() and np.abs(g).sum() > 0 for arrays in grads.values() for g in arrays.values())
    assert model.net.data.dtype == np.float32 and math.isfinite(model.net.loss)
    for name, arrays in model.net.parameters().items():
        for key, value in arrays.items():
            assert np.array_equal(value, before[name][key])
    peak, kind = adapter.peak_memory(model)
    assert peak > 0 and "RSS" in kind


def test_optimizer_update_is_an_option():
    adapter, model, _ = build(optimizer=True)
    before = model.net.parameters()["fc2"]["weight"].copy()
    adapter.step(model)
    assert not np.array_equal(before, model.net.parameters()["fc2"]["weight"])


def test_threads_go_to_the_blas_pool_and_are_reported():
    pytest.importorskip("threadpoolctl")
    adapter, _, cfg = build(threads=1)
    assert adapter.actual_threads(cfg) == 1
    inventory = adapter.inventory(cfg)
    assert inventory["numpy"] == np.__version__ and inventory["blas_pools"][0]["num_threads"] == 1


def test_verify_in_fp32_when_asked():
    spec = resolve_network("lenet")
    rng = np.random.default_rng(0)
    weights, data, labels = canonical_weights(spec, 0), rng.standard_normal((2, 1, 28, 28)), np.array([3, 7])
    config = RunConfig(framework="caffe", network="lenet", batch_size=2)
    exact = CaffeAdapter().verify(spec, config, weights, data, labels)
    adapter = CaffeAdapter()
    adapter.verify_float64 = False
    single = adapter.verify(spec, config, weights, data, labels)
    assert single.logits.dtype == np.float64
    assert 0 < np.abs(single.logits - exact.logits).max() < 1e-4
    with pytest.raises(Unsupported, match="fp16"):
        adapter.verify(spec, RunConfig(framework="caffe", network="lenet", batch_size=2, precision="fp16"),
                       weights, data, labels)


def test_capabilities_are_native_fp32_with_reasons():
    for kind in ("cpu", "cuda"):
        caps = CaffeAdapter.capabilities(kind)
        assert caps.kernels == ("native",) and caps.precisions == ("fp32",)
        assert "im2col + GEMM" in caps.unsupported["vendor"]
        assert {"fp16", "bf16", "tf32"} <= set(caps.unsupported)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cuda_without_cupy_is_unsupported_with_the_install_hint():
    with pytest.raises(Unsupported, match="pip install cupy-cuda12x"):
        CaffeAdapter().prepare(RunConfig(framework="caffe", network="lenet", batch_size=2, device="cuda",
                                         kernels="native"))


# -- through the real worker ----------------------------------------------------------------------------

def run_json(cli, *args, refused=False):
    proc = cli("run", "--framework", "caffe", "--network", "lenet", "--batch-size", "4", "--warmup", "1",
               "--min-time", "0.05", "--repeats", "2", "--json", *args)
    # a run whose one cell is refused measured nothing: exit 1, and stderr says so
    assert proc.returncode == (1 if refused else 0), proc.stderr
    assert ("nothing was measured" in proc.stderr) is refused, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    return result


def test_run_through_the_worker_is_ok(cli):
    result = run_json(cli, "--device", "cpu", "--kernels", "native")
    assert result["status"] == "ok", result["reason"]
    assert result["framework"] == "caffe" and result["images_per_s"] > 0
    worker = result["provenance"]["worker"]
    assert worker["numpy"] == np.__version__


def test_vendor_kernels_are_unsupported_with_the_reason(cli):
    result = run_json(cli, "--device", "cpu", "--kernels", "vendor", refused=True)
    assert result["status"] == "unsupported"
    assert "only its own im2col + GEMM kernels" in result["reason"]


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cuda_run_without_cupy_is_unsupported_with_the_install_hint(cli):
    result = run_json(cli, "--device", "cuda", "--kernels", "native", refused=True)
    assert result["status"] == "unsupported"
    assert "pip install cupy-cuda12x" in result["reason"]


def test_caffe_version_is_cnnbench_engine_with_numpy_beside():
    import numpy

    import cnnbench
    from cnnbench_caffe.adapter import CaffeAdapter

    version = CaffeAdapter.availability().version
    assert version.startswith(f"cnnbench {cnnbench.__version__} (numpy {numpy.__version__}"), version
