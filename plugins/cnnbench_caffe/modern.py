"""The engine's layers for the networks after 2014 (issue 17): batch normalisation, residual addition,
depthwise convolution, global average pooling, squeeze-and-excitation's channel scaling, and the
activations relu6, silu, sigmoid and hardswish.

Written as ``layers.py`` is: bound to their inputs at construction, buffers made once, ``out=`` everywhere,
against ``xp`` (NumPy or CuPy). Caffe has BatchNorm (+ Scale), Eltwise SUM, global pooling, Sigmoid and
Swish; where it has a layer the formulas are its, and where frameworks differ (running statistics,
hardswish's gradient at the kinks) they are PyTorch's, which torchvision's networks are defined in.
"""

from __future__ import annotations

from typing import Any

from cnnbench_caffe.im2col import Padded, conv_size
from cnnbench_caffe.layers import LAYERS, Layer


class BatchNorm(Layer):
    """Training-mode batch normalisation over N, H, W per channel, with a learnable scale ("weight") and
    shift ("bias"): Caffe's BatchNorm followed by its Scale layer with a bias term. The running statistics
    are updated as PyTorch does (the spec's ``momentum`` is the weight of the batch's statistics; the
    running variance takes the unbiased batch variance) and kept in ``state``; they are not parameters."""

    type = "batchnorm"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        xp = self.xp
        n, c, h, w = self.inputs[0].shape
        self.eps, self.momentum = float(params["eps"]), float(params["momentum"])
        self.count = n * h * w
        self._param("weight", (c,))
        self._param("bias", (c,))
        self.weights["weight"].fill(1)
        self.state = {"running_mean": xp.zeros(c, self.dtype), "running_var": xp.ones(c, self.dtype)}
        self.mean = xp.empty((1, c, 1, 1), self.dtype)
        self.var = xp.empty((1, c, 1, 1), self.dtype)
        self.inv_std = xp.empty((1, c, 1, 1), self.dtype)
        self.xhat = xp.empty_like(self.inputs[0])
        self.output = xp.empty_like(self.inputs[0])
        self.dx = self._input_grad()

    def forward(self) -> None:
        xp, x, c = self.xp, self.inputs[0], self.mean.shape[1]
        xp.mean(x, axis=(0, 2, 3), keepdims=True, out=self.mean)
        xp.subtract(x, self.mean, out=self.xhat)
        # The biased variance normalises (Caffe and every framework); xhat holds x - mean meanwhile.
        xp.multiply(self.xhat, self.xhat, out=self.output)
        xp.mean(self.output, axis=(0, 2, 3), keepdims=True, out=self.var)
        xp.add(self.var, self.eps, out=self.inv_std)
        xp.sqrt(self.inv_std, out=self.inv_std)
        xp.divide(1.0, self.inv_std, out=self.inv_std)
        xp.multiply(self.xhat, self.inv_std, out=self.xhat)
        xp.multiply(self.xhat, self.weights["weight"].reshape(1, c, 1, 1), out=self.output)
        xp.add(self.output, self.weights["bias"].reshape(1, c, 1, 1), out=self.output)
        m = self.momentum
        unbiased = self.count / (self.count - 1) if self.count > 1 else 1.0
        running_mean, running_var = self.state["running_mean"], self.state["running_var"]
        running_mean *= 1 - m
        running_mean += m * self.mean.reshape(c)
        running_var *= 1 - m
        running_var += (m * unbiased) * self.var.reshape(c)

    def backward(self, dy: Any) -> list[Any]:
        xp, c = self.xp, self.mean.shape[1]
        dgamma, dbeta = self.grads["weight"], self.grads["bias"]
        xp.sum(dy, axis=(0, 2, 3), out=dbeta)
        # output is free until the next forward: it takes dy * xhat.
        xp.multiply(dy, self.xhat, out=self.output)
        xp.sum(self.output, axis=(0, 2, 3), out=dgamma)
        if self.dx is None:
            return [None]
        # dx = gamma / std / M * (M dy - sum dy - xhat sum(dy xhat))
        xp.multiply(self.xhat, dgamma.reshape(1, c, 1, 1), out=self.dx)
        xp.add(self.dx, dbeta.reshape(1, c, 1, 1), out=self.dx)
        xp.multiply(self.dx, 1.0 / self.count, out=self.dx)
        xp.subtract(dy, self.dx, out=self.dx)
        xp.multiply(self.dx, (self.weights["weight"].reshape(1, c, 1, 1) * self.inv_std), out=self.dx)
        return [self.dx]


class Add(Layer):
    """Element-wise sum (Caffe's Eltwise SUM): every input gets the output's gradient as it is."""

    type = "add"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        self.output = self.xp.empty_like(self.inputs[0])

    def forward(self) -> None:
        xp = self.xp
        xp.add(self.inputs[0], self.inputs[1], out=self.output)
        for x in self.inputs[2:]:
            xp.add(self.output, x, out=self.output)

    def backward(self, dy: Any) -> list[Any]:
        # The same array for each: every consumer of a gradient only reads it.
        return [dy if needed else None for needed in self.grad_inputs]


class GlobalPool(Layer):
    """The average over the whole height and width (Caffe's Pooling with global_pooling), C x H x W -> C."""

    type = "global_pool"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        n, c, h, w = self.inputs[0].shape
        self.area = h * w
        self.output = self.xp.empty((n, c), self.dtype)
        self.dx = self._input_grad()

    def forward(self) -> None:
        self.xp.mean(self.inputs[0], axis=(2, 3), out=self.output)

    def backward(self, dy: Any) -> list[Any]:
        if self.dx is None:
            return [None]
        self.xp.copyto(self.dx, dy[:, :, None, None])
        self.xp.multiply(self.dx, 1.0 / self.area, out=self.dx)
        return [self.dx]


class ChannelScale(Layer):
    """Squeeze-and-excitation's scaling: ``y[n, c] = x[n, c] * s[n, c]`` for inputs [x (C x H x W), s (C)]."""

    type = "channel_scale"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        self.output = self.xp.empty_like(self.inputs[0])
        self.dx = self._input_grad(0)
        self.ds = self._input_grad(1)
        self.product = self.xp.empty_like(self.inputs[0]) if self.ds is not None else None

    def forward(self) -> None:
        x, s = self.inputs
        self.xp.multiply(x, s[:, :, None, None], out=self.output)

    def backward(self, dy: Any) -> list[Any]:
        xp, (x, s) = self.xp, self.inputs
        if self.dx is not None:
            xp.multiply(dy, s[:, :, None, None], out=self.dx)
        if self.ds is not None:
            xp.multiply(dy, x, out=self.product)
            xp.sum(self.product, axis=(2, 3), out=self.ds)
        return [self.dx, self.ds]


class _Activation(Layer):
    """An element-wise function with its derivative; ``derivative`` fills ``self.slope`` from the saved
    input and output, which backward multiplies with dy."""

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        self.output = self.xp.empty_like(self.inputs[0])
        self.dx = self._input_grad()
        self.slope = self.xp.empty_like(self.inputs[0]) if self.dx is not None else None

    def derivative(self) -> None:
        raise NotImplementedError

    def backward(self, dy: Any) -> list[Any]:
        if self.dx is None:
            return [None]
        self.derivative()
        self.xp.multiply(dy, self.slope, out=self.dx)
        return [self.dx]


class ReLU6(_Activation):
    """min(max(x, 0), 6); the gradient is 1 strictly inside (0, 6), as PyTorch's hardtanh backward."""

    type = "relu6"

    def forward(self) -> None:
        self.xp.clip(self.inputs[0], 0, 6, out=self.output)

    def derivative(self) -> None:
        xp, x = self.xp, self.inputs[0]
        xp.multiply(xp.greater(x, 0), xp.less(x, 6), out=self.slope)


class Sigmoid(_Activation):
    """1 / (1 + e^-x), computed as (1 + tanh(x / 2)) / 2, which overflows for no x; dy * y (1 - y)."""

    type = "sigmoid"

    def forward(self) -> None:
        xp, y = self.xp, self.output
        xp.multiply(self.inputs[0], 0.5, out=y)
        xp.tanh(y, out=y)
        xp.add(y, 1, out=y)
        xp.multiply(y, 0.5, out=y)

    def derivative(self) -> None:
        xp, y = self.xp, self.output
        xp.subtract(1, y, out=self.slope)
        xp.multiply(self.slope, y, out=self.slope)


class SiLU(_Activation):
    """x * sigmoid(x) (Caffe's Swish with beta 1); the derivative is s (1 + x (1 - s))."""

    type = "silu"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        self.sig = self.xp.empty_like(self.inputs[0])

    def forward(self) -> None:
        xp, s = self.xp, self.sig
        xp.multiply(self.inputs[0], 0.5, out=s)
        xp.tanh(s, out=s)
        xp.add(s, 1, out=s)
        xp.multiply(s, 0.5, out=s)
        xp.multiply(self.inputs[0], s, out=self.output)

    def derivative(self) -> None:
        xp, s, x = self.xp, self.sig, self.inputs[0]
        xp.subtract(1, s, out=self.slope)
        xp.multiply(self.slope, x, out=self.slope)
        xp.add(self.slope, 1, out=self.slope)
        xp.multiply(self.slope, s, out=self.slope)


class HardSwish(_Activation):
    """x * relu6(x + 3) / 6 (MobileNetV3); the gradient is 0 below -3, x / 3 + 1/2 up to 3 and 1 above,
    PyTorch's choice at the kinks."""

    type = "hardswish"

    def forward(self) -> None:
        xp, x, y = self.xp, self.inputs[0], self.output
        xp.add(x, 3, out=y)
        xp.clip(y, 0, 6, out=y)
        xp.multiply(y, x, out=y)
        xp.multiply(y, 1.0 / 6, out=y)

    def derivative(self) -> None:
        xp, x, slope = self.xp, self.inputs[0], self.slope
        xp.multiply(x, 1.0 / 3, out=slope)
        xp.add(slope, 0.5, out=slope)
        xp.multiply(slope, xp.greater_equal(x, -3), out=slope)
        xp.copyto(slope, 1.0, where=xp.greater(x, 3))


class DepthwiseConv(Layer):
    """A convolution with one group per channel and one filter per group (MobileNet's and EfficientNet's
    depthwise convolutions). im2col + GEMM would make C products of one row each; here the kernel offsets
    are the loop instead — kh*kw multiply-adds, each over the whole batch and every channel at once."""

    type = "conv"

    def __init__(self, name, params, inputs, grad_inputs, backend, columns: Any = None):
        super().__init__(name, params, inputs, grad_inputs, backend)
        xp = self.xp
        n, c, h, w = self.inputs[0].shape
        self.kernel, self.stride, self.pad = tuple(params["kernel"]), tuple(params["stride"]), tuple(params["pad"])
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        oh, ow = conv_size(h, kh, sh, ph), conv_size(w, kw, sw, pw)
        self._param("weight", (c, 1, kh, kw))
        if params["bias"]:
            self._param("bias", (c,))
        self.padded = Padded(backend, self.inputs[0], self.pad)
        self.output = xp.empty((n, c, oh, ow), self.dtype)
        self.product = xp.empty((n, c, oh, ow), self.dtype)
        # (output slice of the padded image) per kernel offset, row-major.
        self.windows = [(i, j, (slice(None), slice(None), slice(i, i + sh * (oh - 1) + 1, sh),
                                slice(j, j + sw * (ow - 1) + 1, sw))) for i in range(kh) for j in range(kw)]
        self.dx = self._input_grad()
        if self.dx is not None:
            self.dx_padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), self.dtype)
            self.dx_inside = self.dx_padded[:, :, ph:ph + h, pw:pw + w]

    def forward(self) -> None:
        xp, out, x = self.xp, self.output, self.padded.load()
        weight = self.weights["weight"]
        if "bias" in self.weights:
            out[...] = self.weights["bias"][None, :, None, None]
        else:
            out.fill(0)
        for i, j, window in self.windows:
            xp.multiply(x[window], weight[None, :, 0, i, j, None, None], out=self.product)
            xp.add(out, self.product, out=out)

    def backward(self, dy: Any) -> list[Any]:
        xp, x = self.xp, self.padded.buffer
        weight, dw = self.weights["weight"], self.grads["weight"]
        if "bias" in self.grads:
            xp.sum(dy, axis=(0, 2, 3), out=self.grads["bias"])
        for i, j, window in self.windows:
            # One pass, no product array: 3x faster than multiply-then-sum through NumPy (8x144x56x56, fp32).
            dw[:, 0, i, j] = xp.einsum("nchw,nchw->c", x[window], dy)
        if self.dx is None:
            return [None]
        self.dx_padded.fill(0)
        for i, j, window in self.windows:
            target = self.dx_padded[window]
            xp.multiply(dy, weight[None, :, 0, i, j, None, None], out=self.product)
            xp.add(target, self.product, out=target)
        xp.copyto(self.dx, self.dx_inside)
        return [self.dx]


def is_depthwise(params: dict, channels: int) -> bool:
    return params["groups"] == channels == params["filters"] and channels > 1


def layer_class(layer: Any) -> Any:
    """The engine's class for a spec layer, or None where the engine has none."""
    if layer.type == "conv" and is_depthwise(layer.params, layer.input_shapes[0][0]):
        return DepthwiseConv
    return MODERN_LAYERS.get(layer.type) or LAYERS.get(layer.type)


MODERN_LAYERS: dict[str, type[Layer]] = {
    cls.type: cls for cls in (BatchNorm, Add, GlobalPool, ChannelScale, ReLU6, Sigmoid, SiLU, HardSwish)
}
