"""Build a Gluon ``HybridBlock`` from a cnnbench network spec (the loss is applied by the step).

Imported only inside the adapter's worker-side methods, once MXNet is wanted anyway. The block is
hybridized by the adapter, so the Python walk over the layers below runs once, when MXNet traces the
graph; every step after that runs the cached static graph.
"""

from __future__ import annotations

import math

import mxnet as mx
from mxnet.gluon import nn

from cnnbench.adapter import Unsupported
from cnnbench.spec import Layer, NetworkSpec
from cnnbench_mxnet.modern import modern_block

#: He initialisation (keeps activations at their size through ReLUs); any init times the same, but
#: exploding values would be a different workload (denormals, infinities). Uniform, not gaussian: MXNet's
#: CPU sampler draws alexnet's 61 M gaussian weights in 3.4 s on one thread, uniform ones in 0.7 s, and
#: every cell pays it (bench/cell_cost.py).
INITIALIZER = mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=2)


class Conv(nn.Conv2D):
    """Gluon's Conv2D, plus the Convolution operator's ``cudnn_off`` switch, which Conv2D does not
    expose (its ``_kwargs`` go to ``F.Convolution`` as they are)."""

    def __init__(self, layer: Layer, cudnn_off: bool):
        p = layer.params
        super().__init__(
            p["filters"], p["kernel"], strides=p["stride"], padding=p["pad"], groups=p["groups"],
            use_bias=p["bias"], in_channels=layer.input_shapes[0][0], prefix=f"{layer.name}_",
        )
        if cudnn_off:
            self._kwargs["cudnn_off"] = True


class Pool(nn.HybridBlock):
    """Caffe's pooling: ``pooling_convention='full'`` is Caffe's ceil rounding, and average pooling
    divides by the window clipped to the padded image (``count_include_pad=True``).

    One Caffe rule MXNet lacks: with padding, Caffe drops a last window that would start in the right
    padding. There MXNet makes one more row or column, read from padding only; it is cut off, so the
    shape (and every other value) is Caffe's.
    """

    def __init__(self, layer: Layer, cudnn_off: bool):
        super().__init__(prefix=f"{layer.name}_")
        p = layer.params
        ceil = p["round"] == "ceil"
        self._kwargs = {
            "kernel": p["kernel"], "stride": p["stride"], "pad": p["pad"], "pool_type": p["mode"],
            "pooling_convention": "full" if ceil else "valid", "cudnn_off": cudnn_off,
        }
        if p["mode"] == "avg":
            self._kwargs["count_include_pad"] = True
        mxnet_shape = []
        for size, k, s, q in zip(layer.input_shapes[0][1:], p["kernel"], p["stride"], p["pad"]):
            span = size + 2 * q - k
            mxnet_shape.append(1 + (math.ceil(span / s) if ceil else span // s))
        want = list(layer.output_shape[1:])
        self._crop = None if mxnet_shape == want else tuple(want)

    def hybrid_forward(self, F, x):
        y = F.Pooling(x, **self._kwargs)
        if self._crop is not None:
            y = F.slice(y, begin=(None, None, 0, 0), end=(None, None) + self._crop)
        return y


class ReLU(nn.HybridBlock):
    """``Activation`` is cuDNN's on a GPU and has no switch to turn it off; the element-wise ``relu``
    operator is MXNet's own kernel, used where the run asks for no cuDNN."""

    def __init__(self, layer: Layer, cudnn_off: bool):
        super().__init__(prefix=f"{layer.name}_")
        self._own_kernel = cudnn_off

    def hybrid_forward(self, F, x):
        return F.relu(x) if self._own_kernel else F.Activation(x, act_type="relu")


class LRN(nn.HybridBlock):
    """Caffe's across-channel LRN: x / (k + alpha/n * sum of squares over n channels)^beta. MXNet's LRN
    divides alpha by the window too (checked against that formula), so the parameters pass as they are."""

    def __init__(self, layer: Layer):
        super().__init__(prefix=f"{layer.name}_")
        p = layer.params
        self._kwargs = {"alpha": p["alpha"], "beta": p["beta"], "knorm": p["k"], "nsize": p["local_size"]}

    def hybrid_forward(self, F, x):
        return F.LRN(x, **self._kwargs)


class Identity(nn.HybridBlock):
    """A dropout layer for verification, where dropout must pass its input through."""

    def hybrid_forward(self, F, x):
        return F.identity(x)


class Concat(nn.HybridBlock):
    """Concatenation along channels (Caffe's default axis 1; features for 1-D inputs)."""

    def hybrid_forward(self, F, x, *rest):
        return F.concat(x, *rest, dim=1)


def _layer_block(layer: Layer, cudnn_off: bool, dropout: bool) -> nn.HybridBlock:
    p = layer.params
    if layer.type == "conv":
        return Conv(layer, cudnn_off)
    if layer.type == "pool":
        return Pool(layer, cudnn_off)
    if layer.type == "relu":
        return ReLU(layer, cudnn_off)
    if layer.type == "fc":
        # flatten=True folds (C, H, W) into features in C, H, W order, as Caffe's InnerProduct does.
        return nn.Dense(p["outputs"], use_bias=p["bias"], flatten=True, in_units=math.prod(layer.input_shapes[0]),
                        prefix=f"{layer.name}_")
    if layer.type == "flatten":
        return nn.Flatten(prefix=f"{layer.name}_")
    if layer.type == "dropout":
        if not dropout:
            return Identity(prefix=f"{layer.name}_")
        return nn.Dropout(p["ratio"], prefix=f"{layer.name}_")
    if layer.type == "lrn":
        return LRN(layer)
    if layer.type == "concat":
        return Concat(prefix=f"{layer.name}_")
    block = modern_block(layer)
    if block is not None:
        return block
    raise Unsupported(f"the mxnet adapter cannot build layer '{layer.name}' of type '{layer.type}'")


class SpecNet(nn.HybridBlock):
    """Runs the layers in file order (already topological), keeping blobs by name; the children are
    registered under the layers' names. ``dropout=False`` makes dropout layers pass their input through
    (for verification: training mode otherwise, since MKL-DNN's max pooling keeps the workspace its
    backward needs only in training mode, so predict mode would give wrong gradients)."""

    def __init__(self, spec: NetworkSpec, cudnn_off: bool = False, dropout: bool = True):
        super().__init__(prefix=f"{spec.name}_")
        layers = [layer for layer in spec.layers if layer.type != "softmax_loss"]
        with self.name_scope():
            for layer in layers:
                self.register_child(_layer_block(layer, cudnn_off, dropout), layer.name)
        self._plan = [(layer.name, layer.inputs) for layer in layers]
        self._output = spec.logits
        #: The layers with a weight and bias (conv and fc); ``layer_block(name)`` holds them.
        self.parameter_layers = [layer.name for layer in layers if layer.param_count]

    def layer_block(self, name: str) -> nn.HybridBlock:
        return self._children[name]

    def hybrid_forward(self, F, data):
        blobs = {"data": data}
        for name, inputs in self._plan:
            blobs[name] = self._children[name](*[blobs[i] for i in inputs])
        return blobs[self._output]
