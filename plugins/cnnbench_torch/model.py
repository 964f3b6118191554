"""Build a ``torch.nn.Module`` from a cnnbench network spec (the loss layer is applied by the step).

Imported only inside the adapter's worker-side methods, once PyTorch is wanted anyway.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnbench.adapter import Unsupported
from cnnbench.spec import Layer, NetworkSpec

#: Layers whose backward needs neither their output nor an input they could share with a ReLU, so a
#: ReLU straight after them may overwrite their output in place (as Caffe and torchvision do).
_INPLACE_SAFE_PRODUCERS = ("add", "batchnorm", "conv", "fc", "pool")


def layer_module(layer: Layer, inplace_ok: bool) -> nn.Module:
    p = layer.params
    if layer.type == "conv":
        return nn.Conv2d(
            layer.input_shapes[0][0],
            p["filters"],
            p["kernel"],
            stride=p["stride"],
            padding=p["pad"],
            groups=p["groups"],
            bias=p["bias"],
        )
    if layer.type == "pool":
        if any(pad > k // 2 for pad, k in zip(p["pad"], p["kernel"])):
            raise Unsupported(f"layer '{layer.name}': PyTorch pools allow padding up to half the kernel")
        ceil = p["round"] == "ceil"
        if p["mode"] == "max":
            return nn.MaxPool2d(p["kernel"], p["stride"], p["pad"], ceil_mode=ceil)
        # Caffe divides by the window clipped to the padded image, as count_include_pad=True does.
        return nn.AvgPool2d(p["kernel"], p["stride"], p["pad"], ceil_mode=ceil, count_include_pad=True)
    if layer.type == "relu":
        return nn.ReLU(inplace=inplace_ok)
    if layer.type == "fc":
        linear = nn.Linear(math.prod(layer.input_shapes[0]), p["outputs"], bias=p["bias"])
        if len(layer.input_shapes[0]) > 1:
            # Caffe's InnerProduct flattens its input implicitly.
            return nn.Sequential(nn.Flatten(), linear)
        return linear
    if layer.type == "flatten":
        return nn.Flatten()
    if layer.type == "dropout":
        return nn.Dropout(p["ratio"])
    if layer.type == "lrn":
        # Caffe's across-channel LRN: x / (k + alpha/n * sum of squares over n channels)^beta, the
        # same convention (alpha divided by the window) as LocalResponseNorm.
        return nn.LocalResponseNorm(p["local_size"], alpha=p["alpha"], beta=p["beta"], k=p["k"])
    if layer.type == "concat":
        return Concat()
    if layer.type == "batchnorm":
        # Training mode: batch statistics; the spec's momentum is PyTorch's (the batch's weight).
        return nn.BatchNorm2d(layer.input_shapes[0][0], eps=p["eps"], momentum=p["momentum"])
    if layer.type == "add":
        return Add()
    if layer.type == "global_pool":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if layer.type == "channel_scale":
        return ChannelScale()
    if layer.type == "relu6":
        return nn.ReLU6(inplace=inplace_ok)
    if layer.type in _ACTIVATIONS:
        return _ACTIVATIONS[layer.type]()
    raise Unsupported(f"the torch adapter cannot build layer '{layer.name}' of type '{layer.type}'")


_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "silu": nn.SiLU, "hardswish": nn.Hardswish}


class Add(nn.Module):
    """Element-wise sum of two or more blobs (a residual connection)."""

    def forward(self, first, *rest):
        for blob in rest:
            first = first + blob
        return first


class ChannelScale(nn.Module):
    """Squeeze-and-excitation's scaling of an [N, C, H, W] blob by an [N, C] one."""

    def forward(self, blob, scale):
        return blob * scale[:, :, None, None]


class Concat(nn.Module):
    """Concatenation along channels (Caffe's default concat axis)."""

    def forward(self, *blobs):
        return torch.cat(blobs, dim=1)


class SpecGraph(nn.Module):
    """Runs the layers in file order (already topological), keeping blobs by name."""

    def __init__(self, layers: list[Layer], modules: list[nn.Module], output: str):
        super().__init__()
        self.blocks = nn.ModuleList(modules)
        self.plan = [(layer.name, layer.inputs) for layer in layers]
        self.output = output

    def forward(self, data):
        blobs = {"data": data}
        for (name, inputs), block in zip(self.plan, self.blocks):
            blobs[name] = block(*[blobs[i] for i in inputs])
        return blobs[self.output]


def parameter_modules(module: nn.Module, spec: NetworkSpec) -> dict[str, nn.Module]:
    """Layer name -> the Conv2d or Linear holding that layer's parameters, in a built module."""
    blocks = list(module.blocks if isinstance(module, SpecGraph) else module)
    layers = [layer for layer in spec.layers if layer.type != "softmax_loss"]
    found = {}
    for layer, block in zip(layers, blocks):
        if layer.param_count:
            found[layer.name] = block[-1] if isinstance(block, nn.Sequential) else block
    return found


def build_module(spec: NetworkSpec, graph: bool = False) -> nn.Module:
    """A chain becomes ``nn.Sequential`` (no per-layer Python bookkeeping), anything else (or
    ``graph=True``) a :class:`SpecGraph`."""
    layers = [layer for layer in spec.layers if layer.type != "softmax_loss"]
    producers = {layer.name: layer.type for layer in layers}
    readers: dict[str, int] = {}
    for layer in spec.layers:
        for name in layer.inputs:
            readers[name] = readers.get(name, 0) + 1
    modules = [
        layer_module(
            layer,
            inplace_ok=producers.get(layer.inputs[0]) in _INPLACE_SAFE_PRODUCERS and readers[layer.inputs[0]] == 1,
        )
        for layer in layers
    ]
    previous = ["data"] + [layer.name for layer in layers[:-1]]
    is_chain = spec.logits == layers[-1].name and all(
        layer.inputs == (prev,) for layer, prev in zip(layers, previous)
    )
    if is_chain and not graph:
        return nn.Sequential(*modules)
    return SpecGraph(layers, modules, spec.logits)
