"""Build a TensorFlow network from a cnnbench network spec (the loss layer is applied by the step).

The network is a plain object holding float32 ``tf.Variable``s and a plan of ``tf.nn`` calls, run inside
the adapter's ``tf.function``. Mixed precision is the Keras policy's rule written out: variables stay
float32 and are cast to the compute dtype where they are used; the logits go back to float32 for the loss.

Layout: NHWC or NCHW (the adapter picks one per device). Everything the canonical layout of
``FrameworkAdapter.verify`` depends on is converted at load time, never per step:

- convolution weights: canonical ``[out, in/groups, kh, kw]`` <-> TensorFlow's ``[kh, kw, in/groups, out]``;
- fully connected weights: canonical ``[out, in]`` <-> ``[in, out]``, and in NHWC a 3-D input flattens in
  H, W, C order, not the canonical C, H, W: instead of transposing every activation back to NCHW before
  the flatten, the rows of the weight are permuted once (``SpecNet.perms`` records the order of every
  flattened blob).

Imported only inside the adapter's worker-side methods, once TensorFlow is wanted anyway.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from cnnbench.adapter import Unsupported
from cnnbench.spec import Layer, NetworkSpec
from cnnbench_tensorflow.modern import ORDER_KEEPING, ModernLayers

LAYOUTS = ("NHWC", "NCHW")


def chw_order(shape: tuple[int, ...], layout: str) -> np.ndarray | None:
    """For a [C, H, W] blob flattened in ``layout``: the canonical (C, H, W) index of every position of
    the flat vector, or None where the two orders agree."""
    c, h, w = shape
    if layout == "NCHW" or c == 1 or h * w == 1:
        return None
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


def window_padding(size: int, kernel: int, stride: int, pad: int, out: int) -> tuple[int, int]:
    """(before, after) padding that makes a VALID window give Caffe's ``out`` positions: the spec's
    ``pad`` before, and after it as much as the last window needs (ceil rounding may reach past the
    bottom/right pad; floor rounding may leave rows unused, which VALID skips)."""
    need = (out - 1) * stride + kernel - size - pad
    return pad, max(need, 0)


def same_matches(size: int, kernel: int, stride: int, pad: int, out: int) -> bool:
    """Whether TensorFlow's "SAME" padding puts every window where the spec's explicit pad does."""
    if -(-size // stride) != out:
        return False
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2 == pad


def caffe_avg_scale(size: int, kernel: int, stride: int, pad: int, out: int) -> np.ndarray:
    """Per output position, kernel / Caffe's divisor: the window clipped to the *padded* image
    (``hend = min(hstart + k, H + pad)`` before hstart is clipped), while a VALID average over a
    zero-padded input always divides by the kernel."""
    starts = np.arange(out) * stride - pad
    return kernel / (np.minimum(starts + kernel, size + pad) - starts)


class SpecNet(ModernLayers):
    """The network of a spec in ``layout`` computing in ``dtype``; ``net(x, training)`` -> float32 logits
    in canonical order. ``params[layer][kind]`` are the float32 variables."""

    def __init__(self, spec: NetworkSpec, layout: str = "NHWC", dtype: tf.DType = tf.float32, seed: int = 0):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout '{layout}'; valid choices: {', '.join(LAYOUTS)}")
        self.spec, self.layout, self.dtype = spec, layout, dtype
        self.channel_axis = 3 if layout == "NHWC" else 1
        self.params: dict[str, dict[str, tf.Variable]] = {}
        #: Non-trainable variables (batch norm's running statistics), by layer.
        self.state: dict[str, dict[str, tf.Variable]] = {}
        #: Blob -> canonical index of each position of a flat (1-D) blob, None when canonical.
        self.perms: dict[str, np.ndarray | None] = {"data": None}
        #: fc layer -> the order of its weight's rows (the order of its flattened input).
        self.row_order: dict[str, np.ndarray | None] = {}
        self.plan = []
        rng = tf.random.Generator.from_seed(seed)
        for layer in spec.layers:
            if layer.type == "softmax_loss":
                continue
            self.plan.append((layer.name, layer.inputs, self._make(layer, rng)))
        self.output = spec.logits
        perm = self.perms[self.output]
        # Logits only come out of order from a flatten straight into the loss (an fc puts its outputs in
        # order): gather them back once per step.
        self.logits_order = None if perm is None else np.argsort(perm)

    @property
    def variables_in_order(self) -> list[tf.Variable]:
        return [var for kinds in self.params.values() for var in kinds.values()]

    # -- building ---------------------------------------------------------------------------------

    def _variable(self, layer: str, kind: str, shape: tuple[int, ...], fan_in: int, rng) -> None:
        # PyTorch's default initialisation (uniform within 1/sqrt(fan_in)): the values do not change the
        # timing, but they keep activations finite and away from denormals in every network.
        bound = 1.0 / math.sqrt(fan_in)
        value = rng.uniform(shape, -bound, bound, dtype=tf.float32)
        self.params.setdefault(layer, {})[kind] = tf.Variable(value, name=f"{layer}/{kind}")

    def _spatial(self, pairs: list[tuple[int, int]]) -> list[list[int]]:
        """Per-axis [before, after] for (H, W) as a 4-D list in this layout."""
        if self.layout == "NHWC":
            return [[0, 0], list(pairs[0]), list(pairs[1]), [0, 0]]
        return [[0, 0], [0, 0], list(pairs[0]), list(pairs[1])]

    def _make(self, layer: Layer, rng):
        p, name = layer.params, layer.name
        maker = getattr(self, f"_make_{layer.type}", None)
        if maker is None:
            raise Unsupported(f"the tensorflow adapter cannot build layer '{name}' of type '{layer.type}'")
        fn = maker(layer, p, rng)
        if layer.type in ("relu", "dropout", *ORDER_KEEPING):
            self.perms[name] = self.perms[layer.inputs[0]]
        else:
            self.perms.setdefault(name, None)
        return fn

    def _make_conv(self, layer: Layer, p: dict, rng):
        (c, h, w), f, g = layer.input_shapes[0], p["filters"], p["groups"]
        (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["pad"]
        _, oh, ow = layer.output_shape
        fan_in = c // g * kh * kw
        self._variable(layer.name, "weight", (kh, kw, c // g, f), fan_in, rng)
        if p["bias"]:
            self._variable(layer.name, "bias", (f,), fan_in, rng)
        padding, paddings = "VALID", None
        if ph or pw:
            if same_matches(h, kh, sh, ph, oh) and same_matches(w, kw, sw, pw, ow):
                padding = "SAME"  # the common case (stride 1, odd kernel): the same windows
            else:
                # A tf.pad, not conv2d's explicit padding: with explicit padding grappler neither fuses
                # bias and ReLU into oneDNN's convolution nor gives it the weight gradient (Eigen's
                # Conv2DBackpropFilter ran instead; alexnet's conv1 to conv2 at batch 32: 504 ms, 388 ms
                # with tf.pad; see bench/README.md).
                paddings = self._spatial([(ph, ph), (pw, pw)])
        strides = [1, sh, sw, 1] if self.layout == "NHWC" else [1, 1, sh, sw]
        params, dtype, fmt = self.params[layer.name], self.dtype, self.layout
        # One group per channel: TensorFlow's depthwise kernel (its grouped conv2d has no CPU kernel); the
        # variable [kh, kw, 1, C] is the depthwise filter [kh, kw, C, 1] reshaped.
        depthwise = g == c == f and g > 1

        def conv(x):
            if paddings is not None:
                x = tf.pad(x, paddings)
            weight = tf.cast(params["weight"], dtype)
            if depthwise:
                y = tf.nn.depthwise_conv2d(x, tf.reshape(weight, [kh, kw, c, 1]), strides, padding, data_format=fmt)
            else:
                # grouped convolution: the filter's input depth is in / groups, TensorFlow infers the groups
                y = tf.nn.conv2d(x, weight, strides, padding, data_format=fmt)
            if "bias" in params:
                y = tf.nn.bias_add(y, tf.cast(params["bias"], dtype), data_format=fmt)
            return y

        return conv

    def _make_pool(self, layer: Layer, p: dict, rng):
        (_, h, w), (_, oh, ow) = layer.input_shapes[0], layer.output_shape
        (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["pad"]
        pads = [window_padding(h, kh, sh, ph, oh), window_padding(w, kw, sw, pw, ow)]
        ksize = [1, kh, kw, 1] if self.layout == "NHWC" else [1, 1, kh, kw]
        strides = [1, sh, sw, 1] if self.layout == "NHWC" else [1, 1, sh, sw]
        fmt = self.layout
        padded = any(any(pair) for pair in pads)
        if p["mode"] == "max":
            if not padded:
                return lambda x: tf.nn.max_pool2d(x, ksize, strides, "VALID", data_format=fmt)
            if same_matches(h, kh, sh, ph, oh) and same_matches(w, kw, sw, pw, ow):
                # SAME max pooling ignores the padding, as Caffe's window clipped to the image does
                return lambda x: tf.nn.max_pool2d(x, ksize, strides, "SAME", data_format=fmt)
            paddings = self._spatial(pads)

            def max_pool(x):
                # -inf never wins, so the max is over the window clipped to the image, as in Caffe
                x = tf.pad(x, paddings, constant_values=-math.inf)
                return tf.nn.max_pool2d(x, ksize, strides, "VALID", data_format=fmt)

            return max_pool
        scale = np.outer(caffe_avg_scale(h, kh, sh, ph, oh), caffe_avg_scale(w, kw, sw, pw, ow))
        paddings = self._spatial(pads) if padded else None
        if np.allclose(scale, 1.0):
            scale = None
        else:
            scale = scale[:, :, None] if self.layout == "NHWC" else scale[None, :, :]
        dtype = self.dtype

        def avg_pool(x):
            if paddings is not None:
                x = tf.pad(x, paddings)  # zeros: they add nothing to the sum, Caffe counts them
            y = tf.nn.avg_pool2d(x, ksize, strides, "VALID", data_format=fmt)
            if scale is not None:
                # windows that reach past the padded image: Caffe's divisor, not the kernel's area
                y = y * tf.constant(scale, dtype)
            return y

        return avg_pool

    def _make_relu(self, layer: Layer, p: dict, rng):
        return tf.nn.relu

    def _make_dropout(self, layer: Layer, p: dict, rng):
        rate = p["ratio"]

        def dropout(x, training):
            return tf.nn.dropout(x, rate) if training and rate > 0 else x

        dropout.training = True
        return dropout

    def _make_lrn(self, layer: Layer, p: dict, rng):
        n = p["local_size"]
        # Caffe: x / (k + alpha/n * sum of squares over n channels)^beta; TensorFlow's alpha multiplies
        # the sum itself and its window is 2 * depth_radius + 1 channels.
        args = dict(depth_radius=(n - 1) // 2, bias=p["k"], alpha=p["alpha"] / n, beta=p["beta"])
        nchw, dtype = self.layout == "NCHW", self.dtype

        def lrn(x):
            # TensorFlow has no bfloat16 LRN kernel: compute it in float32, as Keras does for
            # layers that have to run in float32 under a mixed policy
            y = tf.cast(x, tf.float32) if dtype == tf.bfloat16 else x
            y = tf.transpose(y, [0, 2, 3, 1]) if nchw else y  # the op is channels-last only
            y = tf.nn.local_response_normalization(y, **args)
            y = tf.transpose(y, [0, 3, 1, 2]) if nchw else y
            return tf.cast(y, dtype)

        return lrn

    def _make_concat(self, layer: Layer, p: dict, rng):
        if len(layer.output_shape) == 3:
            axis = self.channel_axis
        else:
            axis = 1
            orders, offset = [], 0
            for blob, shape in zip(layer.inputs, layer.input_shapes):
                perm = self.perms[blob]
                orders.append((np.arange(shape[0]) if perm is None else perm) + offset)
                offset += shape[0]
            order = np.concatenate(orders)
            self.perms[layer.name] = None if np.array_equal(order, np.arange(offset)) else order
        return lambda *xs: tf.concat(xs, axis)

    def _flat(self, layer: Layer) -> np.ndarray | None:
        shape = layer.input_shapes[0]
        if len(shape) == 3:
            return chw_order(shape, self.layout)
        return self.perms[layer.inputs[0]]

    def _make_flatten(self, layer: Layer, p: dict, rng):
        self.perms[layer.name] = self._flat(layer)
        size = math.prod(layer.input_shapes[0])
        return lambda x: tf.reshape(x, [-1, size])

    def _make_fc(self, layer: Layer, p: dict, rng):
        size, outputs = math.prod(layer.input_shapes[0]), p["outputs"]
        self.row_order[layer.name] = self._flat(layer)
        self._variable(layer.name, "weight", (size, outputs), size, rng)
        if p["bias"]:
            self._variable(layer.name, "bias", (outputs,), size, rng)
        params, dtype, flatten = self.params[layer.name], self.dtype, len(layer.input_shapes[0]) > 1

        def fc(x):
            if flatten:
                x = tf.reshape(x, [-1, size])
            y = tf.matmul(x, tf.cast(params["weight"], dtype))
            if "bias" in params:
                y = tf.nn.bias_add(y, tf.cast(params["bias"], dtype))
            return y

        return fc

    # -- running ----------------------------------------------------------------------------------

    def __call__(self, x, training: bool = True):
        """Logits (float32, canonical order) of a batch in this layout; cast to the compute dtype first."""
        blobs = {"data": tf.cast(x, self.dtype)}
        for name, inputs, fn in self.plan:
            args = [blobs[i] for i in inputs]
            blobs[name] = fn(*args, training) if getattr(fn, "training", False) else fn(*args)
        logits = tf.cast(blobs[self.output], tf.float32)
        if self.logits_order is not None:
            logits = tf.gather(logits, self.logits_order, axis=1)
        return logits

    # -- canonical layout ---------------------------------------------------------------------------

    def to_framework(self, layer: str, kind: str, array: np.ndarray) -> np.ndarray:
        """A canonical array (see ``FrameworkAdapter.verify``) in this network's variable layout."""
        array = np.asarray(array)
        if kind == "bias":
            return array
        if array.ndim == 4:  # [out, in/g, kh, kw] -> [kh, kw, in/g, out]
            return array.transpose(2, 3, 1, 0)
        rows = array.T  # [out, in] -> [in, out], rows in canonical order
        order = self.row_order.get(layer)
        return rows if order is None else rows[order]

    def to_canonical(self, layer: str, kind: str, array: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_framework` (for gradients)."""
        array = np.asarray(array)
        if kind == "bias":
            return array
        if array.ndim == 4:
            return array.transpose(3, 2, 0, 1)
        order = self.row_order.get(layer)
        rows = array if order is None else array[np.argsort(order)]
        return rows.T

    def load(self, weights: dict[str, dict[str, np.ndarray]]) -> None:
        """Assign canonical weights to the variables (converted once, here)."""
        for layer, kinds in self.params.items():
            for kind, var in kinds.items():
                var.assign(self.to_framework(layer, kind, weights[layer][kind]).astype(np.float32))
