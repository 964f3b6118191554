"""The PyTorch adapter in process: the step it times is the step it claims to time."""

from __future__ import annotations

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
