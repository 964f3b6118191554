"""The PyTorch adapter in process: the step it times is the step it claims to time."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cnnbench.config import RunConfig  # noqa: E402
from cnnbench.networks import resolve_network  # noqa: E402
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
    adapter, model, _ = build(precision="bf16")
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


def test_branching_spec_builds_a_graph_module():
    spec = loads_spec("""
name = "branchy"
input = [1, 12, 12]
default_batch_size = 2
layers = [
  {name = "conv1", type = "conv", filters = 4, kernel = 3},
  {name = "side", type = "relu", input = "conv1"},
  {name = "main", type = "pool", mode = "max", kernel = 2, stride = 2, input = "conv1"},
  {name = "fc", type = "fc", outputs = 3},
  {name = "loss", type = "softmax_loss"},
]
""")
    adapter, model, _ = build(spec, batch_size=2)
    assert type(model.module).__name__ == "_SpecGraph"
    # conv1 feeds two layers, so the ReLU on it must not run in place
    assert model.module.blocks[1].inplace is False
    adapter.step(model)
    assert model.module.blocks[0].weight.grad is not None


def test_cuda_without_cuda_is_unsupported():
    from cnnbench.adapter import Unsupported

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(Unsupported, match="CUDA is not available"):
        TorchAdapter().prepare(RunConfig(framework="torch", network="lenet", batch_size=2, device="cuda"))
