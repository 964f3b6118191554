"""The framework-neutral network spec: TOML in, a validated, shape-inferred :class:`NetworkSpec` out.

A spec is Caffe-style: a list of named layers, each naming its input blobs (by default the previous
layer's output; the first layer reads ``data``). Specs are parsed as data and never executed. Every
adapter builds its framework's network from the same :class:`NetworkSpec`, so everything a framework
would otherwise discover late (a kernel larger than its input, a typo in a key) is caught here, with a
message that names the file and the layer.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

LAYER_TYPES: tuple[str, ...] = ("conv", "dropout", "fc", "flatten", "pool", "relu", "softmax_loss")
DATA = "data"
TOP_KEYS = ("name", "description", "input", "default_batch_size", "layers")
_COMMON_KEYS = ("name", "type", "input", "inputs")
# Parameter keys per type; the order is the order of the normalised ``params`` dict.
_PARAM_KEYS: dict[str, tuple[str, ...]] = {
    "conv": ("filters", "kernel", "stride", "pad", "groups", "bias"),
    "dropout": ("ratio",),
    "fc": ("outputs", "bias"),
    "flatten": (),
    "pool": ("mode", "kernel", "stride", "pad", "round"),
    "relu": (),
    "softmax_loss": (),
}
POOL_MODES = ("max", "avg")
ROUND_MODES = ("floor", "ceil")
# Names become module keys, variable scopes and symbol names in every framework: PyTorch rejects "."
# in module names and TensorFlow treats "/" as a scope separator, so keep them to a portable alphabet.
_LAYER_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_NETWORK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_REQUIRED = object()


class SpecError(Exception):
    """An invalid network spec; the message starts with the source and names the layer."""


@dataclass(frozen=True)
class Layer:
    """One layer with its inferred shapes and costs (shapes are per image, without the batch axis)."""

    name: str
    type: str
    inputs: tuple[str, ...]
    # Excluded from the hash (a dict is unhashable) but compared.
    params: dict = field(hash=False)
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    param_count: int
    forward_flops: int
    backward_flops: int


@dataclass(frozen=True)
class NetworkSpec:
    """A validated network. Equality compares the network, not where it came from or how it was spelt."""

    name: str
    description: str
    input_shape: tuple[int, int, int]
    default_batch_size: int
    layers: tuple[Layer, ...]
    source: str = field(compare=False)
    # The parsed TOML mapping: plain JSON types, so a worker process can rebuild the spec with parse_spec.
    data: dict = field(compare=False, repr=False)

    @property
    def loss(self) -> Layer:
        return self.layers[-1]

    @property
    def num_classes(self) -> int:
        return self.loss.input_shapes[0][0]

    @property
    def logits(self) -> str:
        return self.loss.inputs[0]

    @property
    def param_count(self) -> int:
        return sum(layer.param_count for layer in self.layers)

    @property
    def forward_flops(self) -> int:
        return sum(layer.forward_flops for layer in self.layers)

    @property
    def backward_flops(self) -> int:
        return sum(layer.backward_flops for layer in self.layers)

    @property
    def training_flops(self) -> int:
        return self.forward_flops + self.backward_flops

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"network '{self.name}' has no layer '{name}'; layers: {', '.join(l.name for l in self.layers)}")


# -- loading ------------------------------------------------------------------------------------------


def load_spec(path: str | os.PathLike) -> NetworkSpec:
    """Read and parse a TOML spec file; the path is the source named in errors."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except OSError as err:
        raise SpecError(f"{source}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{source}: cannot read: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return loads_spec(text, source)


def loads_spec(text: str, source: str = "<string>") -> NetworkSpec:
    """Parse a spec from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source}: invalid TOML: {err}") from None
    return parse_spec(data, source)


def parse_spec(data: Mapping[str, Any], source: str = "<string>") -> NetworkSpec:
    """Validate parsed TOML (or the same data after a JSON round trip) and infer shapes and costs."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: a spec must be a table of keys, not {_kind(data)}")
    # Our own copy: the caller may mutate theirs, and the spec is frozen.
    data = copy.deepcopy(dict(data))
    for key in data:
        if key not in TOP_KEYS:
            raise SpecError(f"{source}: unknown top-level key {_quote(key)}; valid keys: "
                            f"{', '.join(TOP_KEYS)}{_suggest(key, TOP_KEYS)}")
    for key in ("name", "input", "default_batch_size", "layers"):
        if key not in data:
            raise SpecError(f"{source}: missing required top-level key '{key}'")

    name = data["name"]
    if not isinstance(name, str) or not _NETWORK_NAME_RE.match(name):
        raise SpecError(f"{source}: 'name' must be a non-empty string of letters, digits and _ . + - "
                        f"starting with a letter or digit, not {_show(name)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{source}: 'description' must be a string, not {_show(description)}")
    shape = data["input"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)):
        raise SpecError(f"{source}: 'input' must be [channels, height, width] as 3 positive ints, "
                        f"not {_show(shape)}")
    batch = data["default_batch_size"]
    if not (_is_int(batch) and batch > 0):
        raise SpecError(f"{source}: 'default_batch_size' must be a positive int, not {_show(batch)}")
    raw_layers = data["layers"]
    if not isinstance(raw_layers, list) or not raw_layers:
        raise SpecError(f"{source}: 'layers' must be a non-empty list of tables, not {_show(raw_layers)}")

    layers = _Builder(source, tuple(shape)).build(raw_layers)
    return NetworkSpec(name, description, tuple(shape), batch, layers, source, data)


# -- layers -------------------------------------------------------------------------------------------


class _Builder:
    """Walks the layers in file order, which must already be topological, inferring shapes as it goes."""

    def __init__(self, source: str, input_shape: tuple[int, ...]):
        self.source = source
        self.shapes: dict[str, tuple[int, ...]] = {DATA: input_shape}
        # Whether a blob depends on learnable parameters, i.e. whether its gradient must be computed.
        self.needs_grad: dict[str, bool] = {DATA: False}

    def fail(self, label: str, message: str) -> SpecError:
        return SpecError(f"{self.source}: {label}: {message}")

    def build(self, raw_layers: list) -> tuple[Layer, ...]:
        names = self._names(raw_layers)
        losses = [n for n, raw in zip(names, raw_layers) if raw.get("type") == "softmax_loss"]
        if len(losses) > 1:
            raise self.fail(f"layer '{losses[1]}'", f"only one softmax_loss layer is allowed; "
                            f"'{losses[0]}' is one already")
        # Checked before shapes, so that a layer reading the loss's output gets this message instead.
        if losses and losses[0] != names[-1]:
            raise self.fail(f"layer '{losses[0]}'", f"softmax_loss must be the last layer, "
                            f"but '{names[-1]}' comes after it")
        layers = []
        for index, (name, raw) in enumerate(zip(names, raw_layers)):
            previous = names[index - 1] if index else DATA
            layers.append(self._layer(name, raw, previous, names, index))
        last = layers[-1]
        if last.type != "softmax_loss":
            raise self.fail(f"layer '{last.name}'", f"no softmax_loss layer: the last layer must be of type "
                            f"'softmax_loss' (its input is the logits), not '{last.type}'")
        # A dead branch would be counted in the FLOPs but pruned by graph compilers (and never
        # back-propagated by autograd), so frameworks would time different networks.
        read = {name for layer in layers for name in layer.inputs}
        for layer in layers[:-1]:
            if layer.name not in read:
                raise self.fail(f"layer '{layer.name}'", "its output is read by no layer; every layer must "
                                "lead to the softmax_loss")
        return tuple(layers)

    def _names(self, raw_layers: list) -> list[str]:
        """Check every layer's name first, so that a forward reference can be told from a typo."""
        names: list[str] = []
        for index, raw in enumerate(raw_layers, 1):
            label = f"layer #{index}"
            if not isinstance(raw, dict):
                raise self.fail(label, f"each layer must be a table, not {_show(raw)}")
            if "name" not in raw:
                raise self.fail(label, "missing required key 'name'")
            name = raw["name"]
            if not isinstance(name, str) or not _LAYER_NAME_RE.match(name):
                raise self.fail(label, f"'name' must be letters, digits, _ and -, starting with a letter "
                                f"or _, not {_show(name)}")
            if name == DATA:
                raise self.fail(label, f"the name '{DATA}' is reserved for the network's input")
            if name in names:
                raise self.fail(f"layer '{name}'", f"duplicate layer name (layers #{names.index(name) + 1} "
                                f"and #{index})")
            names.append(name)
        return names

    def _layer(self, name: str, raw: dict, previous: str, names: list[str], index: int) -> Layer:
        label = f"layer '{name}'"
        if "type" not in raw:
            raise self.fail(label, f"missing required key 'type'; valid types: {', '.join(LAYER_TYPES)}")
        kind = raw["type"]
        if kind not in LAYER_TYPES:
            raise self.fail(label, f"unknown type {_show(kind)}; valid types: {', '.join(LAYER_TYPES)}"
                            f"{_suggest(kind, LAYER_TYPES)}")
        valid = _COMMON_KEYS + _PARAM_KEYS[kind]
        for key in raw:
            if key not in valid:
                raise self.fail(label, f"unknown key {_quote(key)} for type '{kind}'; valid keys: "
                                f"{', '.join(sorted(valid))}{_suggest(key, valid)}")
        inputs = self._inputs(label, raw, previous, names, index)
        shapes = tuple(self.shapes[i] for i in inputs)
        params = _Params(self, label, raw)
        normalised, shape, count, macs = _INFER[kind](params, shapes[0])

        # Weight gradient: one multiply-add per forward one; the input gradient likewise, but only where
        # something upstream has parameters (frameworks skip it otherwise, e.g. for the first conv).
        upstream = any(self.needs_grad[i] for i in inputs)
        backward = 2 * macs + (2 * macs if upstream else 0)
        self.shapes[name] = shape
        self.needs_grad[name] = upstream or count > 0
        return Layer(name, kind, inputs, normalised, shapes, shape, count, 2 * macs, backward)

    def _inputs(self, label: str, raw: dict, previous: str, names: list[str], index: int) -> tuple[str, ...]:
        if "input" in raw and "inputs" in raw:
            raise self.fail(label, "give either 'input' or 'inputs', not both")
        if "input" in raw:
            if not isinstance(raw["input"], str):
                raise self.fail(label, f"'input' must be a layer name (a string), not {_show(raw['input'])}")
            inputs = (raw["input"],)
        elif "inputs" in raw:
            value = raw["inputs"]
            if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
                raise self.fail(label, f"'inputs' must be a non-empty list of layer names, not {_show(value)}")
            inputs = tuple(value)
        else:
            inputs = (previous,)
        if len(inputs) != 1:
            raise self.fail(label, f"type '{raw['type']}' takes exactly 1 input, not {len(inputs)}")
        for blob in inputs:
            if blob in self.shapes:
                continue
            if blob == names[index]:
                raise self.fail(label, f"input '{blob}' is the layer itself (a cycle)")
            if blob in names:
                raise self.fail(label, f"input '{blob}' is a later layer (a cycle or forward reference); "
                                f"list every layer after the layers it reads")
            raise self.fail(label, f"input '{blob}' names no earlier layer; defined so far: "
                            f"{', '.join(self.shapes)}")
        return inputs


class _Params:
    """Typed access to one layer's parameters, raising SpecErrors that name the layer and the key."""

    def __init__(self, builder: _Builder, label: str, raw: dict):
        self.builder, self.label, self.raw = builder, label, raw

    def fail(self, message: str) -> SpecError:
        return self.builder.fail(self.label, message)

    def _get(self, key: str, default: Any) -> Any:
        if key in self.raw:
            return self.raw[key]
        if default is _REQUIRED:
            raise self.fail(f"missing required parameter '{key}' for type '{self.raw['type']}'")
        return default

    def positive(self, key: str, default: Any = _REQUIRED) -> int:
        value = self._get(key, default)
        if not (_is_int(value) and value > 0):
            raise self.fail(f"'{key}' must be a positive int, not {_show(value)}")
        return value

    def pair(self, key: str, default: Any = _REQUIRED, minimum: int = 1) -> tuple[int, int]:
        """An int or [h, w], as (h, w)."""
        value = self._get(key, default)
        pair = [value, value] if _is_int(value) else value
        if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(v) and v >= minimum for v in pair)):
            what = "positive" if minimum > 0 else "non-negative"
            raise self.fail(f"'{key}' must be a {what} int or a list [h, w] of {what} ints, not {_show(value)}")
        return (pair[0], pair[1])

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"'{key}' must be true or false, not {_show(value)}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> str:
        value = self._get(key, default)
        if value not in choices:
            raise self.fail(f"'{key}' must be one of {', '.join(choices)}, not {_show(value)}")
        return value

    def ratio(self, key: str, default: float) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise self.fail(f"'{key}' must be a number in [0, 1), not {_show(value)}")
        return float(value)


# Each inference function returns (normalised params, output shape, parameter count, multiply-adds).
Inferred = tuple[dict, tuple[int, ...], int, int]


def _need_rank(p: _Params, shape: tuple[int, ...], ranks: tuple[int, ...], hint: str = "") -> None:
    if len(shape) not in ranks:
        want = " or ".join({3: "3-D (C, H, W)", 1: "1-D (F,)"}[r] for r in ranks)
        raise p.fail(f"type '{p.raw['type']}' needs a {want} input, but its input has shape "
                     f"{_fmt(shape)}{hint}")


def _window(p: _Params, shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
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
                     f"kernel {_hw(kernel)}, stride {_hw(stride)}, pad {_hw(pad)})")
    return out[0], out[1]


def _conv(p: _Params, shape: tuple[int, ...]) -> Inferred:
    params = {"filters": p.positive("filters"), "kernel": p.pair("kernel"), "stride": p.pair("stride", 1),
              "pad": p.pair("pad", 0, minimum=0), "groups": p.positive("groups", 1), "bias": p.flag("bias", True)}
    _need_rank(p, shape, (3,))
    channels, filters, groups = shape[0], params["filters"], params["groups"]
    if channels % groups or filters % groups:
        raise p.fail(f"groups={groups} must divide both the input channels ({channels}) and filters ({filters})")
    height, width = _window(p, shape, params["kernel"], params["stride"], params["pad"])
    kh, kw = params["kernel"]
    per_output = channels // groups * kh * kw
    count = filters * per_output + (filters if params["bias"] else 0)
    return params, (filters, height, width), count, filters * height * width * per_output


def _pool(p: _Params, shape: tuple[int, ...]) -> Inferred:
    params = {"mode": p.choice("mode", POOL_MODES), "kernel": p.pair("kernel"), "stride": p.pair("stride", 1),
              "pad": p.pair("pad", 0, minimum=0), "round": p.choice("round", ROUND_MODES, "floor")}
    _need_rank(p, shape, (3,))
    # Caffe checks this too: a window made only of padding has no value to pool.
    if any(q >= k for q, k in zip(params["pad"], params["kernel"])):
        raise p.fail(f"pad {_hw(params['pad'])} must be smaller than kernel {_hw(params['kernel'])}")
    height, width = _window(p, shape, params["kernel"], params["stride"], params["pad"],
                            ceil=params["round"] == "ceil")
    return params, (shape[0], height, width), 0, 0


def _fc(p: _Params, shape: tuple[int, ...]) -> Inferred:
    params = {"outputs": p.positive("outputs"), "bias": p.flag("bias", True)}
    # A 3-D input is flattened implicitly, as Caffe's InnerProduct does.
    _need_rank(p, shape, (3, 1))
    features, outputs = math.prod(shape), params["outputs"]
    return params, (outputs,), features * outputs + (outputs if params["bias"] else 0), features * outputs


def _flatten(p: _Params, shape: tuple[int, ...]) -> Inferred:
    _need_rank(p, shape, (3, 1))
    return {}, (math.prod(shape),), 0, 0


def _same(p: _Params, shape: tuple[int, ...]) -> Inferred:
    _need_rank(p, shape, (3, 1))
    return {}, shape, 0, 0


def _dropout(p: _Params, shape: tuple[int, ...]) -> Inferred:
    params = {"ratio": p.ratio("ratio", 0.5)}
    return params, _same(p, shape)[1], 0, 0


def _softmax_loss(p: _Params, shape: tuple[int, ...]) -> Inferred:
    _need_rank(p, shape, (1,), "; add an fc layer to produce the logits")
    # The loss is one number per image.
    return {}, (), 0, 0


_INFER = {"conv": _conv, "dropout": _dropout, "fc": _fc, "flatten": _flatten, "pool": _pool,
          "relu": _same, "softmax_loss": _softmax_loss}


# -- message helpers ----------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    # bool is a subclass of int, but `kernel = true` is a mistake, not a 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an int", float: "a float", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, list):
        # Shown as TOML spells it (true, "x"), which JSON happens to match for lists of scalars.
        text = json.dumps(value, default=str)
        return f"a list {text}" if len(text) <= 40 else "a list"
    return _kind(value)


def _quote(key: Any) -> str:
    return f"'{key}'"


def _suggest(word: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _hw(pair: tuple[int, int]) -> str:
    return f"{pair[0]}x{pair[1]}"
