"""The JAX adapter: the adapter contract through cnnbench.testing, a run through the real command line,
and in process the layers the contract's tiny network does not have.

Run from this folder after ``pip install -e .`` (or from cnnbench's checkout; a plugin that is not
installed is registered for the session with ``cnnbench.testing.registered``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

from cnnbench.testing import TINY_MODERN_NETWORK, check_adapter, registered, tiny_network  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
# Asked before this folder goes on sys.path: a leftover cnnbench_jax.egg-info in it would answer too.
INSTALLED = any(ep.name == "jax" for ep in importlib.metadata.entry_points(group="cnnbench"))
try:
    import cnnbench_jax  # noqa: F401
except ImportError:  # run from a checkout without installing the plugin
    sys.path.insert(0, str(HERE))
    import cnnbench_jax  # noqa: F401
from cnnbench_jax.adapter import JaxAdapter  # noqa: E402

# Everything the spec has beyond lenet: ceil pooling with padding (max and average, Caffe's divisor at the
# edges), LRN, a grouped convolution, a channel concat, an implicit flatten into fc, an explicit flatten
# concatenated with an fc's output, dropout.
RICH = """
name = "rich"
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


@pytest.fixture(scope="module", autouse=True)
def plugin():
    """The plugin as cnnbench's workers will find it: installed, or registered for these tests."""
    with contextlib.nullcontext() if INSTALLED else registered(cnnbench_jax, name="jax"):
        yield


def test_the_adapter_contract_holds_on_the_tiny_network():
    report = check_adapter(JaxAdapter)
    assert report.unsupported["kernels=native"][0] == "unsupported"
    assert "im2col" in report.unsupported["kernels=native"][1]
    assert report.unsupported["precision=tf32"][0] == "unsupported"
    # this machine's jaxlib may have CUDA or not; without it, the reason says how to get it
    status, reason = report.unsupported["device=cuda"]
    assert status == "ok" or (status == "unsupported" and "jax[cuda12]" in reason)
    # fp32 against float64: rounding only
    assert report.verify.worst[1] < 1e-4


def test_the_adapter_contract_holds_in_bf16_on_lenet():
    report = check_adapter(JaxAdapter, network="lenet", precision="bf16")
    assert report.verify.tolerance == 0.25 and report.verify.worst[1] < report.verify.tolerance


def test_list_and_compare_run_it_from_the_command_line(tmp_path):
    env = dict(os.environ, CNNBENCH_HOME=str(tmp_path / "home"))
    listed = subprocess.run([sys.executable, "-m", "cnnbench", "list", "--json"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=600)
    assert listed.returncode == 0, listed.stderr
    (jax,) = [f for f in json.loads(listed.stdout)["frameworks"] if f["name"] == "jax"]
    assert jax["available"] and jax["version"] == importlib.metadata.version("jax")
    proc = subprocess.run(
        [sys.executable, "-m", "cnnbench", "compare", "--frameworks", "jax", "--network", "lenet", "--batch-size",
         "2", "--device", "cpu", "--precision", "fp32,tf32", "--meters", "none", "--warmup", "1",
         "--min-time", "0.02", "--repeats", "2", "--db", str(tmp_path / "results.sqlite"), "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    cells = {r["precision"]: r for r in json.loads(proc.stdout)["results"]}
    assert cells["fp32"]["status"] == "ok", cells["fp32"]["reason"]
    assert cells["fp32"]["time_per_iter_ms"] > 0 and cells["fp32"]["provenance"]["worker"]["jax"]
    assert cells["tf32"]["status"] == "unsupported" and "tensor cores" in cells["tf32"]["reason"]


# -- in process -----------------------------------------------------------------------------------------


def _reference(spec, arrays):
    from cnnbench.config import RunConfig
    from cnnbench_caffe.adapter import CaffeAdapter

    weights: dict = {}
    for key, value in arrays.items():
        if "/" in key:
            layer, _, kind = key.partition("/")
            weights.setdefault(layer, {})[kind] = value
    cfg = RunConfig(framework="caffe", network=spec.name, batch_size=len(arrays["labels"]), kernels="native")
    return weights, CaffeAdapter().verify(spec, cfg, weights, arrays["data"], arrays["labels"])


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-5), ("fp16", 5e-2), ("bf16", 2.5e-1)])
def test_every_layer_type_computes_the_reference_function(precision, tolerance):
    pytest.importorskip("cnnbench_caffe")
    from cnnbench.config import RunConfig
    from cnnbench.spec import loads_spec
    from cnnbench.execution.verify import make_inputs, relative_error

    spec = loads_spec(RICH)
    arrays = make_inputs(spec, 3, seed=1)
    weights, ref = _reference(spec, arrays)
    adapter = JaxAdapter()
    cfg = RunConfig(framework="jax", network="rich", batch_size=3, precision=precision)
    adapter.prepare(cfg)
    got = adapter.verify(spec, cfg, weights, arrays["data"], arrays["labels"])
    errors = {"loss": relative_error(got.loss, ref.loss), "logits": relative_error(got.logits, ref.logits)}
    errors.update({f"{layer}/{kind}": relative_error(got.grads[layer][kind], array)
                   for layer, kinds in ref.grads.items() for kind, array in kinds.items()})
    assert max(errors.values()) < tolerance, errors


MODERN = TINY_MODERN_NETWORK


def test_issue_17_layer_types_compute_the_reference_function():
    """Batch norm, add, depthwise convolution, squeeze-and-excitation and the new activations."""
    pytest.importorskip("cnnbench_caffe")
    from cnnbench.config import RunConfig
    from cnnbench.spec import loads_spec
    from cnnbench.execution.verify import make_inputs, relative_error

    spec = loads_spec(MODERN)
    arrays = make_inputs(spec, 3, seed=1)
    weights, ref = _reference(spec, arrays)
    adapter = JaxAdapter()
    cfg = RunConfig(framework="jax", network="modern", batch_size=3)
    adapter.prepare(cfg)
    got = adapter.verify(spec, cfg, weights, arrays["data"], arrays["labels"])
    errors = {"loss": relative_error(got.loss, ref.loss), "logits": relative_error(got.logits, ref.logits)}
    errors.update({f"{layer}/{kind}": relative_error(got.grads[layer][kind], array)
                   for layer, kinds in ref.grads.items() for kind, array in kinds.items()})
    assert max(errors.values()) < 1e-4, errors


@pytest.mark.parametrize("network", ["lenet", "alexnet", "overfeat", "vgg_a", "googlenet", "resnet18", "resnet50",
                                     "mobilenet_v2", "efficientnet_b0"])
def test_every_builtin_network_has_the_spec_parameters_and_logits(network):
    """Traced, not run (jax.eval_shape): the whole step's shapes without its arithmetic."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from cnnbench.spec.catalog import resolve_network
    from cnnbench_jax.model import init_params, loss_function

    spec = resolve_network(network)
    params = jax.eval_shape(lambda key: init_params(spec, key), jax.random.PRNGKey(0))
    assert sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(params)) == spec.param_count
    step = jax.value_and_grad(loss_function(spec, jnp.float32, lax.Precision.HIGHEST, train=True), has_aux=True)
    images = jax.ShapeDtypeStruct((2, *spec.input_shape), jnp.float32)
    labels = jax.ShapeDtypeStruct((2,), jnp.int32)
    (loss, logits), grads = jax.eval_shape(step, params, images, labels, jax.random.PRNGKey(1))
    assert logits.shape == (2, spec.num_classes) and loss.shape == ()
    assert jax.tree_util.tree_map(lambda a: a.shape, grads) == jax.tree_util.tree_map(lambda a: a.shape, params)


def test_dropout_draws_a_new_mask_every_step_and_the_optimizer_is_an_option():
    import numpy as np

    from cnnbench.config import RunConfig
    from cnnbench.spec import loads_spec

    spec = loads_spec(RICH)
    adapter = JaxAdapter()
    cfg = RunConfig(framework="jax", network="rich", batch_size=2)
    adapter.prepare(cfg)
    model = adapter.build(spec, cfg)
    losses = []
    for _ in range(3):
        adapter.step(model)
        adapter.synchronize(model)
        losses.append(float(model.outputs[0]))
    assert len(set(losses)) == 3  # same weights and data: only dropout's mask changes the loss
    before = np.asarray(model.params["fc5"]["weight"])
    adapter.step(model)
    assert np.array_equal(before, np.asarray(model.params["fc5"]["weight"]))  # no update by default

    trained = adapter.build(spec, RunConfig(framework="jax", network="rich", batch_size=2, optimizer=True))
    before = np.asarray(trained.params["fc5"]["weight"])
    adapter.step(trained)
    adapter.synchronize(trained)
    assert not np.array_equal(before, np.asarray(trained.params["fc5"]["weight"]))


def test_the_tiny_network_steps_in_process():
    from cnnbench.config import RunConfig

    adapter = JaxAdapter()
    cfg = RunConfig(framework="jax", network="tiny", batch_size=2)
    adapter.prepare(cfg)
    model = adapter.build(tiny_network(), cfg)
    adapter.step(model)
    adapter.synchronize(model)
    loss, grads = model.outputs
    assert set(grads) == {"conv1", "fc1"} and float(loss) > 0
