"""Build a ``torch.nn.Module`` from a cnnbench network spec (the loss layer is applied by the step)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnbench.adapter import Unsupported

if TYPE_CHECKING:
    import torch

    from cnnbench.spec import Layer, NetworkSpec


def _layer_module(layer: Layer, inplace_ok: bool) -> torch.nn.Module:
    from torch import nn

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
        ceil = p["round"] == "ceil"
        if p["mode"] == "max":
            return nn.MaxPool2d(p["kernel"], p["stride"], p["pad"], ceil_mode=ceil)
        # Caffe divides by the window clipped to the padded image, as count_include_pad=True does.
        return nn.AvgPool2d(p["kernel"], p["stride"], p["pad"], ceil_mode=ceil, count_include_pad=True)
    if layer.type == "relu":
        # In place (as Caffe and torchvision do) only when nothing else reads the input blob.
        return nn.ReLU(inplace=inplace_ok)
    if layer.type == "fc":
        linear = nn.Linear(_flat(layer.input_shapes[0]), p["outputs"], bias=p["bias"])
        if len(layer.input_shapes[0]) > 1:
            # Caffe's InnerProduct flattens its input implicitly.
            return nn.Sequential(nn.Flatten(), linear)
        return linear
    if layer.type == "flatten":
        return nn.Flatten()
    if layer.type == "dropout":
        return nn.Dropout(p["ratio"])
    raise Unsupported(f"the torch adapter cannot build layer '{layer.name}' of type '{layer.type}'")


def _flat(shape: tuple[int, ...]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def build_module(spec: NetworkSpec) -> torch.nn.Module:
    """A chain becomes ``nn.Sequential`` (no per-layer Python bookkeeping); a graph a ``SpecGraph``."""
    from torch import nn

    layers = [layer for layer in spec.layers if layer.type != "softmax_loss"]
    consumers: dict[str, int] = {}
    for layer in spec.layers:
        for name in layer.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    modules = [_layer_module(layer, consumers.get(layer.inputs[0], 0) == 1) for layer in layers]
    previous = ["data"] + [layer.name for layer in layers[:-1]]
    is_chain = all(layer.inputs == (prev,) for layer, prev in zip(layers, previous))
    if is_chain:
        return nn.Sequential(*modules)
    return SpecGraph(layers, modules, spec.logits)


def SpecGraph(layers, modules, output):  # noqa: N802 - a factory, so torch is imported lazily
    from torch import nn

    class _SpecGraph(nn.Module):
        """Runs the layers in file order (already topological), keeping blobs by name."""

        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(modules)
            self.plan = [(layer.name, layer.inputs) for layer in layers]
            self.output = output

        def forward(self, data):
            blobs = {"data": data}
            for (name, inputs), block in zip(self.plan, self.blocks):
                blobs[name] = block(*[blobs[i] for i in inputs])
            return blobs[self.output]

    return _SpecGraph()
