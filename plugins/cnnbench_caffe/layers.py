"""The engine's layers, forward and backward, computed the way Caffe computes them.

Each layer is bound at construction to its input arrays and makes its output and every buffer it needs
once; ``forward()`` and ``backward(dy)`` then only write into them (``out=`` everywhere), so a training
step allocates almost nothing. The code is written against ``xp`` (NumPy or CuPy, see ``backend.py``).

References are to Caffe's sources (``src/caffe/layers/*.cpp``), whose formulas these follow.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

from cnnbench_caffe.backend import Backend
from cnnbench_caffe.im2col import Padded, col2im, conv_size, im2col, offsets, pool_size


class Layer:
    """One layer bound to its inputs.

    ``weights`` and ``grads`` map "weight" / "bias" to arrays in the canonical layout; ``output`` is the
    array ``forward()`` writes; ``backward(dy)`` fills ``grads`` and returns one gradient per input, or
    None where ``grad_inputs`` says that input needs none (Caffe's ``propagate_down``).
    """

    type: ClassVar[str]

    def __init__(self, name: str, params: dict, inputs: Sequence[Any], grad_inputs: Sequence[bool],
                 backend: Backend):
        self.name = name
        self.params = params
        self.inputs = list(inputs)
        self.grad_inputs = list(grad_inputs)
        self.backend = backend
        self.xp = backend.xp
        self.dtype = self.inputs[0].dtype
        self.batch = self.inputs[0].shape[0]
        self.weights: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.output: Any = None

    def _param(self, key: str, shape: tuple[int, ...]) -> None:
        self.weights[key] = self.xp.zeros(shape, self.dtype)
        self.grads[key] = self.xp.zeros(shape, self.dtype)

    def _input_grad(self, index: int = 0) -> Any:
        return self.xp.empty_like(self.inputs[index]) if self.grad_inputs[index] else None

    def forward(self) -> None:
        raise NotImplementedError

    def backward(self, dy: Any) -> list[Any]:
        raise NotImplementedError


class Conv(Layer):
    """Convolution as im2col + GEMM (``conv_layer.cpp``, ``base_conv_layer.cpp``), with groups.

    ``columns``: a flat buffer shared by all convolutions, for when per-layer column matrices would not
    fit; the backward pass then lowers the input again, as Caffe does. Without it the layer keeps its
    own column matrix from forward to backward.
    """

    type = "conv"

    def __init__(self, name, params, inputs, grad_inputs, backend, columns: Any = None):
        super().__init__(name, params, inputs, grad_inputs, backend)
        xp = self.xp
        n, c, h, w = self.inputs[0].shape
        f, g = params["filters"], params["groups"]
        self.kernel, self.stride, self.pad = tuple(params["kernel"]), tuple(params["stride"]), tuple(params["pad"])
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        self.out_hw = (conv_size(h, kh, sh, ph), conv_size(w, kw, sw, pw))
        self.groups = g
        self._param("weight", (f, c // g, kh, kw))
        if params["bias"]:
            self._param("bias", (f,))
        self.padded = Padded(backend, self.inputs[0], self.pad)
        rows, cols = c * kh * kw, n * self.out_hw[0] * self.out_hw[1]
        self.relower = columns is not None
        flat = columns[: rows * cols] if columns is not None else xp.empty(rows * cols, self.dtype)
        self.col = flat.reshape(g, rows // g, cols)
        # The GEMM's result, [F, N*oh*ow]; in backward, dy in the same order.
        self.by_filter = xp.empty((g, f // g, cols), self.dtype)
        self.dw_t = xp.empty((g, rows // g, f // g), self.dtype)
        self.output = xp.empty((n, f, *self.out_hw), self.dtype)
        self.dx = self._input_grad()
        self.where = offsets(self.kernel, self.stride, self.pad, (h, w), self.out_hw)

    def _lower(self) -> None:
        im2col(self.backend, self.padded.load(), self.col, self.kernel, self.stride, self.out_hw)

    def forward(self) -> None:
        xp = self.xp
        self._lower()
        weight = self.weights["weight"]
        xp.matmul(weight.reshape(self.groups, weight.shape[0] // self.groups, -1), self.col, out=self.by_filter)
        n, f = self.output.shape[:2]
        out = self.output.reshape(n, f, -1)
        by_image = self.by_filter.reshape(f, n, -1).transpose(1, 0, 2)
        if "bias" in self.weights:
            xp.add(by_image, self.weights["bias"][:, None], out=out)
        else:
            xp.copyto(out, by_image)

    def backward(self, dy: Any) -> list[Any]:
        xp = self.xp
        n, f = self.output.shape[:2]
        g = self.groups
        dy_t = self.by_filter
        xp.copyto(dy_t.reshape(f, n, -1), dy.reshape(n, f, -1).transpose(1, 0, 2))
        if "bias" in self.grads:
            xp.sum(dy_t.reshape(f, -1), axis=1, out=self.grads["bias"])
        if self.relower:
            self._lower()
        # dW^T = columns . dy^T, then transposed: OpenBLAS ran dW = dy . columns^T (few rows, a long
        # inner dimension) 1.3-4x slower on alexnet's layers than this taller product.
        xp.matmul(self.col, dy_t.transpose(0, 2, 1), out=self.dw_t)
        xp.copyto(self.grads["weight"].reshape(g, f // g, -1), self.dw_t.transpose(0, 2, 1))
        if self.dx is None:
            return [None]
        weight = self.weights["weight"].reshape(g, f // g, -1)
        # The column matrix is not needed any more: its buffer takes the columns' gradient.
        xp.matmul(weight.transpose(0, 2, 1), dy_t, out=self.col)
        col2im(self.backend, self.col, self.dx, self.kernel, self.where, self.out_hw)
        return [self.dx]


class Pool(Layer):
    """Max and average pooling (``pooling_layer.cpp``): Caffe's rounding, max over the window clipped
    to the image, the average divided by the window clipped to the *padded* image."""

    type = "pool"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        xp = self.xp
        n, c, h, w = self.inputs[0].shape
        self.kernel, self.stride, self.pad = tuple(params["kernel"]), tuple(params["stride"]), tuple(params["pad"])
        ceil = params["round"] == "ceil"
        self.max = params["mode"] == "max"
        out_hw = tuple(pool_size(s, k, st, p, ceil) for s, k, st, p in zip((h, w), self.kernel, self.stride, self.pad))
        self.where = offsets(self.kernel, self.stride, self.pad, (h, w), out_hw)
        self.output = xp.empty((n, c, *out_hw), self.dtype)
        self.dx = self._input_grad()
        if self.max:
            self.mask = xp.empty(self.output.shape, bool)
            # Which kernel offset won, for the backward pass (Caffe keeps the input index instead).
            self.argmax = xp.empty(self.output.shape, xp.uint8 if math.prod(self.kernel) <= 256 else xp.int32)
            self.scratch = xp.empty(self.output.shape, self.dtype)
            self.scratch_index = xp.empty(self.output.shape, self.argmax.dtype)
        else:
            # Caffe's divisor: hend = min(hstart + k, H + pad), taken before hstart is clipped to 0.
            sizes = []
            for size, k, st, p, o in zip((h, w), self.kernel, self.stride, self.pad, out_hw):
                starts = [y * st - p for y in range(o)]
                sizes.append([min(s0 + k, size + p) - s0 for s0 in starts])
            inverse = [[1.0 / (a * b) for b in sizes[1]] for a in sizes[0]]
            self.inverse = backend.asarray(inverse, self.dtype)
            self.scaled = xp.empty(self.output.shape, self.dtype)

    def forward(self) -> None:
        xp, x, out = self.xp, self.inputs[0], self.output
        full = (slice(None), slice(None))
        if self.max:
            out.fill(-math.inf)
            self.argmax.fill(0)
            for offset in self.where:
                candidate = x[(*full, *offset.image)]
                best = out[(*full, *offset.out)]
                # Strictly greater: the first maximum in Caffe's (row-major) order wins.
                better = xp.greater(candidate, best, out=self.mask[(*full, *offset.out)])
                xp.maximum(best, candidate, out=best)
                # Offsets come in increasing order, so a new winner's index is larger than the one it
                # replaces: max(argmax, better * index) records it without a masked copy (which NumPy
                # runs 5-10x slower than this arithmetic on random masks).
                won = xp.multiply(better.view(xp.uint8), self.argmax.dtype.type(offset.index),
                                  out=self.scratch_index[(*full, *offset.out)])
                winners = self.argmax[(*full, *offset.out)]
                xp.maximum(winners, won, out=winners)
        else:
            out.fill(0)
            for offset in self.where:
                window = out[(*full, *offset.out)]
                xp.add(window, x[(*full, *offset.image)], out=window)
            xp.multiply(out, self.inverse, out=out)

    def backward(self, dy: Any) -> list[Any]:
        if self.dx is None:
            return [None]
        xp, dx = self.xp, self.dx
        full = (slice(None), slice(None))
        dx.fill(0)
        if self.max:
            for offset in self.where:
                won = xp.equal(self.argmax[(*full, *offset.out)], offset.index, out=self.mask[(*full, *offset.out)])
                share = xp.multiply(dy[(*full, *offset.out)], won, out=self.scratch[(*full, *offset.out)])
                target = dx[(*full, *offset.image)]
                xp.add(target, share, out=target)
        else:
            xp.multiply(dy, self.inverse, out=self.scaled)
            for offset in self.where:
                target = dx[(*full, *offset.image)]
                xp.add(target, self.scaled[(*full, *offset.out)], out=target)
        return [dx]


class LRN(Layer):
    """Local response normalisation across channels (``lrn_layer.cpp``, ACROSS_CHANNELS):
    ``scale = k + alpha / n * sum of x^2 over the n channels around c``, ``y = x * scale^-beta``."""

    type = "lrn"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        xp = self.xp
        n, c, h, w = self.inputs[0].shape
        self.size = params["local_size"]
        self.alpha, self.beta, self.k = float(params["alpha"]), float(params["beta"]), float(params["k"])
        # Caffe's window for channel c: [c - pre_pad, c - pre_pad + size), pre_pad = (size - 1) / 2.
        self.pre_pad = (self.size - 1) // 2
        self.channels = c
        self.padded = xp.zeros((n, c + self.size - 1, h, w), self.dtype)
        self.scale = xp.empty((n, c, h, w), self.dtype)
        self.power = xp.empty((n, c, h, w), self.dtype)  # scale^-beta
        self.output = xp.empty((n, c, h, w), self.dtype)
        self.dx = self._input_grad()
        if self.dx is not None:
            self.acc = xp.empty((n, c, h, w), self.dtype)

    def _window_sum(self, padded: Any, out: Any) -> None:
        """out[:, c] = sum of padded[:, c + o] over the window's offsets o (a loop over local_size)."""
        c = self.channels
        self.xp.copyto(out, padded[:, 0:c])
        for o in range(1, self.size):
            self.xp.add(out, padded[:, o:o + c], out=out)

    def forward(self) -> None:
        xp, x, c = self.xp, self.inputs[0], self.channels
        inside = self.padded[:, self.pre_pad:self.pre_pad + c]
        xp.multiply(x, x, out=inside)
        self._window_sum(self.padded, self.scale)
        xp.multiply(self.scale, self.alpha / self.size, out=self.scale)
        xp.add(self.scale, self.k, out=self.scale)
        xp.power(self.scale, -self.beta, out=self.power)
        xp.multiply(x, self.power, out=self.output)

    def backward(self, dy: Any) -> list[Any]:
        if self.dx is None:
            return [None]
        # Caffe: dx = dy * scale^-beta - 2 alpha beta / n * x * sum over the windows that contain c
        # of dy * y / scale. Channel c is in the windows of c' in [c - (size-1-pre_pad), c + pre_pad].
        xp, x, c = self.xp, self.inputs[0], self.channels
        post = self.size - 1 - self.pre_pad
        inside = self.padded[:, post:post + c]
        if post != self.pre_pad:
            self.padded.fill(0)
        xp.multiply(dy, self.output, out=inside)
        xp.divide(inside, self.scale, out=inside)
        self._window_sum(self.padded, self.acc)
        xp.multiply(self.acc, x, out=self.acc)
        xp.multiply(self.acc, -2.0 * self.alpha * self.beta / self.size, out=self.acc)
        xp.multiply(dy, self.power, out=self.dx)
        xp.add(self.dx, self.acc, out=self.dx)
        # The forward pass reuses the padded buffer with its zero border where it expects it.
        if post != self.pre_pad:
            self.padded.fill(0)
        return [self.dx]


class FC(Layer):
    """Caffe's InnerProduct (``inner_product_layer.cpp``): ``y = x W^T + b`` on the input flattened
    per image in C, H, W order."""

    type = "fc"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        x = self.inputs[0]
        self.flat = x.reshape(self.batch, -1)
        outputs = params["outputs"]
        self._param("weight", (outputs, self.flat.shape[1]))
        if params["bias"]:
            self._param("bias", (outputs,))
        self.output = self.xp.empty((self.batch, outputs), self.dtype)
        self.dx = self._input_grad()

    def forward(self) -> None:
        xp = self.xp
        xp.matmul(self.flat, self.weights["weight"].T, out=self.output)
        if "bias" in self.weights:
            xp.add(self.output, self.weights["bias"], out=self.output)

    def backward(self, dy: Any) -> list[Any]:
        xp = self.xp
        xp.matmul(dy.T, self.flat, out=self.grads["weight"])
        if "bias" in self.grads:
            xp.sum(dy, axis=0, out=self.grads["bias"])
        if self.dx is None:
            return [None]
        xp.matmul(dy, self.weights["weight"], out=self.dx.reshape(self.batch, -1))
        return [self.dx]


class ReLU(Layer):
    type = "relu"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        self.output = self.xp.empty_like(self.inputs[0])
        self.dx = self._input_grad()
        self.mask = self.xp.empty(self.output.shape, bool)

    def forward(self) -> None:
        self.xp.maximum(self.inputs[0], 0, out=self.output)

    def backward(self, dy: Any) -> list[Any]:
        if self.dx is None:
            return [None]
        # Caffe: dx = dy * (x > 0); y > 0 exactly where x > 0.
        self.xp.greater(self.output, 0, out=self.mask)
        self.xp.multiply(dy, self.mask, out=self.dx)
        return [self.dx]


class Dropout(Layer):
    """Caffe's dropout (``dropout_layer.cpp``): at train time keep each unit with probability 1 - p and
    scale kept ones by 1 / (1 - p) (inverted dropout), so the test-time pass is the identity."""

    type = "dropout"

    def __init__(self, name, params, inputs, grad_inputs, backend, train: bool = True, seed: int = 0):
        super().__init__(name, params, inputs, grad_inputs, backend)
        xp = self.xp
        self.ratio = params["ratio"]
        self.active = train and self.ratio > 0
        self.output = xp.empty_like(self.inputs[0])
        self.dx = self._input_grad()
        if self.active:
            self.random = backend.random(seed)
            self.uniform = xp.empty(self.output.shape, self.dtype)
            self.keep = xp.empty(self.output.shape, bool)
            self.factor = xp.empty(self.output.shape, self.dtype)

    def forward(self) -> None:
        xp, x = self.xp, self.inputs[0]
        if not self.active:
            xp.copyto(self.output, x)
            return
        self.random.uniform_(self.uniform)
        xp.greater_equal(self.uniform, self.ratio, out=self.keep)
        xp.multiply(self.keep, self.dtype.type(1.0 / (1.0 - self.ratio)), out=self.factor)
        xp.multiply(x, self.factor, out=self.output)

    def backward(self, dy: Any) -> list[Any]:
        if self.dx is None:
            return [None]
        if self.active:
            self.xp.multiply(dy, self.factor, out=self.dx)
        else:
            self.xp.copyto(self.dx, dy)
        return [self.dx]


class Flatten(Layer):
    """A view of the input as [N, C*H*W]: nothing to compute either way."""

    type = "flatten"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        self.output = self.inputs[0].reshape(self.batch, -1)

    def forward(self) -> None:
        pass

    def backward(self, dy: Any) -> list[Any]:
        return [dy.reshape(self.inputs[0].shape) if self.grad_inputs[0] else None]


class Concat(Layer):
    """Concatenation along channels (``concat_layer.cpp``, axis 1)."""

    type = "concat"

    def __init__(self, name, params, inputs, grad_inputs, backend):
        super().__init__(name, params, inputs, grad_inputs, backend)
        rest = {tuple(x.shape[:1]) + tuple(x.shape[2:]) for x in self.inputs}
        if len(rest) != 1:
            raise ValueError(f"layer '{name}': concat inputs differ beyond the channel axis: "
                             f"{[tuple(x.shape) for x in self.inputs]}")
        bounds = [0]
        for x in self.inputs:
            bounds.append(bounds[-1] + x.shape[1])
        self.spans = list(zip(bounds[:-1], bounds[1:]))
        first = self.inputs[0]
        self.output = self.xp.empty((first.shape[0], bounds[-1], *first.shape[2:]), self.dtype)

    def forward(self) -> None:
        for x, (start, stop) in zip(self.inputs, self.spans):
            self.xp.copyto(self.output[:, start:stop], x)

    def backward(self, dy: Any) -> list[Any]:
        # Views of dy: every consumer of a gradient only reads it.
        return [dy[:, start:stop] if needed else None for (start, stop), needed in zip(self.spans, self.grad_inputs)]


class SoftmaxLoss(Layer):
    """Softmax cross-entropy averaged over the batch (``softmax_loss_layer.cpp``, normalisation VALID
    with every label valid). ``loss`` stays a 0-d device array, so a step never waits for the GPU."""

    type = "softmax_loss"

    def __init__(self, name, params, inputs, grad_inputs, backend, labels: Any = None):
        super().__init__(name, params, inputs, grad_inputs, backend)
        xp = self.xp
        n, classes = self.inputs[0].shape
        self.labels = labels if labels is not None else xp.zeros(n, xp.int64)
        self.prob = xp.empty((n, classes), self.dtype)
        self.top = xp.empty((n, 1), self.dtype)
        self.total = xp.empty((n, 1), self.dtype)
        self.picked = xp.empty((n, 1), self.dtype)
        self.dx = xp.empty((n, classes), self.dtype)
        self.rows = xp.arange(n)
        self.loss = xp.zeros((), self.dtype)
        self.output = self.loss

    def forward(self) -> None:
        xp, logits, prob = self.xp, self.inputs[0], self.prob
        rows = self.labels[:, None]
        xp.max(logits, axis=1, keepdims=True, out=self.top)
        xp.subtract(logits, self.top, out=prob)
        # log p[label] = (logit[label] - max) - log(sum exp(logit - max))
        self.picked[...] = xp.take_along_axis(prob, rows, axis=1)
        xp.exp(prob, out=prob)
        xp.sum(prob, axis=1, keepdims=True, out=self.total)
        xp.divide(prob, self.total, out=prob)
        xp.log(self.total, out=self.total)
        xp.subtract(self.total, self.picked, out=self.total)
        xp.mean(self.total, out=self.loss)

    def backward(self, dy: Any = None) -> list[Any]:
        xp, n = self.xp, self.batch
        # d loss / d logits = (softmax - one_hot(label)) / N
        xp.copyto(self.dx, self.prob)
        self.dx[self.rows, self.labels] -= 1
        xp.multiply(self.dx, 1.0 / n, out=self.dx)
        return [self.dx]


LAYERS: dict[str, type[Layer]] = {
    cls.type: cls for cls in (Conv, Pool, LRN, FC, ReLU, Dropout, Flatten, Concat, SoftmaxLoss)
}
