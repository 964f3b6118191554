"""Issue 17's layer types: the spec (shapes, counts, one-line errors naming the valid choices) and the
Caffe-style engine (backward against central differences in float64, forward and a small residual,
squeeze-and-excitation network against PyTorch autograd in float64)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from conftest import ROOT

if importlib.util.find_spec("cnnbench_caffe") is None:
    sys.path.insert(0, str(ROOT / "plugins"))

from cnnbench.config import RunConfig  # noqa: E402
from cnnbench.spec import SpecError  # noqa: E402
from cnnbench.spec import loads_spec  # noqa: E402
from cnnbench.testing import TINY_MODERN_NETWORK  # noqa: E402
from cnnbench_caffe.adapter import CaffeAdapter  # noqa: E402
from cnnbench_caffe.backend import Backend  # noqa: E402
from cnnbench_caffe.layers import Conv  # noqa: E402
from cnnbench_caffe.modern import (  # noqa: E402
    Add, BatchNorm, ChannelScale, DepthwiseConv, GlobalPool, HardSwish, ReLU6, Sigmoid, SiLU)
from test_caffe_engine import conv_params, numeric_check, randomise  # noqa: E402

CPU = Backend("cpu")
BN = {"eps": 1e-5, "momentum": 0.1}


def net(*layers: str, input_shape=(4, 6, 6)) -> str:
    body = ",\n".join("  {" + layer + "}" for layer in layers)
    return (f'name = "t"\ninput = {list(input_shape)}\ndefault_batch_size = 2\nlayers = [\n{body},\n'
            '  {name = "fc", type = "fc", outputs = 3},\n  {name = "loss", type = "softmax_loss"},\n]\n')


# -- the spec -----------------------------------------------------------------------------------------

def test_shapes_and_counts_of_the_new_types():
    spec = loads_spec(net(
        'name = "c1", type = "conv", filters = 8, kernel = 3, pad = 1, bias = false',
        'name = "bn", type = "batchnorm", eps = 1e-3, momentum = 0.01',
        'name = "act", type = "silu"',
        'name = "dw", type = "conv", filters = 8, kernel = 3, pad = 1, groups = 8',
        'name = "h", type = "hardswish"',
        'name = "r6", type = "relu6"',
        'name = "gp", type = "global_pool"',
        'name = "se", type = "fc", outputs = 8',
        'name = "sig", type = "sigmoid"',
        'name = "sc", type = "channel_scale", inputs = ["r6", "sig"]',
        'name = "sum", type = "add", inputs = ["sc", "c1", "bn"]',
        'name = "gp2", type = "global_pool"'))
    by = {layer.name: layer for layer in spec.layers}
    assert by["bn"].output_shape == (8, 6, 6) and by["bn"].param_count == 16 and by["bn"].forward_flops == 0
    assert by["bn"].params == {"eps": 1e-3, "momentum": 0.01}
    # depthwise: one 3x3 filter per channel; multiply-adds = outputs x 9, not x 8 x 9
    assert by["dw"].param_count == 8 * 9 + 8 and by["dw"].forward_flops == 2 * 8 * 36 * 9
    assert by["gp"].output_shape == (8,) and by["gp"].params == {"mode": "avg"}
    assert by["sc"].output_shape == (8, 6, 6) and by["sum"].output_shape == (8, 6, 6)
    for name in ("act", "h", "r6", "sig", "sc", "sum", "gp"):
        assert by[name].param_count == 0 and by[name].forward_flops == 0
    assert loads_spec(net('name = "bn", type = "batchnorm"')).layers[0].params == BN


@pytest.mark.parametrize("layer, message", [
    ('name = "bn", type = "batchnorm", eps = 0', "'eps' must be a positive number, not 0"),
    ('name = "bn", type = "batchnorm", momentum = 1', "'momentum' must be a number in (0, 1), the weight of the "
     "batch's statistics in the running ones (PyTorch's convention), not 1"),
    ('name = "bn", type = "batchnorm", momentum = 0', "'momentum' must be a number in (0, 1)"),
    ('name = "bn", type = "batchnorm", momentum = "x"', "'momentum' must be a number in (0, 1)"),
    ('name = "bn", type = "batchnorm", mode = "x"', "unknown key 'mode' for type 'batchnorm'; valid keys: eps,"),
    ('name = "g", type = "global_pool", mode = "max"', "'mode' must be one of avg, not 'max'"),
    ('name = "a", type = "add"', "type 'add' needs 2 or more inputs"),
    ('name = "a", type = "conv", filters = 2, kernel = 1', None),
    ('name = "s", type = "channel_scale", inputs = ["data", "data"]', "channel_scale needs a C x H x W blob and a "
     "scale of shape (C,), but 'data' is (4, 6, 6) and 'data' is (4, 6, 6)"),
    ('name = "s", type = "swish"', "unknown type 'swish'; valid types: add, batchnorm"),
])
def test_bad_parameters_are_one_line_errors(layer, message):
    if message is None:  # add of two different shapes, below
        text = net(layer, 'name = "b", type = "add", inputs = ["a", "data"]')
        message = "add inputs must have one shape, but 'a' is (2, 6, 6) and 'data' is (4, 6, 6)"
    else:
        text = net(layer)
    with pytest.raises(SpecError) as err:
        loads_spec(text)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_batchnorm_needs_an_image_blob():
    with pytest.raises(SpecError, match=r"type 'batchnorm' needs a 3-D \(C, H, W\) input"):
        loads_spec(net('name = "g", type = "global_pool"', 'name = "bn", type = "batchnorm"'))


# -- the engine: backward against central differences ----------------------------------------------

def images(rng, *shape):
    return rng.standard_normal(shape)


def away_from(rng, points, *shape):
    """Random values at least 0.05 from every kink, where a derivative is undefined."""
    x = rng.uniform(-8, 8, shape)
    for p in points:
        near = np.abs(x - p) < 0.05
        x[near] += 0.1
    return x


CASES = {
    "batchnorm": lambda rng: (lambda x: BatchNorm("b", BN, [x], [True], CPU), [images(rng, 3, 4, 3, 2)]),
    "batchnorm 1x1 maps": lambda rng: (lambda x: BatchNorm("b", BN, [x], [True], CPU), [images(rng, 4, 3, 1, 1)]),
    "add 3 inputs": lambda rng: (lambda a, b, c: Add("a", {}, [a, b, c], [True, False, True], CPU),
                                 [images(rng, 2, 3, 2, 2) for _ in range(3)]),
    "global pool": lambda rng: (lambda x: GlobalPool("g", {"mode": "avg"}, [x], [True], CPU), [images(rng, 2, 3, 3, 5)]),
    "channel scale": lambda rng: (lambda x, s: ChannelScale("s", {}, [x, s], [True, True], CPU),
                                  [images(rng, 2, 3, 2, 4), images(rng, 2, 3)]),
    "relu6": lambda rng: (lambda x: ReLU6("r", {}, [x], [True], CPU), [away_from(rng, (0, 6), 2, 3, 4, 4)]),
    "sigmoid": lambda rng: (lambda x: Sigmoid("s", {}, [x], [True], CPU), [images(rng, 2, 3, 4) * 3]),
    "silu": lambda rng: (lambda x: SiLU("s", {}, [x], [True], CPU), [images(rng, 2, 3, 4) * 3]),
    "hardswish": lambda rng: (lambda x: HardSwish("h", {}, [x], [True], CPU), [away_from(rng, (-3, 3), 2, 3, 4, 4)]),
    "depthwise 3x3 pad 1": lambda rng: (
        lambda x: DepthwiseConv("d", conv_params(4, (3, 3), pad=(1, 1), groups=4, bias=False), [x], [True], CPU),
        [images(rng, 2, 4, 5, 5)]),
    "depthwise 5x3 stride 2, bias": lambda rng: (
        lambda x: DepthwiseConv("d", conv_params(3, (5, 3), (2, 2), (2, 1), groups=3), [x], [True], CPU),
        [images(rng, 2, 3, 7, 6)]),
}


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_central_differences(case):
    rng = np.random.default_rng(3)
    make, inputs = CASES[case](rng)
    layer = randomise(make(*inputs), rng)
    assert numeric_check(layer, inputs, rng) < 1e-7


def test_depthwise_matches_the_grouped_im2col_convolution():
    rng = np.random.default_rng(1)
    x = images(rng, 2, 6, 9, 8)
    params = conv_params(6, (3, 3), (2, 2), (1, 1), groups=6)
    fast, slow = DepthwiseConv("d", params, [x], [True], CPU), Conv("c", params, [x], [True], CPU)
    for key in fast.weights:
        slow.weights[key][...] = fast.weights[key][...] = rng.standard_normal(fast.weights[key].shape)
    fast.forward(), slow.forward()
    np.testing.assert_allclose(fast.output, slow.output, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(fast.output.shape)
    np.testing.assert_allclose(fast.backward(dy)[0], slow.backward(dy)[0], rtol=1e-12, atol=1e-12)
    for key in fast.grads:
        np.testing.assert_allclose(fast.grads[key], slow.grads[key], rtol=1e-12, atol=1e-12)


def test_batchnorm_normalises_with_batch_statistics_and_updates_running_ones_as_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = images(rng, 3, 4, 5, 2) * 3 + 1
    layer = BatchNorm("b", {"eps": 1e-3, "momentum": 0.2}, [x], [False], CPU)
    randomise(layer, rng)
    reference = torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.2).double().train()
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(layer.weights["weight"]))
        reference.bias.copy_(torch.from_numpy(layer.weights["bias"]))
    for _ in range(2):
        layer.forward()
        expected = reference(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(layer.output, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.state["running_mean"], reference.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.state["running_var"], reference.running_var.numpy(), rtol=1e-12)


@pytest.mark.parametrize("case, function", [
    ("relu6", "relu6"), ("sigmoid", "sigmoid"), ("silu", "silu"), ("hardswish", "hardswish")])
def test_activations_forward_as_pytorch(case, function):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.uniform(-10, 10, (2, 3, 5, 5))
    layer = {"relu6": ReLU6, "sigmoid": Sigmoid, "silu": SiLU, "hardswish": HardSwish}[case]("a", {}, [x], [False], CPU)
    layer.forward()
    expected = getattr(torch.nn.functional, function)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer.output, expected, rtol=1e-12, atol=1e-14)


# -- a residual network with squeeze-and-excitation, against PyTorch autograd in float64 -------------

SMALL = TINY_MODERN_NETWORK  # the testing kit's, as the adapters' tests use it


def torch_forward(torch, F, spec, params, data):
    blobs = {"data": data}
    for layer in spec.layers[:-1]:
        xs, p, w = [blobs[name] for name in layer.inputs], layer.params, params.get(layer.name, {})
        t = layer.type
        if t == "conv":
            y = F.conv2d(xs[0], w["weight"], w.get("bias"), p["stride"], p["pad"], groups=p["groups"])
        elif t == "batchnorm":
            y = F.batch_norm(xs[0], None, None, w["weight"], w["bias"], training=True, eps=p["eps"])
        elif t == "fc":
            y = F.linear(xs[0].flatten(1), w["weight"], w.get("bias"))
        elif t == "global_pool":
            y = xs[0].mean((2, 3))
        elif t == "channel_scale":
            y = xs[0] * xs[1][:, :, None, None]
        elif t == "add":
            y = sum(xs[1:], xs[0])
        else:
            y = getattr(F, t)(xs[0])
        blobs[layer.name] = y
    return blobs[spec.logits]


def test_small_modern_net_matches_pytorch_autograd_in_float64():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from cnnbench.execution.verify import make_inputs

    spec = loads_spec(SMALL)
    arrays = make_inputs(spec, 3, seed=1)
    weights: dict = {}
    for key, value in arrays.items():
        if "/" in key:
            layer, kind = key.split("/")
            weights.setdefault(layer, {})[kind] = value
    assert set(weights) == {layer.name for layer in spec.layers if layer.param_count}
    out = CaffeAdapter().verify(spec, RunConfig(framework="caffe", network=spec.name, batch_size=3), weights,
                                arrays["data"], arrays["labels"])
    params = {n: {k: torch.tensor(v, requires_grad=True) for k, v in a.items()} for n, a in weights.items()}
    logits = torch_forward(torch, F, spec, params, torch.tensor(arrays["data"]))
    loss = F.cross_entropy(logits, torch.tensor(arrays["labels"]))
    loss.backward()
    assert abs(out.loss - loss.item()) < 1e-12
    np.testing.assert_allclose(out.logits, logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name, arrays_ in params.items():
        for key, tensor in arrays_.items():
            np.testing.assert_allclose(out.grads[name][key], tensor.grad.numpy(), rtol=1e-8, atol=1e-12,
                                       err_msg=f"{name}/{key}")


# -- a network's own verify tolerances ---------------------------------------------------------------

def test_a_spec_states_its_verify_tolerances_and_bad_ones_are_one_line_errors():
    from cnnbench.execution.verify import TOLERANCES, relative_error, tolerance

    text = net('name = "c", type = "conv", filters = 2, kernel = 1')
    spec = loads_spec("verify_tolerance = {fp32 = 0.05}\n" + text)
    assert tolerance(spec, "fp32") == 0.05 and tolerance(spec, "bf16") == TOLERANCES["bf16"]
    assert tolerance(loads_spec(text), "fp32") == TOLERANCES["fp32"]
    for bad in ("{fp33 = 0.1}", "{fp32 = 0}", "{fp32 = 1.5}", "0.1"):
        with pytest.raises(SpecError, match=r"'verify_tolerance' must be a table of precision = tolerance, a number "
                                            r"in \(0, 1\), for the precisions fp32, fp16, bf16, tf32") as err:
            loads_spec(f"verify_tolerance = {bad}\n" + text)
        assert "\n" not in str(err.value)
    # a gradient that is zero in exact arithmetic is measured against the floor, not its own norm
    assert relative_error([1e-9], [1e-18]) > 1e8
    assert relative_error([1e-9], [1e-18], floor=1e-4) < 1e-4
