"""A cnnbench network spec as a pure JAX function: ``loss(params, images, labels, key) -> (loss, logits)``.

Imported only by the adapter's worker-side methods, once JAX is wanted anyway.

Layout: NCHW activations and the canonical ``[out, in / groups, kh, kw]`` kernels, so the weights of
``cnnbench verify`` load as they are and a fully connected layer flattens in C, H, W order like Caffe's.
XLA picks the physical layout of every tensor itself when it compiles the step (channels-last for the
CPU's convolutions, for one), so the logical layout costs nothing at run time.

Every layer follows Caffe (``cnnbench_caffe`` is the reference): pooling sizes with Caffe's rounding,
averages divided by the window clipped to the padded image, LRN's ``alpha / local_size``, dropout scaling
the kept units at training time and passing everything through otherwise.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnbench.adapter import Unsupported
from cnnbench.spec import Layer, NetworkSpec

Params = dict[str, dict[str, Any]]


def init_params(spec: NetworkSpec, key: Any) -> Params:
    """He-normal weights (activations keep their size through ReLUs) and zero biases, float32."""
    params: Params = {}
    for layer in spec.layers:
        if not layer.param_count:
            continue
        p = layer.params
        if layer.type == "batchnorm":
            channels = layer.input_shapes[0][0]
            params[layer.name] = {"weight": jnp.ones((channels,), jnp.float32),
                                  "bias": jnp.zeros((channels,), jnp.float32)}
            continue
        if layer.type == "conv":
            shape = (p["filters"], layer.input_shapes[0][0] // p["groups"], *p["kernel"])
        else:
            shape = (p["outputs"], math.prod(layer.input_shapes[0]))
        fan_in = math.prod(shape[1:])
        key, sub = jax.random.split(key)
        params[layer.name] = {"weight": jax.random.normal(sub, shape, jnp.float32) * math.sqrt(2.0 / fan_in)}
        if p["bias"]:
            params[layer.name]["bias"] = jnp.zeros((shape[0],), jnp.float32)
    return params


def _pads(layer: Layer) -> list[tuple[int, int, int]]:
    """lax.pad widths of a pooling window's input: Caffe's ``pad`` before, and after whatever makes the
    last window of its rounding fit (more than ``pad`` with ceil rounding, negative — a crop — when
    floor rounding leaves the last rows out)."""
    p = layer.params
    _, height, width = layer.input_shapes[0]
    widths = [(0, 0, 0), (0, 0, 0)]
    for size, out, k, s, q in zip((height, width), layer.output_shape[1:], p["kernel"], p["stride"], p["pad"]):
        widths.append((q, (out - 1) * s + k - size - q, 0))
    return widths


def _avg_divisor(layer: Layer) -> np.ndarray:
    """Caffe's divisor per output position: the window clipped to the padded image, not to the image
    (``hend = min(hstart + k, H + pad)``, taken before ``hstart`` is clipped to 0)."""
    p = layer.params
    sizes = []
    for size, out, k, s, q in zip(layer.input_shapes[0][1:], layer.output_shape[1:], p["kernel"], p["stride"],
                                  p["pad"]):
        sizes.append([min(y * s - q + k, size + q) - (y * s - q) for y in range(out)])
    return 1.0 / np.outer(sizes[0], sizes[1]).astype(np.float32)


def _layer_fn(layer: Layer, precision: Any, dropout_index: int) -> Callable[..., Any]:
    """fn(params of the layer, key, train, *inputs) -> output."""
    p = layer.params
    if layer.type == "conv":
        def conv(w, key, train, x):
            y = lax.conv_general_dilated(x, w["weight"], p["stride"], [(q, q) for q in p["pad"]],
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                         feature_group_count=p["groups"], precision=precision)
            return y + w["bias"][None, :, None, None] if "bias" in w else y
        return conv
    if layer.type == "fc":
        def fc(w, key, train, x):
            y = jnp.dot(x.reshape(x.shape[0], -1), w["weight"].T, precision=precision)
            return y + w["bias"] if "bias" in w else y
        return fc
    if layer.type == "relu":
        # jax.nn.relu, not jnp.maximum(x, 0): the latter sends half the gradient through an exact 0.
        return lambda w, key, train, x: jax.nn.relu(x)
    if layer.type == "pool":
        window, strides, pads = (1, 1, *p["kernel"]), (1, 1, *p["stride"]), _pads(layer)
        if p["mode"] == "max":
            def max_pool(w, key, train, x):
                # -inf padding never wins, which is Caffe's max over the window clipped to the image. A
                # NumPy constant, not a jnp array: only a concrete identity element makes lax use its
                # differentiable max-pool primitive.
                low = np.array(-np.inf, x.dtype)
                return lax.reduce_window(lax.pad(x, low, pads), low, lax.max, window, strides, "VALID")
            return max_pool
        divisor = _avg_divisor(layer)

        def avg_pool(w, key, train, x):
            zero = np.array(0, x.dtype)
            total = lax.reduce_window(lax.pad(x, zero, pads), zero, lax.add, window, strides, "VALID")
            return total * divisor.astype(x.dtype)
        return avg_pool
    if layer.type == "lrn":
        size, alpha, beta, k = p["local_size"], p["alpha"], p["beta"], p["k"]
        before = (size - 1) // 2  # Caffe's window for channel c: [c - before, c - before + size)

        def lrn(w, key, train, x):
            zero = np.array(0, x.dtype)
            squares = lax.pad(x * x, zero, [(0, 0, 0), (before, size - 1 - before, 0), (0, 0, 0), (0, 0, 0)])
            total = lax.reduce_window(squares, zero, lax.add, (1, size, 1, 1), (1, 1, 1, 1), "VALID")
            return x * (k + alpha / size * total) ** -beta
        return lrn
    if layer.type == "dropout":
        keep = 1.0 - p["ratio"]

        def dropout(w, key, train, x):
            if not train or keep == 1.0:
                return x  # the verify contract, and Caffe's test phase: the identity
            mask = jax.random.bernoulli(jax.random.fold_in(key, dropout_index), keep, x.shape)
            return jnp.where(mask, x / jnp.array(keep, x.dtype), jnp.zeros_like(x))
        return dropout
    if layer.type == "flatten":
        return lambda w, key, train, x: x.reshape(x.shape[0], -1)
    if layer.type == "concat":
        return lambda w, key, train, *xs: jnp.concatenate(xs, axis=1)
    if layer.type == "batchnorm":
        eps = p["eps"]

        def batchnorm(w, key, train, x):
            # Training mode, with the batch's statistics (biased variance), reduced in float32 whatever the
            # compute dtype, as Flax's BatchNorm does. A pure function keeps no running statistics: they
            # change no gradient, and XLA would drop their update as dead code anyway.
            x32 = x.astype(jnp.float32)
            mean = jnp.mean(x32, axis=(0, 2, 3), keepdims=True)
            var = jnp.mean(jnp.square(x32 - mean), axis=(0, 2, 3), keepdims=True)
            y = (x32 - mean) * lax.rsqrt(var + eps)
            return (y * w["weight"][None, :, None, None].astype(jnp.float32)
                    + w["bias"][None, :, None, None].astype(jnp.float32)).astype(x.dtype)
        return batchnorm
    if layer.type == "add":
        return lambda w, key, train, *xs: sum(xs[1:], xs[0])
    if layer.type == "global_pool":
        return lambda w, key, train, x: jnp.mean(x, axis=(2, 3))
    if layer.type == "channel_scale":
        return lambda w, key, train, x, s: x * s[:, :, None, None]
    if layer.type in _ACTIVATIONS:
        function = _ACTIVATIONS[layer.type]
        return lambda w, key, train, x: function(x)
    raise Unsupported(f"the jax adapter cannot build layer '{layer.name}' of type '{layer.type}'")


_ACTIVATIONS = {"relu6": jax.nn.relu6, "silu": jax.nn.silu, "sigmoid": jax.nn.sigmoid, "hardswish": jax.nn.hard_swish}


def has_dropout(spec: NetworkSpec) -> bool:
    return any(layer.type == "dropout" and layer.params["ratio"] > 0 for layer in spec.layers)


def loss_function(spec: NetworkSpec, dtype: Any, precision: Any, train: bool) -> Callable[..., Any]:
    """``loss(params, images, labels, key) -> (mean softmax cross-entropy, logits)``.

    The parameters and images are cast to ``dtype`` inside, as mixed precision does it: float32 master
    parameters (so gradients come back float32), half-precision arithmetic, the loss in float32.
    """
    plan = []
    dropouts = 0
    for layer in spec.layers:
        if layer.type == "softmax_loss":
            continue
        plan.append((layer.name, layer.inputs, _layer_fn(layer, precision, dropouts)))
        dropouts += layer.type == "dropout"
    logits_blob = spec.logits

    def loss(params: Params, images: Any, labels: Any, key: Any) -> tuple[Any, Any]:
        params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
        blobs = {"data": images.astype(dtype)}
        for name, inputs, fn in plan:
            blobs[name] = fn(params.get(name, {}), key, train, *[blobs[i] for i in inputs])
        logits = blobs[logits_blob].astype(jnp.float32)
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1)), logits

    return loss
