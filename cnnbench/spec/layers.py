"""The layer types of the network spec: their parameters, shape inference and costs.

Also home to the message helpers that every part of the spec layer shares (:mod:`cnnbench.spec`,
:mod:`cnnbench.spec.blocks`, :mod:`cnnbench.spec.prototxt`), so that they can import them without importing each
other; :class:`SpecError` is declared in :mod:`cnnbench.errors` and taken from here by all of them.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any, Callable

from cnnbench.errors import SpecError  # public as cnnbench.spec.SpecError

LAYER_TYPES: tuple[str, ...] = ("add", "batchnorm", "channel_scale", "concat", "conv", "dropout", "fc", "flatten",
                                "global_pool", "hardswish", "lrn", "pool", "relu", "relu6", "sigmoid", "silu",
                                "softmax_loss")
#: Element-wise activations without parameters (issue 17: MobileNet's relu6 and hardswish, EfficientNet's
#: silu and the sigmoid gate of squeeze-and-excitation); each is its own type, as relu is.
ACTIVATIONS: tuple[str, ...] = ("hardswish", "relu", "relu6", "sigmoid", "silu")
# Parameter keys per type; the order is the order of the normalised ``params`` dict.
PARAM_KEYS: dict[str, tuple[str, ...]] = {
    "add": (),
    "batchnorm": ("eps", "momentum"),
    "channel_scale": (),
    "global_pool": ("mode",),
    "hardswish": (),
    "relu6": (),
    "sigmoid": (),
    "silu": (),
    "concat": (),
    "conv": ("filters", "kernel", "stride", "pad", "groups", "bias"),
    "dropout": ("ratio",),
    "fc": ("outputs", "bias"),
    "flatten": (),
    "lrn": ("local_size", "alpha", "beta", "k"),
    "pool": ("mode", "kernel", "stride", "pad", "round"),
    "relu": (),
    "softmax_loss": (),
}
# Types that read several blobs; every other type reads exactly one.
MULTI_INPUT_TYPES = ("add", "channel_scale", "concat")
#: PyTorch's defaults (Keras's are eps 1e-3, momentum 0.99 in its opposite convention): a spec that
#: leaves them out gets torchvision's numbers, and every framework is given the spec's values.
BATCHNORM_EPS, BATCHNORM_MOMENTUM = 1e-5, 0.1
GLOBAL_POOL_MODES = ("avg",)
POOL_MODES = ("max", "avg")
ROUND_MODES = ("floor", "ceil")
_REQUIRED = object()


class Params:
    """Typed access to one layer's parameters, raising SpecErrors that name the layer and the key."""

    def __init__(self, fail: Callable[[str], SpecError], raw: dict, inputs: tuple[str, ...] = ()):
        self.fail, self.raw, self.inputs = fail, raw, inputs

    def _get(self, key: str, default: Any) -> Any:
        if key in self.raw:
            return self.raw[key]
        if default is _REQUIRED:
            raise self.fail(f"missing required parameter '{key}' for type '{self.raw['type']}'")
        return default

    def positive(self, key: str, default: Any = _REQUIRED) -> int:
        value = self._get(key, default)
        if not (is_int(value) and 0 < value <= MAX_INT):
            raise self.fail(f"'{key}' must be a positive int up to {MAX_INT}, not {show(value)}")
        return value

    def pair(self, key: str, default: Any = _REQUIRED, minimum: int = 1) -> tuple[int, int]:
        """An int or [h, w], as (h, w)."""
        value = self._get(key, default)
        pair = [value, value] if is_int(value) else value
        if not (isinstance(pair, list) and len(pair) == 2 and all(is_int(v) and minimum <= v <= MAX_INT for v in pair)):
            what = "positive" if minimum > 0 else "non-negative"
            raise self.fail(f"'{key}' must be a {what} int or a list [h, w] of {what} ints, each up to {MAX_INT}, "
                            f"not {show(value)}")
        return (pair[0], pair[1])

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"'{key}' must be true or false, not {show(value)}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> str:
        value = self._get(key, default)
        if value not in choices:
            raise self.fail(f"'{key}' must be one of {', '.join(choices)}, not {show(value)}")
        return value

    def ratio(self, key: str, default: float) -> float:
        value = self._get(key, default)
        if not is_number(value) or not 0 <= value < 1:
            raise self.fail(f"'{key}' must be a number in [0, 1), not {show(value)}")
        return float(value)

    def number(self, key: str, default: float, positive: bool = False) -> float:
        value = self._get(key, default)
        if not is_number(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise self.fail(f"'{key}' must be a {'positive' if positive else 'non-negative'} number, "
                            f"not {show(value)}")
        return float(value)


# Each inference function returns (normalised params, output shape, parameter count, multiply-adds).
Inferred = tuple[dict, tuple[int, ...], int, int]
Shapes = tuple[tuple[int, ...], ...]


def _need_rank(p: Params, shape: tuple[int, ...], ranks: tuple[int, ...], hint: str = "") -> None:
    if len(shape) not in ranks:
        want = " or ".join({3: "3-D (C, H, W)", 1: "1-D (F,)"}[r] for r in ranks)
        raise p.fail(f"type '{p.raw['type']}' needs a {want} input, but its input has shape "
                     f"{fmt_shape(shape)}{hint}")


def _window(p: Params, shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
            pad: tuple[int, int], ceil: bool = False) -> tuple[int, int]:
    """Output height and width of a sliding window, Caffe's way."""
    out = []
    for size, k, s, q in zip(shape[1:], kernel, stride, pad):
        span = size + 2 * q - k
        if span < 0 or not ceil:
            n = span // s + 1
        else:
            n = -(-span // s) + 1
            # Caffe: with padding, the last window must start inside the image (plus the top pad).
            if q > 0 and (n - 1) * s >= size + q:
                n -= 1
        out.append(n)
    if min(out) < 1:
        raise p.fail(f"output size would be {out[0]}x{out[1]}, less than 1 (input {shape[1]}x{shape[2]}, "
                     f"kernel {hw(kernel)}, stride {hw(stride)}, pad {hw(pad)})")
    return out[0], out[1]


def _conv(p: Params, shapes: Shapes) -> Inferred:
    params = {"filters": p.positive("filters"), "kernel": p.pair("kernel"), "stride": p.pair("stride", 1),
              "pad": p.pair("pad", 0, minimum=0), "groups": p.positive("groups", 1), "bias": p.flag("bias", True)}
    shape = shapes[0]
    _need_rank(p, shape, (3,))
    channels, filters, groups = shape[0], params["filters"], params["groups"]
    if channels % groups or filters % groups:
        raise p.fail(f"groups={groups} must divide both the input channels ({channels}) and filters ({filters})")
    height, width = _window(p, shape, params["kernel"], params["stride"], params["pad"])
    kh, kw = params["kernel"]
    per_output = channels // groups * kh * kw
    count = filters * per_output + (filters if params["bias"] else 0)
    return params, (filters, height, width), count, filters * height * width * per_output


def _pool(p: Params, shapes: Shapes) -> Inferred:
    params = {"mode": p.choice("mode", POOL_MODES), "kernel": p.pair("kernel"), "stride": p.pair("stride", 1),
              "pad": p.pair("pad", 0, minimum=0), "round": p.choice("round", ROUND_MODES, "floor")}
    shape = shapes[0]
    _need_rank(p, shape, (3,))
    # Caffe checks this too: a window made only of padding has no value to pool.
    if any(q >= k for q, k in zip(params["pad"], params["kernel"])):
        raise p.fail(f"pad {hw(params['pad'])} must be smaller than kernel {hw(params['kernel'])}")
    height, width = _window(p, shape, params["kernel"], params["stride"], params["pad"],
                            ceil=params["round"] == "ceil")
    return params, (shape[0], height, width), 0, 0


def _fc(p: Params, shapes: Shapes) -> Inferred:
    params = {"outputs": p.positive("outputs"), "bias": p.flag("bias", True)}
    # A 3-D input is flattened implicitly, as Caffe's InnerProduct does.
    _need_rank(p, shapes[0], (3, 1))
    features, outputs = math.prod(shapes[0]), params["outputs"]
    return params, (outputs,), features * outputs + (outputs if params["bias"] else 0), features * outputs


def _flatten(p: Params, shapes: Shapes) -> Inferred:
    _need_rank(p, shapes[0], (3, 1))
    return {}, (math.prod(shapes[0]),), 0, 0


def _same(p: Params, shapes: Shapes) -> Inferred:
    _need_rank(p, shapes[0], (3, 1))
    return {}, shapes[0], 0, 0


def _dropout(p: Params, shapes: Shapes) -> Inferred:
    params = {"ratio": p.ratio("ratio", 0.5)}
    return params, _same(p, shapes)[1], 0, 0


def _lrn(p: Params, shapes: Shapes) -> Inferred:
    # Caffe's LRN across channels: x / (k + alpha / local_size * sum of x^2 over local_size channels)^beta.
    size = p.positive("local_size", 5)
    if size % 2 == 0:
        raise p.fail(f"'local_size' must be odd (the window is centred on each channel), not {size}")
    params = {"local_size": size, "alpha": p.number("alpha", 1.0), "beta": p.number("beta", 0.75),
              "k": p.number("k", 1.0, positive=True)}
    _need_rank(p, shapes[0], (3,))
    # Not a multiply-add of weights: by our convention only conv and fc layers count FLOPs.
    return params, shapes[0], 0, 0


def _concat(p: Params, shapes: Shapes) -> Inferred:
    """Along channels (Caffe's default axis 1), or features for 1-D inputs; the rest must agree."""
    first = shapes[0]
    _need_rank(p, first, (3, 1))
    for name, shape in zip(p.inputs, shapes):
        if len(shape) != len(first) or shape[1:] != first[1:]:
            what = "height and width" if len(first) == len(shape) else "rank"
            raise p.fail(f"concat inputs must agree in {what}, but '{p.inputs[0]}' is {fmt_shape(first)} "
                         f"and '{name}' is {fmt_shape(shape)}")
    return {}, (sum(shape[0] for shape in shapes),) + first[1:], 0, 0


def _softmax_loss(p: Params, shapes: Shapes) -> Inferred:
    _need_rank(p, shapes[0], (1,), "; add an fc layer to produce the logits")
    # The loss is one number per image.
    return {}, (), 0, 0


def _batchnorm(p: Params, shapes: Shapes) -> Inferred:
    """Per-channel normalisation with the batch's statistics (training mode), then a learnable scale
    and shift: 2 x C parameters. The running statistics are state, not parameters (torchvision counts
    them as buffers), and the normalisation is not a multiply-add of weights: 0 FLOPs by the convention."""
    momentum = p._get("momentum", BATCHNORM_MOMENTUM)
    if not is_number(momentum) or not 0 < momentum < 1:
        raise p.fail(f"'momentum' must be a number in (0, 1), the weight of the batch's statistics in the running "
                     f"ones (PyTorch's convention), not {show(momentum)}")
    params = {"eps": p.number("eps", BATCHNORM_EPS, positive=True), "momentum": float(momentum)}
    _need_rank(p, shapes[0], (3,))
    return params, shapes[0], 2 * shapes[0][0], 0


def _add(p: Params, shapes: Shapes) -> Inferred:
    """Element-wise sum of 2 or more blobs of one shape (a residual connection)."""
    if len(shapes) < 2:
        raise p.fail(f"type 'add' needs 2 or more inputs (inputs = ['a', 'b']), not {len(shapes)}")
    for name, shape in zip(p.inputs, shapes):
        if shape != shapes[0]:
            raise p.fail(f"add inputs must have one shape, but '{p.inputs[0]}' is {fmt_shape(shapes[0])} "
                         f"and '{name}' is {fmt_shape(shape)}")
    return {}, shapes[0], 0, 0


def _global_pool(p: Params, shapes: Shapes) -> Inferred:
    """The average over whatever height and width arrive: C x H x W -> C (1-D, ready for an fc)."""
    params = {"mode": p.choice("mode", GLOBAL_POOL_MODES, "avg")}
    _need_rank(p, shapes[0], (3,))
    return params, (shapes[0][0],), 0, 0


def _channel_scale(p: Params, shapes: Shapes) -> Inferred:
    """Squeeze-and-excitation's last step: inputs [x, s], x of shape C x H x W, s of shape C; y = x * s
    per channel."""
    if len(shapes) != 2:
        raise p.fail(f"type 'channel_scale' takes 2 inputs [blob, scale], not {len(shapes)}")
    (x, s), (xname, sname) = shapes, p.inputs
    if len(x) != 3 or s != (x[0],):
        raise p.fail(f"channel_scale needs a C x H x W blob and a scale of shape (C,), but '{xname}' is "
                     f"{fmt_shape(x)} and '{sname}' is {fmt_shape(s)}")
    return {}, x, 0, 0


def _activation(p: Params, shapes: Shapes) -> Inferred:
    return _same(p, shapes)


INFER: dict[str, Callable[[Params, Shapes], Inferred]] = {
    "add": _add, "batchnorm": _batchnorm, "channel_scale": _channel_scale, "global_pool": _global_pool,
    "hardswish": _activation, "relu6": _activation, "sigmoid": _activation, "silu": _activation,
    "concat": _concat, "conv": _conv, "dropout": _dropout, "fc": _fc, "flatten": _flatten, "lrn": _lrn,
    "pool": _pool, "relu": _same, "softmax_loss": _softmax_loss}


# -- message helpers ----------------------------------------------------------------------------------


#: The largest size a spec may give (frameworks index tensors with 32-bit ints in places); beyond it a
#: hostile or mistyped file would only fail later, inside a framework.
MAX_INT = 2**31 - 1


def is_int(value: Any) -> bool:
    # bool is a subclass of int, but `kernel = true` is a mistake, not a 1.
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def kind(value: Any) -> str:
    return {bool: "a boolean", int: "an int", float: "a float", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, list):
        # Shown as TOML spells it (true, "x"), which JSON happens to match for lists of scalars.
        text = json.dumps(value, default=str)
        return f"a list {text}" if len(text) <= 40 else "a list"
    return kind(value)


def suggest(word: Any, choices: tuple[str, ...] | list[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def hw(pair: tuple[int, int]) -> str:
    return f"{pair[0]}x{pair[1]}"
