"""Gluon blocks for issue 17's layer types: batch normalisation, residual addition, global average pooling,
squeeze-and-excitation's channel scaling and the activations relu6, silu, sigmoid and hardswish.

Imported only inside the adapter's worker-side methods, once MXNet is wanted anyway.
"""

from __future__ import annotations

from mxnet.gluon import nn

from cnnbench.spec import Layer


class BatchNorm(nn.BatchNorm):
    """Gluon's batch norm over the channels (axis 1): batch statistics while recording in training mode, as
    the step does. MXNet's ``momentum`` is the weight of the *old* running value (Keras's convention), the
    spec's that of the batch (PyTorch's), hence 1 - momentum. ``weight`` and ``bias`` name its scale and
    shift (Gluon's gamma and beta) as the canonical layout of ``cnnbench verify`` does. Its ``cast`` keeps
    float32 parameters under fp16, as MXNet's kernels want."""

    def __init__(self, layer: Layer):
        p = layer.params
        super().__init__(axis=1, momentum=1.0 - p["momentum"], epsilon=p["eps"], in_channels=layer.input_shapes[0][0],
                         prefix=f"{layer.name}_")

    @property
    def weight(self):
        return self.gamma

    @property
    def bias(self):
        return self.beta


class Add(nn.HybridBlock):
    def hybrid_forward(self, F, x, *rest):
        return F.add_n(x, *rest)


class GlobalPool(nn.HybridBlock):
    """The average over height and width: [N, C, H, W] -> [N, C]."""

    def hybrid_forward(self, F, x):
        return F.mean(x, axis=(2, 3))


class ChannelScale(nn.HybridBlock):
    """[N, C, H, W] times [N, C], per channel (squeeze-and-excitation)."""

    def hybrid_forward(self, F, x, scale):
        return F.broadcast_mul(x, F.reshape(scale, shape=(0, 0, 1, 1)))


class Activation(nn.HybridBlock):
    """relu6, silu, sigmoid or hardswish, from MXNet's clip and sigmoid operators."""

    def __init__(self, kind: str, **kwargs):
        super().__init__(**kwargs)
        self._kind = kind

    def hybrid_forward(self, F, x):
        if self._kind == "relu6":
            return F.clip(x, 0, 6)
        if self._kind == "sigmoid":
            return F.sigmoid(x)
        if self._kind == "silu":
            return x * F.sigmoid(x)
        return x * F.clip(x + 3, 0, 6) / 6  # hardswish


def modern_block(layer: Layer) -> nn.HybridBlock | None:
    """The block of one of issue 17's layer types, or None for any other type."""
    prefix = f"{layer.name}_"
    if layer.type == "batchnorm":
        return BatchNorm(layer)
    if layer.type == "add":
        return Add(prefix=prefix)
    if layer.type == "global_pool":
        return GlobalPool(prefix=prefix)
    if layer.type == "channel_scale":
        return ChannelScale(prefix=prefix)
    if layer.type in ("relu6", "silu", "sigmoid", "hardswish"):
        return Activation(layer.type, prefix=prefix)
    return None
