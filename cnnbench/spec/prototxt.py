"""Caffe prototxt import, and writing a spec mapping out as TOML.

The prototxt is read by a small parser of protobuf's text format (:mod:`cnnbench.spec.textformat`, no
protobuf needed): the file is data, never executed. Both of Caffe's syntaxes are read, the old
``layers { type: CONVOLUTION }`` and the new ``layer { type: "Convolution" }``, with the network's input
given by ``input:`` + ``input_dim:``, ``input:`` + ``input_shape { dim: }`` or an ``Input`` layer.
Layers of the TEST phase only are left out (we train); a network without a loss layer gets a
softmax_loss appended, and :func:`dumps_spec_toml` says so in a comment.

Caffe names blobs separately from layers, and in-place layers (a ReLU whose top is its bottom) reuse a
blob; in a spec every layer has an output of its own, named after the layer. Caffe's layer names become
spec names deterministically: "/" is written "__" ("inception_3a/1x1" -> "inception_3a__1x1"), any other
character outside [A-Za-z0-9_-] "_", and a name seen before gets a suffix ("conv1__relu_2").
"""

from __future__ import annotations

import os
import re
from typing import Any

from cnnbench.plural import count
from cnnbench.spec.layers import SpecError, is_int, is_number, show
from cnnbench.spec import DATA, NetworkSpec, parse_spec, read_text
from cnnbench.spec.textformat import Ident, Message, parse_prototxt

__all__ = ["load_prototxt", "prototxt_to_data", "dumps_spec_toml", "parse_prototxt", "Message"]

# -- conversion to a spec -----------------------------------------------------------------------------

# Caffe's type names, old (V1 enum) and new (string) spelling, -> our type.
_TYPES = {
    "Convolution": "conv", "CONVOLUTION": "conv", "Pooling": "pool", "POOLING": "pool",
    "ReLU": "relu", "RELU": "relu", "InnerProduct": "fc", "INNER_PRODUCT": "fc", "LRN": "lrn",
    "Concat": "concat", "CONCAT": "concat", "Dropout": "dropout", "DROPOUT": "dropout",
    "Flatten": "flatten", "FLATTEN": "flatten", "Softmax": "softmax_loss", "SOFTMAX": "softmax_loss",
    "SoftmaxWithLoss": "softmax_loss", "SOFTMAX_LOSS": "softmax_loss", "Input": "input",
    # issue 17: a BatchNorm and the Scale after it become one batchnorm; Eltwise SUM is add.
    "BatchNorm": "batchnorm", "Scale": "scale", "Eltwise": "add", "ELTWISE": "add", "Sigmoid": "sigmoid",
    "SIGMOID": "sigmoid", "Swish": "silu",
}
#: Caffe layer types that read several bottoms.
_MULTI_BOTTOM = ("concat", "add")
_SUPPORTED = ", ".join(sorted({name for name in _TYPES if not name.isupper() or name == "LRN"}))
_NAME_CHARS_RE = re.compile(r"[^A-Za-z0-9_-]")
_NETWORK_CHARS_RE = re.compile(r"[^A-Za-z0-9_.+-]")


class ImportedSpec(dict):
    """A spec mapping, with the notes that :func:`dumps_spec_toml` writes as comments above it."""

    comments: list[str]


def load_prototxt(path: str | os.PathLike) -> NetworkSpec:
    """Read a Caffe prototxt and parse it as a spec; the path is the source named in errors."""
    source = os.fspath(path)
    return parse_spec(prototxt_to_data(read_text(source), source), source)


def prototxt_to_data(text: str, source: str = "<string>") -> dict:
    """The spec mapping (what a spec's TOML parses to) of a Caffe network definition."""
    return _Converter(source, parse_prototxt(text, source)).convert()


class _Field:
    """Typed access to a layer's ``*_param`` message, raising SpecErrors that name the layer and line."""

    def __init__(self, converter: "_Converter", layer: Message, label: str, key: str):
        self.converter, self.label = converter, label
        value = layer.get(key, Message(layer.line))
        if not isinstance(value, Message):
            raise converter.fail(layer.line_of(key), label, f"'{key}' must be a message {{ ... }}")
        self.message = value

    def fail(self, key: str, problem: str) -> SpecError:
        return self.converter.fail(self.message.line_of(key), self.label, problem)

    def ints(self, key: str) -> list[int]:
        values = self.message.all(key)
        for value in values:
            if not (is_int(value) and value >= 0):
                raise self.fail(key, f"'{key}' must be a non-negative integer, not {show(value)}")
        return values

    def int(self, key: str, default: int | None) -> int:
        values = self.ints(key)
        if not values and default is None:
            raise self.fail(key, f"missing '{key}'")
        return values[-1] if values else default  # type: ignore[return-value]

    def number(self, key: str, default: float) -> float:
        value = self.message.get(key, default)
        if not is_number(value):
            raise self.fail(key, f"'{key}' must be a number, not {show(value)}")
        return float(value)

    def word(self, key: str, default: str, numbers: tuple[str, ...] = ()) -> str:
        """An enum value, also accepted as its number or as a string."""
        value = self.message.get(key, default)
        if is_int(value) and 0 <= value < len(numbers):
            return numbers[value]
        if isinstance(value, bool) or not isinstance(value, str):
            raise self.fail(key, f"'{key}' must be a word such as {default}, not {show(value)}")
        return str(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.message.get(key, default)
        if value in ("true", "false", True, False, 0, 1) and not isinstance(value, float):
            return value in ("true", True, 1)
        raise self.fail(key, f"'{key}' must be true or false, not {show(value)}")

    def pair(self, key: str, default: int | None, key_h: str, key_w: str) -> int | list[int]:
        """Caffe's kernel_size / stride / pad (repeated, or _h and _w) as an int or [h, w]."""
        if self.message.all(key_h) or self.message.all(key_w):
            h, w = self.int(key_h, None), self.int(key_w, None)
        else:
            values = self.ints(key)
            if len(values) > 2:
                raise self.fail(key, f"'{key}' given {len(values)} times; 2-D layers take one or two values")
            if not values:
                if default is None:
                    raise self.fail(key, f"missing '{key}' (or '{key_h}' and '{key_w}')")
                values = [default]
            h, w = values[0], values[-1]
        return h if h == w else [h, w]

    def need(self, key: str, default: Any, allowed: tuple, what: str) -> None:
        value = self.message.get(key, default)
        if value not in allowed:
            raise self.fail(key, f"{key}: {show(value) if not isinstance(value, Ident) else value} is not "
                            f"supported ({what})")


class _Converter:
    def __init__(self, source: str, root: Message):
        self.source, self.root = source, root
        self.used = {DATA}
        self.producer: dict[str, str] = {}  # Caffe blob -> the spec layer that last wrote it
        self.labels: set[str] = set()       # extra input blobs, readable only as a loss's label
        self.comments: list[str] = []
        self.unpaired: dict[str, int] = {}  # batchnorm layer -> its line, until a Scale gives it scale and shift

    def fail(self, line: int, label: str, problem: str) -> SpecError:
        return SpecError(f"{self.source}: line {line}: {label}: {problem}")

    def convert(self) -> ImportedSpec:
        old, new = self.root.all("layers"), self.root.all("layer")
        if old and new:
            raise SpecError(f"{self.source}: line {self.root.line_of('layer')}: mixes the old 'layers {{ }}' "
                            "and the new 'layer { }' syntax; use one")
        shape, batch = self._inputs()
        if shape is None:
            raise SpecError(f"{self.source}: line 1: no input: give 'input' with 'input_dim' or "
                            "'input_shape', or an Input layer")
        layers, skipped = [], 0
        for index, message in enumerate(old or new, 1):
            if not isinstance(message, Message):
                raise self.fail(self.root.line, f"layer #{index}", "must be a message { ... }")
            if not self._in_train_phase(message):
                skipped += 1
                continue
            layer = self._layer(message, index, layers)
            if layer is not None:
                layers.append(layer)
        if not layers:
            raise SpecError(f"{self.source}: line 1: no layers")
        for name, line in self.unpaired.items():
            raise self.fail(line, f"layer '{name}'", "a BatchNorm needs a Scale layer with bias_term: true after "
                            "it: a batchnorm of ours has a learnable scale and shift, Caffe's BatchNorm alone none")
        if any(layer["type"] == "batchnorm" for layer in layers):
            self.comments.append("Each BatchNorm and the Scale after it became one batchnorm, in training mode "
                                 "(batch statistics; use_global_stats is a deploy setting and was ignored).")
        name = self._network_name()
        header = [f"Converted from the Caffe prototxt {os.path.basename(self.source)} by cnnbench.",
                  "Layer names are Caffe's with '/' written '__' and other characters outside [A-Za-z0-9_-] '_';",
                  "a repeated name gets a suffix (_2, _3, ...), and every in-place layer (top == bottom) has an "
                  "output of its own."]
        if skipped:
            self.comments.append(f"{skipped} layer{'s' * (skipped > 1)} of the TEST phase only "
                                 f"{'were' if skipped > 1 else 'was'} left out.")
        if layers[-1]["type"] != "softmax_loss" and not any(l["type"] == "softmax_loss" for l in layers):
            loss = self._unique("loss")
            layers.append({"name": loss, "type": "softmax_loss"})
            self.comments.append(f"The prototxt has no loss layer: '{loss}' (softmax_loss) was appended after "
                                 "the last layer, for training.")
        data = ImportedSpec(name=name, description=f"Imported from the Caffe prototxt "
                            f"{os.path.basename(self.source)}", input=shape, default_batch_size=batch,
                            layers=layers)
        data.comments = header + self.comments
        return data

    def _network_name(self) -> str:
        for candidate in (self.root.get("name"), os.path.splitext(os.path.basename(self.source))[0]):
            if isinstance(candidate, str):
                name = _NETWORK_CHARS_RE.sub("_", candidate).lstrip("_.+-")
                if name:
                    return name
        return "imported"

    def _inputs(self) -> tuple[list[int] | None, int]:
        """Registers the input blobs; returns the data blob's (C, H, W) and batch size."""
        names, line = self.root.all("input"), self.root.line_of("input")
        dims = self.root.all("input_dim")
        shapes = [s for s in self.root.all("input_shape")]
        found: list[tuple[str, list, int]] = []
        if names:
            if dims and shapes:
                raise SpecError(f"{self.source}: line {line}: give 'input_dim' or 'input_shape', not both")
            if shapes:
                if len(shapes) != len(names):
                    raise SpecError(f"{self.source}: line {line}: {len(names)} inputs but {len(shapes)} "
                                    "input_shape messages")
                found = [(n, s.all("dim") if isinstance(s, Message) else [s], line) for n, s in zip(names, shapes)]
            else:
                if len(dims) != 4 * len(names):
                    raise SpecError(f"{self.source}: line {line}: {count(len(names), 'input')} need{'s' if len(names) == 1 else ''} "
                                    f"{4 * len(names)} input_dim values (N, C, H, W each), not {len(dims)}")
                found = [(n, dims[4 * i:4 * i + 4], line) for i, n in enumerate(names)]
        for message in self.root.all("layer"):
            if isinstance(message, Message) and message.get("type") == "Input" and self._in_train_phase(message):
                param = message.get("input_param", Message(message.line))
                layer_shapes = param.all("shape") if isinstance(param, Message) else []
                tops = message.all("top")
                label = f"layer '{message.get('name', 'Input')}'"
                if not tops or len(layer_shapes) not in (1, len(tops)):
                    raise self.fail(message.line, label, "an Input layer needs a top and an input_param { shape "
                                    "{ dim: ... } } for it")
                for i, top in enumerate(tops):
                    shape = layer_shapes[min(i, len(layer_shapes) - 1)]
                    found.append((top, shape.all("dim") if isinstance(shape, Message) else [shape], message.line))
        if not found:
            return None, 0
        blob, dims, line = found[0]
        if not (len(dims) == 4 and all(is_int(d) and d > 0 for d in dims)):
            raise SpecError(f"{self.source}: line {line}: input '{blob}' must have 4 positive dims (N, C, H, W), "
                            f"not {show(list(dims))}")
        self.producer[blob] = DATA
        self.labels = {other for other, _, _ in found[1:]}
        return list(dims[1:]), dims[0]

    @staticmethod
    def _in_train_phase(message: Message) -> bool:
        def phases(key: str) -> list:
            return [rule.get("phase") for rule in message.all(key) if isinstance(rule, Message)]
        include, exclude = phases("include"), phases("exclude")
        return (not include or "TRAIN" in include or 0 in include) and "TRAIN" not in exclude and 0 not in exclude

    def _unique(self, base: str) -> str:
        name, n = base, 2
        while name in self.used:
            name, n = f"{base}_{n}", n + 1
        self.used.add(name)
        return name

    def _layer(self, message: Message, index: int, layers: list[dict]) -> dict | None:
        caffe_type = message.get("type")
        caffe_name = message.get("name")
        label = f"layer '{caffe_name}'" if isinstance(caffe_name, str) else f"layer #{index}"
        if caffe_type is None:
            raise self.fail(message.line, label, "missing 'type'")
        kind = _TYPES.get(str(caffe_type)) if isinstance(caffe_type, str) else None
        if kind is None:
            raise self.fail(message.line_of("type"), label, f"unsupported layer type '{caffe_type}'; "
                            f"supported: {_SUPPORTED}")
        if kind == "input":
            return None  # registered by _inputs
        bottoms, tops = message.all("bottom"), message.all("top")
        if not bottoms:
            raise self.fail(message.line, label, "missing 'bottom' (the blob it reads)")
        if kind != "softmax_loss" and len(tops) != 1:
            raise self.fail(message.line, label, f"a {caffe_type} layer needs exactly one top, not {len(tops)}")
        if len(tops) > 1:
            raise self.fail(message.line, label, f"a {caffe_type} layer with {len(tops)} tops is not supported")
        readable = bottoms if kind != "softmax_loss" else bottoms[:1]  # the loss's second bottom is the label
        if kind == "scale":
            return self._scale(message, label, readable)
        if kind not in _MULTI_BOTTOM and len(readable) != 1:
            raise self.fail(message.line, label, f"a {caffe_type} layer reads one bottom, not {len(readable)}")
        inputs = []
        for bottom in readable:
            if bottom in self.labels:
                raise self.fail(message.line_of("bottom"), label, f"reads the input blob '{bottom}'; only the "
                                "first input is the network's data (others may only be a loss layer's label)")
            if bottom not in self.producer:
                raise self.fail(message.line_of("bottom"), label, f"bottom '{bottom}' is the top of no earlier "
                                "layer nor an input (a typo, a cycle, or a layer listed before its input)")
            inputs.append(self.producer[bottom])

        base = _NAME_CHARS_RE.sub("_", str(caffe_name).replace("/", "__")) if caffe_name else f"{kind}{index}"
        name = self._unique(base if re.match(r"^[A-Za-z_]", base) else f"_{base}")
        layer: dict[str, Any] = {"name": name, "type": kind}
        previous = layers[-1]["name"] if layers else DATA
        if kind in _MULTI_BOTTOM:
            layer["inputs"] = inputs
        elif inputs[0] != previous:
            layer["input"] = inputs[0]
        layer.update(self._params(kind, message, label))
        if "__type" in layer:
            layer["type"] = layer.pop("__type")
        if str(caffe_type) in ("Softmax", "SOFTMAX"):
            self.comments.append(f"Softmax layer '{caffe_name}' became '{name}', the softmax_loss for training.")
        if tops:
            self.producer[tops[0]] = name
        if kind == "batchnorm":
            self.unpaired[name] = message.line
        return layer

    def _scale(self, message: Message, label: str, bottoms: list) -> None:
        """A Scale right after a BatchNorm gives it its learnable scale and shift: the pair is one batchnorm."""
        target = self.producer.get(bottoms[0]) if len(bottoms) == 1 else None
        if target not in self.unpaired:
            raise self.fail(message.line, label, "a Scale layer is supported only right after a BatchNorm (the "
                            "pair becomes one batchnorm) and with one bottom")
        p = _Field(self, message, label, "scale_param")
        p.need("axis", 1, (1,), "scaling per channel")
        p.need("num_axes", 1, (1,), "scaling per channel")
        if not p.flag("bias_term", False):
            raise p.fail("bias_term", "a Scale after a BatchNorm needs bias_term: true: a batchnorm of ours has "
                         "a learnable shift as well as a scale")
        del self.unpaired[target]
        self.producer[message.all("top")[0]] = target
        return None

    def _params(self, kind: str, message: Message, label: str) -> dict:
        if kind == "conv":
            p = _Field(self, message, label, "convolution_param")
            params: dict[str, Any] = {"filters": p.int("num_output", None),
                                      "kernel": p.pair("kernel_size", None, "kernel_h", "kernel_w")}
            stride, pad = p.pair("stride", 1, "stride_h", "stride_w"), p.pair("pad", 0, "pad_h", "pad_w")
            if any(d != 1 for d in p.ints("dilation")):
                raise p.fail("dilation", "dilation other than 1 is not supported")
            p.need("axis", 1, (1,), "convolution over axis 1, the channels")
            if stride != 1:
                params["stride"] = stride
            if pad != 0:
                params["pad"] = pad
            if p.int("group", 1) != 1:
                params["groups"] = p.int("group", 1)
            if not p.flag("bias_term", True):
                params["bias"] = False
            return params
        if kind == "batchnorm":
            p = _Field(self, message, label, "batch_norm_param")
            # Caffe's running average keeps moving_average_fraction of the old value: our momentum is the rest.
            return {"eps": p.number("eps", 1e-5), "momentum": round(1 - p.number("moving_average_fraction", 0.999), 12)}
        if kind == "add":
            p = _Field(self, message, label, "eltwise_param")
            p.need("operation", "SUM", ("SUM", 1), "SUM only: the add layer type")
            if any(c != 1 for c in p.message.all("coeff")):
                raise p.fail("coeff", "coefficients other than 1 are not supported (add sums its inputs)")
            return {}
        if kind == "pool" and _Field(self, message, label, "pooling_param").flag("global_pooling", False):
            p = _Field(self, message, label, "pooling_param")
            p.need("pool", "MAX", ("AVE", 1), "global pooling is global_pool, an average")
            return {"__type": "global_pool"}
        if kind == "silu":
            _Field(self, message, label, "swish_param").need("beta", 1, (1, 1.0), "beta 1: silu")
            return {}
        if kind == "pool":
            p = _Field(self, message, label, "pooling_param")
            mode = p.word("pool", "MAX", ("MAX", "AVE", "STOCHASTIC"))
            if mode not in ("MAX", "AVE"):
                raise p.fail("pool", f"pool: {mode} is not supported (MAX or AVE)")
            round_mode = p.word("round_mode", "CEIL", ("CEIL", "FLOOR"))
            if round_mode not in ("CEIL", "FLOOR"):
                raise p.fail("round_mode", f"round_mode: {round_mode} is not CEIL or FLOOR")
            params = {"mode": "max" if mode == "MAX" else "avg",
                      "kernel": p.pair("kernel_size", None, "kernel_h", "kernel_w")}
            stride, pad = p.pair("stride", 1, "stride_h", "stride_w"), p.pair("pad", 0, "pad_h", "pad_w")
            if stride != 1:
                params["stride"] = stride
            if pad != 0:
                params["pad"] = pad
            params["round"] = round_mode.lower()  # Caffe's default rounds pooled sizes up
            return params
        if kind == "fc":
            p = _Field(self, message, label, "inner_product_param")
            p.need("axis", 1, (1,), "inner products over axis 1 onwards")
            params = {"outputs": p.int("num_output", None)}
            if not p.flag("bias_term", True):
                params["bias"] = False
            return params
        if kind == "lrn":
            p = _Field(self, message, label, "lrn_param")
            p.need("norm_region", "ACROSS_CHANNELS", ("ACROSS_CHANNELS", 0), "ACROSS_CHANNELS only")
            return {"local_size": p.int("local_size", 5), "alpha": p.number("alpha", 1.0),
                    "beta": p.number("beta", 0.75), "k": p.number("k", 1.0)}
        if kind == "dropout":
            return {"ratio": _Field(self, message, label, "dropout_param").number("dropout_ratio", 0.5)}
        if kind == "concat":
            p = _Field(self, message, label, "concat_param")
            p.need("axis", 1, (1,), "concatenation along axis 1, the channels")
            p.need("concat_dim", 1, (1,), "concatenation along axis 1, the channels")
        elif kind == "relu":
            p = _Field(self, message, label, "relu_param")
            p.need("negative_slope", 0, (0,), "a leaky ReLU is not a layer type of ours")
        elif kind == "flatten":
            p = _Field(self, message, label, "flatten_param")
            p.need("axis", 1, (1,), "flattening from axis 1")
            p.need("end_axis", -1, (-1,), "flattening to the last axis")
        elif kind == "softmax_loss":
            p = _Field(self, message, label, "softmax_param")
            p.need("axis", 1, (1,), "softmax over axis 1, the classes")
        return {}


# -- TOML out -----------------------------------------------------------------------------------------

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def dumps_spec_toml(data: dict) -> str:
    """TOML text that tomllib reads back as ``data``: tables, arrays, strings, ints, floats, booleans.

    A list of tables (a spec's layers) is written one inline table per line; nested tables (blocks) as
    ``[sections]`` after the keys. ``data.comments`` (an imported spec's notes) lead as comments.
    """
    lines = [f"# {comment}" for comment in getattr(data, "comments", ())]
    _write_table(lines, [], data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(lines: list[str], path: list[str], table: dict) -> None:
    if path:
        lines.extend(["", "[" + ".".join(_key(part) for part in path) + "]"])
    subtables = []
    for key, value in table.items():
        if isinstance(value, dict):
            subtables.append((key, value))
        elif isinstance(value, (list, tuple)) and value and all(isinstance(item, dict) for item in value):
            lines.append(f"{_key(key)} = [")
            lines.extend(f"  {_value(item)}," for item in value)
            lines.append("]")
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in subtables:
        _write_table(lines, path + [key], value)


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings, not {key!r}")
    return key if _BARE_KEY_RE.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")
