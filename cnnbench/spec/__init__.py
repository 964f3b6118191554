"""The framework-neutral network spec: TOML in, a validated, shape-inferred :class:`NetworkSpec` out.

A spec is Caffe-style: a list of named layers, each naming its input blobs (by default the previous
layer's output; the first layer reads ``data``). Specs are parsed as data and never executed. Every
adapter builds its framework's network from the same :class:`NetworkSpec`, so everything a framework
would otherwise discover late (a kernel larger than its input, a typo in a key) is caught here, with a
message that names the file and the layer.

The layer types live in :mod:`cnnbench.spec.layers`, reusable blocks (``[blocks.NAME]``, expanded into
ordinary layers before anything else looks at them) in :mod:`cnnbench.spec.blocks`.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Mapping

from cnnbench.spec.layers import (  # noqa: F401  (POOL_MODES, ROUND_MODES: re-exported)
    INFER, LAYER_TYPES, MAX_INT, MULTI_INPUT_TYPES, PARAM_KEYS, POOL_MODES, ROUND_MODES, Params, SpecError, is_int,
    is_number, kind, show, suggest)
from cnnbench.spec.blocks import Entry, expand

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DATA = "data"
TOP_KEYS = ("name", "description", "input", "default_batch_size", "layers", "blocks", "verify_tolerance")
_COMMON_KEYS = ("name", "type", "input", "inputs")
# Names become module keys, variable scopes and symbol names in every framework: PyTorch rejects "."
# in module names and TensorFlow treats "/" as a scope separator, so keep them to a portable alphabet.
_LAYER_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NETWORK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


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
    # The block instance the layer was expanded from, if any (not compared: the network is the same).
    block: str | None = field(default=None, compare=False)


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


#: The largest spec file read (googlenet's prototxt is 40 KB): a bigger one is a mistake or an attack,
#: and is refused before it fills the memory.
MAX_SPEC_BYTES = 16 << 20


def read_text(path: str | os.PathLike) -> str:
    """A spec file's text; an unreadable, non-UTF-8, too large or not regular file (a FIFO, /dev/zero) is
    a SpecError naming it."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise SpecError(f"{source}: cannot read: is not a file")
            raw = file.read(MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:
            raise SpecError(f"{source}: cannot read: larger than {MAX_SPEC_BYTES >> 20} MiB, too large for a network spec")
        return raw.decode("utf-8")
    except OSError as err:
        raise SpecError(f"{source}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{source}: cannot read: not UTF-8 text ({err.reason} at byte {err.start})") from None


def load_spec(path: str | os.PathLike) -> NetworkSpec:
    """Read and parse a TOML spec file; the path is the source named in errors."""
    return loads_spec(read_text(path), os.fspath(path))


def loads_spec(text: str, source: str = "<string>") -> NetworkSpec:
    """Parse a spec from TOML text."""
    try:
        data = tomllib.loads(text)
        return parse_spec(data, source)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source}: invalid TOML: {err}") from None
    except RecursionError:
        raise SpecError(f"{source}: arrays or tables nested too deeply for a network spec") from None


def parse_spec(data: Mapping[str, Any], source: str = "<string>") -> NetworkSpec:
    """Validate parsed TOML (or the same data after a JSON round trip) and infer shapes and costs."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: a spec must be a table of keys, not {kind(data)}")
    # Our own copy: the caller may mutate theirs, and the spec is frozen.
    data = copy.deepcopy(dict(data))
    for key in data:
        if key not in TOP_KEYS:
            raise SpecError(f"{source}: unknown top-level key '{key}'; valid keys: "
                            f"{', '.join(TOP_KEYS)}{suggest(key, TOP_KEYS)}")
    for key in ("name", "input", "default_batch_size", "layers"):
        if key not in data:
            raise SpecError(f"{source}: missing required top-level key '{key}'")

    name = data["name"]
    if not isinstance(name, str) or not _NETWORK_NAME_RE.fullmatch(name):
        raise SpecError(f"{source}: 'name' must be a non-empty string of letters, digits and _ . + - "
                        f"starting with a letter or digit, not {show(name)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{source}: 'description' must be a string, not {show(description)}")
    shape = data["input"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(is_int(v) and 0 < v <= MAX_INT for v in shape)):
        raise SpecError(f"{source}: 'input' must be [channels, height, width] as 3 positive ints up to {MAX_INT}, "
                        f"not {show(shape)}")
    batch = data["default_batch_size"]
    if not (is_int(batch) and 0 < batch <= MAX_INT):
        raise SpecError(f"{source}: 'default_batch_size' must be a positive int up to {MAX_INT}, not {show(batch)}")
    _check_verify_tolerance(source, data.get("verify_tolerance", {}))
    raw_layers = data["layers"]
    if not isinstance(raw_layers, list) or not raw_layers:
        raise SpecError(f"{source}: 'layers' must be a non-empty list of tables, not {show(raw_layers)}")

    entries = expand(source, raw_layers, data.get("blocks"))
    layers = _Builder(source, tuple(shape)).build(entries)
    return NetworkSpec(name, description, tuple(shape), batch, layers, source, data)


def _check_verify_tolerance(source: str, value: Any) -> None:
    """``verify_tolerance = {fp32 = 0.05}``: the network's own tolerances for ``cnnbench verify``, where
    its numerics need more than the defaults (deep stacks of batch norms in fp32, issue 17)."""
    from cnnbench.config import PRECISIONS

    if not (isinstance(value, Mapping) and all(key in PRECISIONS and is_number(tol) and 0 < tol < 1
                                               for key, tol in value.items())):
        raise SpecError(f"{source}: 'verify_tolerance' must be a table of precision = tolerance, a number in "
                        f"(0, 1), for the precisions {', '.join(PRECISIONS)}, not {show(value)}")


# -- layers -------------------------------------------------------------------------------------------


class _Builder:
    """Walks the layers in file order, which must already be topological, inferring shapes as it goes."""

    def __init__(self, source: str, input_shape: tuple[int, ...]):
        self.source = source
        self.shapes: dict[str, tuple[int, ...]] = {DATA: input_shape}
        # Whether a blob depends on learnable parameters, i.e. whether its gradient must be computed.
        self.needs_grad: dict[str, bool] = {DATA: False}
        self.labels: dict[str, str] = {}

    def fail(self, label: str, message: str) -> SpecError:
        return SpecError(f"{self.source}: {label}: {message}")

    def label(self, name: str) -> str:
        """How messages name a layer: a block layer also says which block and instance it comes from."""
        return self.labels.get(name, f"layer '{name}'")

    def build(self, entries: list[Entry]) -> tuple[Layer, ...]:
        names = self._names(entries)
        losses = [n for n, entry in zip(names, entries) if entry.raw.get("type") == "softmax_loss"]
        if len(losses) > 1:
            raise self.fail(self.label(losses[1]), f"only one softmax_loss layer is allowed; "
                            f"'{losses[0]}' is one already")
        # Checked before shapes, so that a layer reading the loss's output gets this message instead.
        if losses and losses[0] != names[-1]:
            raise self.fail(self.label(losses[0]), f"softmax_loss must be the last layer, "
                            f"but '{names[-1]}' comes after it")
        layers = []
        for index, (name, entry) in enumerate(zip(names, entries)):
            previous = names[index - 1] if index else DATA
            layers.append(self._layer(name, entry, previous, names, index))
        last = layers[-1]
        if last.type != "softmax_loss":
            raise self.fail(self.label(last.name), f"no softmax_loss layer: the last layer must be of type "
                            f"'softmax_loss' (its input is the logits), not '{last.type}'")
        # A dead branch would be counted in the FLOPs but pruned by graph compilers (and never
        # back-propagated by autograd), so frameworks would time different networks.
        read = {name for layer in layers for name in layer.inputs}
        for layer in layers[:-1]:
            if layer.name not in read:
                raise self.fail(self.label(layer.name), "its output is read by no layer; every layer must "
                                "lead to the softmax_loss")
        return tuple(layers)

    def _names(self, entries: list[Entry]) -> list[str]:
        """Check every layer's name first, so that a forward reference can be told from a typo."""
        names: list[str] = []
        wheres: dict[str, str] = {}
        for entry in entries:
            raw, label = entry.raw, entry.where
            if not isinstance(raw, dict):
                raise self.fail(label, f"each layer must be a table, not {show(raw)}")
            if "name" not in raw:
                raise self.fail(label, "missing required key 'name'")
            name = raw["name"]
            if not isinstance(name, str) or not _LAYER_NAME_RE.fullmatch(name):
                raise self.fail(label, f"'name' must be letters, digits, _ and -, starting with a letter "
                                f"or _, not {show(name)}")
            if name == DATA:
                raise self.fail(label, f"the name '{DATA}' is reserved for the network's input")
            if name in wheres:
                raise self.fail(f"layer '{name}'", f"duplicate layer name ({wheres[name]} and {label})")
            names.append(name)
            wheres[name] = label
            if entry.origin:
                self.labels[name] = f"layer '{name}'{entry.origin}"
        return names

    def _layer(self, name: str, entry: Entry, previous: str, names: list[str], index: int) -> Layer:
        raw, label = entry.raw, self.label(name)
        if "type" not in raw:
            raise self.fail(label, f"missing required key 'type'; valid types: {', '.join(LAYER_TYPES)}")
        kind_ = raw["type"]
        if kind_ not in LAYER_TYPES:
            raise self.fail(label, f"unknown type {show(kind_)}; valid types: {', '.join(LAYER_TYPES)}"
                            f"{suggest(kind_, LAYER_TYPES)}")
        valid = _COMMON_KEYS + PARAM_KEYS[kind_]
        for key in raw:
            if key not in valid:
                raise self.fail(label, f"unknown key '{key}' for type '{kind_}'; valid keys: "
                                f"{', '.join(sorted(valid))}{suggest(key, valid)}")
        inputs = self._inputs(label, raw, previous, names, index)
        shapes = tuple(self.shapes[i] for i in inputs)
        params = Params(lambda message: self.fail(label, message), raw, inputs)
        normalised, shape, count, macs = INFER[kind_](params, shapes)

        # Weight gradient: one multiply-add per forward one; the input gradient likewise, but only where
        # something upstream has parameters (frameworks skip it otherwise, e.g. for the first conv).
        upstream = any(self.needs_grad[i] for i in inputs)
        backward = 2 * macs + (2 * macs if upstream else 0)
        self.shapes[name] = shape
        self.needs_grad[name] = upstream or count > 0
        return Layer(name, kind_, inputs, normalised, shapes, shape, count, 2 * macs, backward, entry.block)

    def _inputs(self, label: str, raw: dict, previous: str, names: list[str], index: int) -> tuple[str, ...]:
        if "input" in raw and "inputs" in raw:
            raise self.fail(label, "give either 'input' or 'inputs', not both")
        if "input" in raw:
            if not isinstance(raw["input"], str):
                raise self.fail(label, f"'input' must be a layer name (a string), not {show(raw['input'])}")
            inputs = (raw["input"],)
        elif "inputs" in raw:
            value = raw["inputs"]
            if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
                raise self.fail(label, f"'inputs' must be a non-empty list of layer names, not {show(value)}")
            inputs = tuple(value)
        else:
            inputs = (previous,)
        if len(inputs) != 1 and raw["type"] not in MULTI_INPUT_TYPES:
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
                            f"{', '.join(self.shapes)}{suggest(blob, list(self.shapes))}")
        return inputs
