"""The MXNet adapter: host-side answers in this interpreter (no MXNet here), and real workers in the
MXNet environment (the session fixture ``mxnet_env``), checked against the float64 Caffe-style engine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cnnbench.adapter import Unsupported
from cnnbench.config import Measurement, RunConfig
from cnnbench.spec.catalog import resolve_network
from cnnbench.execution.runner import Cell, preflight, run_cell, run_worker
from cnnbench.testing import TINY_MODERN_NETWORK
from cnnbench.spec import loads_spec
from cnnbench.execution.verify import TOLERANCES, make_inputs, relative_error

# The adapter package itself imports no MXNet; it is missing only from an install made before it existed.
MXNetAdapter = pytest.importorskip("cnnbench_mxnet.adapter", reason="cnnbench_mxnet is not importable here; "
                                   "reinstall cnnbench (pip install -e .)").MXNetAdapter

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = "cnnbench_mxnet.adapter"
ONE_STEP = Measurement(warmup=1, min_time=0.01, repeats=1, iterations=1)

#: Every layer type and the pooling corners: a padded ceil-mode max pool whose last window Caffe drops
#: (MXNet makes it, the adapter cuts it off), average pools clipped at the padded border, LRN, grouped
#: convolution, concat, dropout, implicit and explicit flatten, fc without bias.
EVERY_LAYER = """
name = "every_layer"
input = [3, 9, 9]
default_batch_size = 2
layers = [
  {name = "conv1", type = "conv", filters = 8, kernel = 3, pad = 1},
  {name = "relu1", type = "relu"},
  {name = "pool1", type = "pool", mode = "max", kernel = 2, stride = 2, pad = 1, round = "ceil"},
  {name = "lrn1", type = "lrn", local_size = 5, alpha = 0.1, beta = 0.75, k = 2.0},
  {name = "conv2a", type = "conv", filters = 8, kernel = 1, groups = 2, input = "lrn1"},
  {name = "conv2b", type = "conv", filters = 6, kernel = 3, pad = 1, input = "lrn1"},
  {name = "cat", type = "concat", inputs = ["conv2a", "conv2b"]},
  {name = "relu2", type = "relu"},
  {name = "pool2", type = "pool", mode = "avg", kernel = 2, stride = 2, round = "ceil"},
  {name = "pool3", type = "pool", mode = "avg", kernel = 3, stride = 1, pad = 1, round = "ceil"},
  {name = "fc1", type = "fc", outputs = 10, bias = false},
  {name = "drop", type = "dropout", ratio = 0.5},
  {name = "relu3", type = "relu"},
  {name = "flat", type = "flatten"},
  {name = "fc2", type = "fc", outputs = 5},
  {name = "loss", type = "softmax_loss"},
]
"""


def config(network="lenet", **kw):
    return RunConfig(framework="mxnet", network=network, batch_size=kw.pop("batch_size", 4), **kw)


# -- host side, in this interpreter (which has no MXNet) ------------------------------------------------


def test_availability_names_the_environment_as_the_fix():
    availability = MXNetAdapter.availability()
    if availability.available:
        pytest.skip("this interpreter can import mxnet")
    assert "cnnbench env create mxnet" in availability.reason
    assert availability.install_hint == "cnnbench env create mxnet"


def test_an_installed_mxnet_next_to_numpy_2_is_unavailable(tmp_path, monkeypatch):
    """MXNet 1.9 installed beside NumPy >= 1.24 would fail on import (np.bool): say so, without importing."""
    site = tmp_path / "site"
    (site / "mxnet").mkdir(parents=True)
    (site / "mxnet" / "__init__.py").write_text("raise AssertionError('availability must not import mxnet')\n")
    info = site / "mxnet-1.9.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mxnet\nVersion: 1.9.1\n")
    monkeypatch.syspath_prepend(str(site))
    import importlib.metadata

    if tuple(int(p) for p in importlib.metadata.version("numpy").split(".")[:2]) < (1, 24):
        pytest.skip("this interpreter has numpy < 1.24")
    availability = MXNetAdapter.availability()
    assert not availability.available and availability.version == "1.9.1"
    assert "needs numpy<1.24" in availability.reason and "cnnbench env create mxnet" in availability.reason


def test_capabilities_say_why_not():
    cpu = MXNetAdapter.capabilities("cpu")
    assert cpu.precisions == ("fp32",) and cpu.kernels == ("vendor", "native")
    assert "no float16 kernels" in cpu.unsupported["fp16"]
    cuda = MXNetAdapter.capabilities("cuda")
    assert cuda.precisions == ("fp32", "fp16")
    assert set(cuda.unsupported) == {"bf16", "tf32"}


def test_switches_are_environment_variables_set_before_import():
    env = MXNetAdapter.environment
    assert env(config(kernels="vendor"))["MXNET_MKLDNN_ENABLED"] == "1"
    assert env(config(kernels="native"))["MXNET_MKLDNN_ENABLED"] == "0"
    threaded = env(config(threads=3))
    assert threaded["OMP_NUM_THREADS"] == "3" and threaded["MXNET_CPU_WORKER_NTHREADS"] == "1"
    assert "OMP_NUM_THREADS" not in env(config())
    assert env(config(device="cuda"))["NVIDIA_TF32_OVERRIDE"] == "0"
    assert "NVIDIA_TF32_OVERRIDE" not in env(config(device="cuda", precision="fp16"))


def test_prepare_refuses_an_mxnet_imported_with_other_settings(monkeypatch):
    monkeypatch.setitem(sys.modules, "mxnet", object())
    monkeypatch.setenv("MXNET_MKLDNN_ENABLED", "1")
    monkeypatch.setenv("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0")
    with pytest.raises(RuntimeError, match="imported before prepare.*MXNET_MKLDNN_ENABLED"):
        MXNetAdapter().prepare(config(kernels="native"))


def test_fp16_on_the_cpu_is_unsupported_before_any_worker(monkeypatch):
    from cnnbench.adapter import Availability
    from cnnbench.plugins import PluginHost

    # as where the host finds mxnet importable
    monkeypatch.setattr(MXNetAdapter, "availability", classmethod(lambda cls: Availability(True, "1.9.1")))
    host = PluginHost()
    result = preflight(Cell(config(precision="fp16"), resolve_network("lenet")), host)
    assert result.status == "unsupported" and "float16" in result.reason


# -- workers in the MXNet environment ----------------------------------------------------------------


def bench(mxnet_env, spec, measurement=ONE_STEP, **kw):
    cfg = config(spec.name, **kw)
    return run_cell(Cell(cfg, spec), measurement, timeout=600, python=mxnet_env.python, adapter_module=ADAPTER)


@pytest.mark.parametrize("kernels, mkldnn", [("vendor", True), ("native", False)])
@pytest.mark.parametrize("threads", [1, 2])
def test_lenet_trains_with_either_kernel_family_and_the_threads_asked(mxnet_env, kernels, mkldnn, threads):
    result = bench(mxnet_env, resolve_network("lenet"), Measurement(warmup=2, min_time=0.05, repeats=2),
                   kernels=kernels, threads=threads)
    assert result.status == "ok", (result.reason, result.provenance.get("worker_stderr_tail"))
    worker = result.provenance["worker"]
    assert worker["python"] == mxnet_env.python and worker["framework_version"] == "1.9.1"
    assert worker["mkldnn"] is mkldnn and worker["mkldnn_built"] is True
    assert worker["threads_used"] == threads
    assert worker["numpy"].startswith("1.") and worker["blas"] == "openblas"
    assert result.images_per_s > 0


def test_fp16_on_the_cpu_is_unsupported_in_the_worker(mxnet_env):
    result = bench(mxnet_env, resolve_network("lenet"), precision="fp16")
    assert result.status == "unsupported" and "float16" in result.reason


@pytest.mark.parametrize("network", ["alexnet", "googlenet", "lenet", "overfeat", "vgg_a", "resnet18", "resnet50",
                                     "mobilenet_v2", "efficientnet_b0"])
def test_every_builtin_network_builds_and_steps(mxnet_env, network):
    result = bench(mxnet_env, resolve_network(network), batch_size=1, threads=1)
    assert result.status == "ok", (result.reason, result.provenance.get("worker_stderr_tail"))


def run_in_env(mxnet_env, code: str, **env) -> subprocess.CompletedProcess:
    """PRELUDE and ``code`` in the MXNet environment's interpreter, with this checkout on its path."""
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]), **env)
    return subprocess.run([mxnet_env.python, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True,
                          text=True, env=full, timeout=300)


PRELUDE = """
from cnnbench.config import RunConfig
from cnnbench.spec.catalog import resolve_network
from cnnbench_mxnet.adapter import MXNetAdapter

def built(kernels="vendor", **kw):
    cfg = RunConfig(framework="mxnet", network="lenet", batch_size=4, kernels=kernels, threads=1, **kw)
    adapter = MXNetAdapter()
    adapter.prepare(cfg)
    return adapter, adapter.build(resolve_network("lenet"), cfg)
"""


def test_step_computes_every_gradient_and_updates_only_with_the_optimizer(mxnet_env):
    proc = run_in_env(mxnet_env, """
    import numpy as np
    adapter, model = built()
    params = list(model.net.collect_params().values())
    assert sum(p.data().size for p in params) == resolve_network("lenet").param_count
    adapter.step(model); adapter.synchronize(model)
    assert all(np.isfinite(g.asnumpy()).all() and abs(g.asnumpy()).sum() > 0 for g in model.grads)
    before = [w.asnumpy().copy() for w in model.weights]
    adapter.step(model); adapter.synchronize(model)
    assert all((a == w.asnumpy()).all() for a, w in zip(before, model.weights)), "weights moved"

    adapter, model = built(optimizer=True)
    before = [w.asnumpy().copy() for w in model.weights]
    adapter.step(model); adapter.synchronize(model)
    assert any((a != w.asnumpy()).any() for a, w in zip(before, model.weights)), "no update"
    print("ok")
    """)
    assert proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_synchronize_raises_what_an_asynchronous_operator_raised(mxnet_env):
    proc = run_in_env(mxnet_env, """
    adapter, model = built()
    import mxnet as mx  # after prepare(), which must set MXNet's switches before it loads
    adapter.step(model)
    model.loss = mx.nd.random.normal(0, -1, shape=(2,)) * 2  # fails inside the engine, not at the call
    try:
        adapter.synchronize(model)
    except mx.base.MXNetError as exc:
        print("raised", "scale" in str(exc))
    """)
    assert "raised True" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("kernels, seen", [("vendor", True), ("native", False)])
def test_kernel_family_decides_whether_mkldnn_runs_the_convolutions(mxnet_env, kernels, seen):
    proc = run_in_env(mxnet_env, f"""
    adapter, model = built("{kernels}")
    adapter.step(model); adapter.synchronize(model)
    """, DNNL_VERBOSE="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = [line for line in proc.stdout.splitlines() if line.startswith("dnnl_verbose,exec,cpu,convolution")]
    assert bool(ran) is seen
    if seen:  # the backward passes too, not only inference
        assert any("backward_weights" in line for line in ran) and any("forward_training" in line for line in ran)


# -- verify against the float64 reference ----------------------------------------------------------------


def verify_job(tmp_path, spec, framework, kernels, arrays_path, python=None, module=""):
    import numpy as np

    out = str(tmp_path / f"{framework}-{kernels}.npz")
    cfg = RunConfig(framework=framework, network=spec.name, batch_size=2, kernels=kernels)
    job = {"mode": "verify", "config": cfg.to_dict(), "spec": {"data": spec.data, "source": spec.source},
           "arrays": arrays_path, "output": out}
    outcome = run_worker(job, cfg, timeout=600, python=python, adapter_module=module)
    assert outcome.final is not None and outcome.final["event"] == "verified", (outcome.final, outcome.stderr_tail)
    with np.load(out) as data:
        return {key: data[key] for key in data.files}


MODERN = TINY_MODERN_NETWORK


@pytest.mark.parametrize("network", ["lenet", "every_layer", "modern"])
@pytest.mark.parametrize("kernels", ["vendor", "native"])
def test_verify_matches_the_float64_reference(mxnet_env, tmp_path, network, kernels):
    import numpy as np

    texts = {"every_layer": EVERY_LAYER, "modern": MODERN}  # modern: issue 17's layer types
    spec = loads_spec(texts[network], f"{network}.toml") if network in texts else resolve_network(network)
    arrays = make_inputs(spec, 2, seed=0)
    path = str(tmp_path / "inputs.npz")
    np.savez(path, **arrays)
    # the reference runs in this interpreter, MXNet in its environment
    reference = verify_job(tmp_path, spec, "caffe", "native", path, module="cnnbench_caffe.adapter")
    got = verify_job(tmp_path, spec, "mxnet", kernels, path, python=mxnet_env.python, module=ADAPTER)
    assert set(got) == set(reference)
    errors = {name: relative_error(got[name], reference[name]) for name in reference}
    # far inside the fp32 tolerance of cnnbench verify: these networks are shallow
    assert max(errors.values()) < TOLERANCES["fp32"] / 100, errors


def test_verify_is_unsupported_in_fp16_on_the_cpu():
    with pytest.raises(Unsupported, match="float16"):
        MXNetAdapter().prepare(config(precision="fp16"))
