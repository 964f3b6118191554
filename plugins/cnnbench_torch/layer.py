"""One layer of the spec on its own in PyTorch, for ``cnnbench layers`` (the paper's Fig. 5).

The layer is the module the network is built from (``model.layer_module``), fed synthetic inputs of its
input shapes in the dtype it sees inside the network, on the run's device, under the run's autocast.
Forward runs as in training (autograd records, dropout is active); backward replays one recorded graph
(``retain_graph=True``) from a fixed upstream gradient to the parameter gradients and the input
gradients a training step computes (``cnnbench.adapter.propagate_down``).

Imported only inside the adapter's worker-side methods, once PyTorch is wanted anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from cnnbench.adapter import propagate_down
from cnnbench.spec import NetworkSpec
from cnnbench_torch.model import build_module, layer_module


@dataclass
class TorchLayer:
    module: Any  # None for the softmax loss, which is a function
    inputs: list[Any]
    labels: Any
    device: Any  # ``synchronize`` reads it, as from a TorchModel
    autocast: Callable[[], Any]
    output: Any = None
    grad_output: Any = None
    #: What backward differentiates: the inputs that need a gradient, then the parameters.
    targets: list[Any] = field(default_factory=list)


def blob_dtypes(spec: NetworkSpec, device: Any, autocast: Callable[[], Any]) -> dict[str, Any]:
    """The dtype of every blob inside the network at the run's precision, from one forward of one image:
    under autocast a convolution's output is half precision and the ReLU after it runs in half too,
    which a single layer must reproduce to do the same work."""
    module = build_module(spec, graph=True).to(device).train()
    blobs = {"data": torch.randn(1, *spec.input_shape, device=device)}
    with torch.no_grad(), autocast():
        for (name, inputs), block in zip(module.plan, module.blocks):
            blobs[name] = block(*[blobs[i] for i in inputs])
    return {name: blob.dtype for name, blob in blobs.items()}


def build_single(spec: NetworkSpec, name: str, batch: int, device: Any, autocast: Callable[[], Any],
                 dtypes: dict[str, Any] | None, seed: int,
                 memory_format: Any = torch.contiguous_format) -> TorchLayer:
    layer = spec.layer(name)
    torch.manual_seed(seed)
    module = None
    if layer.type != "softmax_loss":
        # Not in place: the synthetic input must survive every forward; inside the network a ReLU after a
        # convolution overwrites its input, saving one allocation per step.
        module = layer_module(layer, inplace_ok=False).to(device, memory_format=memory_format).train()
    inputs = []
    for blob, shape, grad in zip(layer.inputs, layer.input_shapes, propagate_down(spec, name)):
        dtype = (dtypes or {}).get(blob, torch.float32)
        x = torch.randn(batch, *shape, device=device, dtype=dtype)
        if x.dim() == 4:  # channels_last is a layout of 4-D tensors only (fc and loss inputs are 2-D)
            x = x.contiguous(memory_format=memory_format)
        inputs.append(x.requires_grad_(grad))
    labels = None
    if layer.type == "softmax_loss":
        labels = torch.randint(0, layer.input_shapes[0][0], (batch,), device=device)
    handle = TorchLayer(module, inputs, labels, device, autocast)
    handle.output = forward(handle)
    handle.targets = [x for x in inputs if x.requires_grad]
    if module is not None:
        handle.targets += [p for p in module.parameters() if p.requires_grad]
    # The loss's upstream gradient is d loss / d loss = 1, as loss.backward() starts from.
    make = torch.ones_like if module is None else torch.randn_like
    handle.grad_output = make(handle.output)
    return handle


def forward(handle: TorchLayer) -> Any:
    with handle.autocast():
        if handle.module is None:
            return F.cross_entropy(handle.inputs[0], handle.labels)
        return handle.module(*handle.inputs)


def step_single(handle: TorchLayer, direction: str) -> None:
    if direction == "forward":
        forward(handle)
    elif direction == "backward":
        if handle.targets:
            # autograd.grad returns fresh gradients, as a step after zero_grad(set_to_none=True) makes
            # them; backward() into .grad would add an accumulation the training step does not do.
            torch.autograd.grad(handle.output, handle.targets, handle.grad_output, retain_graph=True)
    else:
        raise ValueError(f"unknown direction '{direction}'; valid choices: forward, backward")
