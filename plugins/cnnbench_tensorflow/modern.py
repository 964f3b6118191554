"""The TensorFlow builders of issue 17's layer types: batch normalisation, residual addition, global
average pooling, squeeze-and-excitation's channel scaling and the activations relu6, silu, sigmoid and
hardswish. A mixin of :class:`cnnbench_tensorflow.model.SpecNet`, which finds ``_make_<type>`` by name.

Batch norm is TensorFlow's fused kernel (``FusedBatchNormV3``, what Keras runs), called directly: Keras's
wrapper raises an epsilon below 1.001e-5 to that value, and the spec's epsilon is used everywhere. The
running statistics are updated by the same kernel, with the spec's momentum as its exponential average
factor (PyTorch's convention; Keras's momentum is 1 minus it) and the unbiased batch variance.
"""

from __future__ import annotations

import tensorflow as tf

from cnnbench.adapter import Unsupported
from cnnbench.spec import Layer

#: Element-wise types whose 1-D output keeps its input's order (SpecNet.perms).
ORDER_KEEPING = ("batchnorm", "relu6", "silu", "sigmoid", "hardswish")


def hardswish(x):
    return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


class ModernLayers:
    def _make_batchnorm(self, layer: Layer, p: dict, rng):
        channels = layer.input_shapes[0][0]
        kinds = self.params.setdefault(layer.name, {})
        kinds["weight"] = tf.Variable(tf.ones([channels]), name=f"{layer.name}/weight")
        kinds["bias"] = tf.Variable(tf.zeros([channels]), name=f"{layer.name}/bias")
        mean = tf.Variable(tf.zeros([channels]), trainable=False, name=f"{layer.name}/running_mean")
        var = tf.Variable(tf.ones([channels]), trainable=False, name=f"{layer.name}/running_var")
        self.state[layer.name] = {"running_mean": mean, "running_var": var}
        scale, offset = kinds["weight"], kinds["bias"]
        eps, momentum, fmt = float(p["eps"]), float(p["momentum"]), self.layout

        def batchnorm(x):
            y, new_mean, new_var, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=scale, offset=offset, mean=mean, variance=var, epsilon=eps,
                exponential_avg_factor=momentum, data_format=fmt, is_training=True)
            mean.assign(new_mean)
            var.assign(new_var)
            return y

        return batchnorm

    def _make_add(self, layer: Layer, p: dict, rng):
        orders = {None if self.perms[b] is None else self.perms[b].tobytes() for b in layer.inputs}
        if len(orders) > 1:
            raise Unsupported(f"layer '{layer.name}': the tensorflow adapter cannot add 1-D blobs whose "
                              "elements are in different orders")
        self.perms[layer.name] = self.perms[layer.inputs[0]]
        return lambda *xs: tf.add_n(list(xs))

    def _make_global_pool(self, layer: Layer, p: dict, rng):
        axes = [1, 2] if self.layout == "NHWC" else [2, 3]
        return lambda x: tf.reduce_mean(x, axis=axes)

    def _make_channel_scale(self, layer: Layer, p: dict, rng):
        if self.perms[layer.inputs[1]] is not None:
            raise Unsupported(f"layer '{layer.name}': the tensorflow adapter needs the scale of channel_scale "
                              "in channel order (from an fc or a global_pool)")
        nhwc = self.layout == "NHWC"
        return lambda x, s: x * (s[:, None, None, :] if nhwc else s[:, :, None, None])

    def _make_relu6(self, layer: Layer, p: dict, rng):
        return tf.nn.relu6

    def _make_silu(self, layer: Layer, p: dict, rng):
        return tf.nn.silu

    def _make_sigmoid(self, layer: Layer, p: dict, rng):
        return tf.sigmoid

    def _make_hardswish(self, layer: Layer, p: dict, rng):
        return hardswish
