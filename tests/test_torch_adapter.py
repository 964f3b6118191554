"""The PyTorch adapter in process: the step it times is the step it claims to time."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from cnnbench.adapter import Unsupported  # noqa: E402
from cnnbench.config import RunConfig  # noqa: E402
from cnnbench.spec.catalog import resolve_network  # noqa: E402
from cnnbench.spec import loads_spec  # noqa: E402
from cnnbench_torch.adapter import TorchAdapter  # noqa: E402


def build(network="lenet", **config):
    spec = network if not isinstance(network, str) else resolve_network(network)
    cfg = RunConfig(framework="torch", network=spec.name, batch_size=config.pop("batch_size", 4), **config)
    adapter = TorchAdapter()
    adapter.prepare(cfg)
    return adapter, adapter.build(spec, cfg), spec


def conv_ops(adapter, model):
    from torch.profiler import profile

    with profile() as prof:
        adapter.step(model)
    return {e.name for e in prof.events() if "conv" in e.name}


@pytest.mark.parametrize("kernels, expected, absent", [
    ("vendor", "aten::mkldnn_convolution", "aten::_slow_conv2d_forward"),
    ("native", "aten::_slow_conv2d_forward", "aten::mkldnn_convolution"),
])
def test_kernel_families_select_onednn_or_im2col_gemm(kernels, expected, absent):
    # batch 16 is where NNPACK would otherwise step in once oneDNN is off
    adapter, model, _ = build(kernels=kernels, batch_size=16)
    ops = conv_ops(adapter, model)
    assert expected in ops and absent not in ops
    if kernels == "native":
        assert "aten::_slow_conv2d_backward" in ops


def test_step_is_forward_loss_backward_for_every_parameter():
    adapter, model, spec = build()
    adapter.step(model)
    params = list(model.module.parameters())
    assert sum(p.numel() for p in params) == spec.param_count
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in params)
    before = [p.detach().clone() for p in params]
    adapter.step(model)
    # no optimizer update by default: the weights do not move
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, params))


def test_optimizer_update_is_an_option():
    adapter, model, _ = build(optimizer=True)
    before = [p.detach().clone() for p in model.module.parameters()]
    adapter.step(model)
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, model.module.parameters()))


def test_bf16_runs_under_autocast():
    # oneDNN's bf16 kernels need AVX-512 BF16 or AMX; elsewhere the adapter refuses vendor (tested in test_cli)
    kernels = "vendor" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "native"
    adapter, model, _ = build(precision="bf16", kernels=kernels)
    with model.autocast():
        out = model.module(model.x)
    assert out.dtype == torch.bfloat16
    adapter.step(model)
    assert all(p.grad.dtype == torch.float32 for p in model.module.parameters())


def test_threads_are_applied_and_reported():
    adapter, _, _ = build(threads=1)
    cfg = RunConfig(framework="torch", network="lenet", batch_size=4, threads=1)
    assert adapter.actual_threads(cfg) == 1


def test_output_shape_matches_the_spec():
    _, model, spec = build("alexnet", batch_size=1)
    with torch.no_grad():
        assert tuple(model.module(model.x).shape) == (1, spec.num_classes)
    assert sum(p.numel() for p in model.module.parameters()) == 61_100_840


def test_graph_executor_computes_what_the_sequential_chain_computes():
    from cnnbench_torch.model import SpecGraph, build_module

    spec = resolve_network("lenet")
    chain = build_module(spec)
    graph = build_module(spec, graph=True)
    assert isinstance(graph, SpecGraph) and isinstance(chain, torch.nn.Sequential)
    graph.load_state_dict({f"blocks.{k}": v for k, v in chain.state_dict().items()})
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(graph(x), chain(x))


def test_relu_runs_in_place_only_where_autograd_allows_it():
    spec = loads_spec("""
name = "relus"
input = [1, 8, 8]
default_batch_size = 2
layers = [
  {name = "r0", type = "relu"},
  {name = "conv", type = "conv", filters = 2, kernel = 3},
  {name = "r1", type = "relu"},
  {name = "r2", type = "relu"},
  {name = "fc", type = "fc", outputs = 3},
  {name = "loss", type = "softmax_loss"},
]
""")
    adapter, model, _ = build(spec, batch_size=2)
    relus = [m for m in model.module if isinstance(m, torch.nn.ReLU)]
    # on the input data: no (it would change the batch every step); after a conv: yes; after a ReLU: no
    assert [m.inplace for m in relus] == [False, True, False]
    x = model.x.clone()
    adapter.step(model)
    adapter.step(model)
    assert torch.equal(x, model.x)
    assert all(p.grad is not None for p in model.module.parameters())


def test_plain_cuda_means_device_zero(monkeypatch):
    """Without a GPU here, stand in for torch.cuda to check what prepare() asks of it."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(device))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    for device in ("cuda", "cuda:0"):
        TorchAdapter().prepare(RunConfig(framework="torch", network="lenet", batch_size=2, device=device))
    assert calls == [torch.device("cuda", 0)] * 2
    with pytest.raises(Unsupported, match="cuda:1 does not exist: this machine has 1 CUDA device"):
        TorchAdapter().prepare(RunConfig(framework="torch", network="lenet", batch_size=2, device="cuda:1"))


def test_bf16_on_a_gpu_that_only_emulates_it_is_unsupported(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    with pytest.raises(Unsupported, match="no bf16 support"):
        TorchAdapter().prepare(RunConfig(framework="torch", network="lenet", batch_size=2, device="cuda",
                                         precision="bf16"))


def test_cuda_without_cuda_is_unsupported():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(Unsupported, match="CUDA is not available"):
        TorchAdapter().prepare(RunConfig(framework="torch", network="lenet", batch_size=2, device="cuda"))


def test_the_adapter_contract_holds():
    """cnnbench.testing's contract test, run the way a third-party adapter runs it: host side in a fresh
    interpreter, the step in a worker, gradients against the float64 reference, refusals in workers."""
    from cnnbench.testing import check_adapter

    report = check_adapter(TorchAdapter)
    assert report.verify.status == "ok" and report.verify.worst[1] < 1e-5
    assert report.step.peak_memory_bytes > 0
    if not torch.cuda.is_available():
        assert report.unsupported["device=cuda"][0] == "unsupported"


# -- memory_format (issues 17 and 19): channels_last, PyTorch's fast path on oneDNN and cuDNN ------------------


def test_memory_format_option_is_declared_and_a_bad_value_is_one_line(cli):
    from cnnbench_torch.adapter import MEMORY_FORMATS

    assert TorchAdapter.options["memory_format"][0] == MEMORY_FORMATS == ("contiguous", "channels_last")
    proc = cli("run", "--framework", "torch", "--network", "lenet", "--option", "memory_format=nhwc",
               "--meters", "none")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["cnnbench: error: unknown value 'nhwc' for option memory_format "
                                                "of torch; valid choices: contiguous, channels_last"]
    # an unknown option name lists this one among the valid choices
    proc = cli("run", "--framework", "torch", "--network", "lenet", "--option", "layout=nhwc", "--meters", "none")
    assert proc.returncode == 2 and "memory_format (torch)" in proc.stderr


def test_channels_last_cell_runs_and_records_its_layout(cli):
    from conftest import FAST

    proc = cli("run", "--framework", "torch", "--network", "lenet", "--batch-size", "2", "--meters", "none",
               "--option", "memory_format=channels_last", "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)["results"][0]
    assert r["status"] == "ok", r["reason"]
    assert r["options"] == {"memory_format": "channels_last"}
    assert r["provenance"]["worker"]["memory_format"] == "channels_last"


def test_channels_last_converts_the_model_and_input_and_contiguous_is_the_default():
    _, model, _ = build()
    assert model.x.is_contiguous()
    assert TorchAdapter().inventory(RunConfig("torch", "lenet", 2))["memory_format"] == "contiguous"
    cfg = dict(options=(("memory_format", "channels_last"),))
    # resnet18, not lenet: with lenet's one input channel NCHW and NHWC strides are the same
    _, model, _ = build("resnet18", batch_size=2, **cfg)
    cl = torch.channels_last
    assert model.x.is_contiguous(memory_format=cl) and not model.x.is_contiguous()
    convs = [m for m in model.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=cl) for m in convs)
    # single layers too: a convolution's 4-D input and weight
    adapter = TorchAdapter()
    handle = adapter.build_layer(resolve_network("lenet"), "conv1", RunConfig("torch", "lenet", 2, **cfg))
    assert handle.inputs[0].is_contiguous(memory_format=cl) and handle.module.weight.is_contiguous(memory_format=cl)
    with pytest.raises(Unsupported, match="unknown memory_format 'nhwc'; valid choices: contiguous, channels_last"):
        TorchAdapter().prepare(RunConfig("torch", "lenet", 2, options=(("memory_format", "nhwc"),)))


@pytest.mark.parametrize("network", ["lenet", "resnet18"])
def test_channels_last_step_computes_the_same_loss_and_gradients(network):
    """``cnnbench verify`` takes no --option, so the equivalence is checked here, at batch 2: in float64 the
    two layouts agree to rounding; in fp32 (the adapter's verify, oneDNN's kernels) within verify's tolerance."""
    import numpy as np
    import torch.nn.functional as F

    from cnnbench.execution.verify import GRADIENT_FLOOR, make_inputs, relative_error, tolerance

    spec = resolve_network(network)
    grads64, loss64 = {}, {}
    for layout in ("contiguous", "channels_last"):
        adapter, model, _ = build(network, batch_size=2, options=(("memory_format", layout),))
        module, x = model.module.double(), model.x.double()
        if layout == "channels_last" and network == "resnet18":
            assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        loss = F.cross_entropy(module(x), model.y)
        loss.backward()
        loss64[layout] = loss.item()
        grads64[layout] = [p.grad for p in module.parameters()]
    assert abs(loss64["channels_last"] - loss64["contiguous"]) <= 1e-12 * abs(loss64["contiguous"])
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(grads64["contiguous"],
                                                                            grads64["channels_last"]))

    arrays = make_inputs(spec, 2)
    weights = {}
    for key, value in arrays.items():
        if "/" in key:
            layer, _, kind = key.partition("/")
            weights.setdefault(layer, {})[kind] = value
    outs = {}
    for layout in ("contiguous", "channels_last"):
        cfg = RunConfig("torch", network, 2, options=(("memory_format", layout),))
        adapter = TorchAdapter()
        adapter.prepare(cfg)
        outs[layout] = adapter.verify(spec, cfg, weights, arrays["data"], arrays["labels"])
    a, b = outs["contiguous"], outs["channels_last"]
    assert abs(a.loss - b.loss) <= 1e-5 * abs(a.loss)
    assert relative_error(b.logits, a.logits) < 1e-5
    assert set(a.grads) == set(b.grads) and len(a.grads) > 1
    # measured as verify measures gradients. In fp32 a pre-activation within rounding of zero may land on the
    # other side of a ReLU in one layout and not the other: resnet18's batch norm shifts differ by about 9e-3,
    # while each layout is within verify's tolerance of the float64 reference, so the bound is twice that
    # tolerance (the two distances to the reference added); lenet's differ by rounding only.
    largest = max(np.linalg.norm(g) for layer in a.grads.values() for g in layer.values())
    worst = max((relative_error(b.grads[n][k], a.grads[n][k], GRADIENT_FLOOR * largest), n, k)
                for n in a.grads for k in a.grads[n])
    assert worst[0] < (1e-5 if network == "lenet" else 2 * tolerance(spec, "fp32")), worst
