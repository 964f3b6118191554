"""Reusable blocks: a group of layers written once under ``[blocks.NAME]`` and instantiated many times.

A block declares its parameters, the names its layers use for the instance's input blobs, and its
layers; a string value ``"$param"`` in a block layer stands for the instance's value of that parameter::

    layers = [
      ...
      {name = "inception_3a", block = "inception", input = "pool2", c1x1 = 64, c3x3 = 128},
      {name = "pool3", type = "pool", mode = "max", kernel = 3, stride = 2},   # reads inception_3a
    ]

    [blocks.inception]
    params = ["c1x1", "c3x3"]
    inputs = ["input"]            # the default: one input blob, called "input" inside the block
    output = "output"             # the default: the block's last layer
    layers = [
      {name = "1x1", type = "conv", input = "input", filters = "$c1x1", kernel = 1},
      {name = "3x3", type = "conv", input = "input", filters = "$c3x3", kernel = 3, pad = 1},
      {name = "output", type = "concat", inputs = ["1x1", "3x3"]},
    ]

Expansion turns each instance into ordinary layers: block layer ``3x3`` of instance ``inception_3a``
becomes ``inception_3a__3x3``, and the block's output layer takes the instance's own name, so later
layers read ``inception_3a`` like any other layer. Adapters only ever see the flat list of layers.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from cnnbench.spec.layers import SpecError, show, suggest

SEPARATOR = "__"
BLOCK_KEYS = ("description", "params", "inputs", "output", "layers")
DATA = "data"
# The instance's name is the prefix, so a block layer's own name may start with a digit ("1x1").
_INNER_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM_REF_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_NOT_PARAMETERS = ("name", "input", "inputs")


@dataclass(frozen=True)
class Entry:
    """One ordinary layer after expansion."""

    raw: Any                 # the layer's table (names and inputs of block layers already resolved)
    where: str               # how to point at it before its name is known to be valid: "layer #3"
    origin: str = ""         # appended to "layer 'NAME'" in messages: " (block 'b' layer 'x', in 'inst')"
    block: str | None = None  # the instance it came from


@dataclass(frozen=True)
class _Block:
    name: str
    params: tuple[str, ...]
    inputs: tuple[str, ...]
    output: str
    layers: tuple[dict, ...]


def expand(source: str, raw_layers: list, raw_blocks: Any) -> list[Entry]:
    """The network's layers with every block instance replaced by the block's layers."""
    blocks = _blocks(source, raw_blocks)
    entries: list[Entry] = []
    previous = DATA          # the blob a layer without an explicit input reads
    after_instance = False   # whether `previous` is an instance whose output is not its last layer
    for index, raw in enumerate(raw_layers, 1):
        if not isinstance(raw, dict):
            raise SpecError(f"{source}: layer #{index}: each layer must be a table, not {show(raw)}")
        if "block" not in raw:
            if after_instance and "input" not in raw and "inputs" not in raw:
                raw = {**raw, "input": previous}
            entries.append(Entry(raw, f"layer #{index}"))
            # A bad name is reported by the builder, which checks every name before any input.
            previous, after_instance = str(raw.get("name")), False
            continue
        expanded = _instance(source, index, raw, blocks, previous)
        entries.extend(expanded)
        previous = raw["name"]
        after_instance = expanded[-1].raw["name"] != previous
    return entries


def _blocks(source: str, raw_blocks: Any) -> dict[str, _Block]:
    if raw_blocks is None:
        return {}
    if not isinstance(raw_blocks, dict):
        raise SpecError(f"{source}: 'blocks' must be a table of [blocks.NAME] tables, not {show(raw_blocks)}")
    return {name: _block(source, name, raw) for name, raw in raw_blocks.items()}


def _block(source: str, name: str, raw: Any) -> _Block:
    def fail(message: str, layer: str | None = None) -> SpecError:
        where = f"block '{name}'" + (f" layer '{layer}'" if layer is not None else "")
        return SpecError(f"{source}: {where}: {message}")

    if not _IDENT_RE.fullmatch(name):
        raise fail("a block's name must be letters, digits and _, starting with a letter or _")
    if not isinstance(raw, dict):
        raise fail(f"a block must be a table, not {show(raw)}")
    for key in raw:
        if key not in BLOCK_KEYS:
            raise fail(f"unknown key '{key}'; valid keys: {', '.join(BLOCK_KEYS)}{suggest(key, BLOCK_KEYS)}")
    if not isinstance(raw.get("description", ""), str):
        raise fail(f"'description' must be a string, not {show(raw['description'])}")
    params = _names_list(raw.get("params", []), "params", fail, _IDENT_RE, "identifiers (letters, digits, _)")
    inputs = _names_list(raw.get("inputs", ["input"]), "inputs", fail, _INNER_NAME_RE,
                         "names (letters, digits, _ and -)", empty_ok=False)
    layers = raw.get("layers")
    if not isinstance(layers, list) or not layers:
        raise fail(f"'layers' must be a non-empty list of tables, not {show(layers)}")

    names: list[str] = []
    used: set[str] = set()
    for number, layer in enumerate(layers, 1):
        if not isinstance(layer, dict):
            raise fail(f"layer #{number} must be a table, not {show(layer)}")
        inner = layer.get("name")
        if not isinstance(inner, str) or not _INNER_NAME_RE.fullmatch(inner):
            raise fail(f"layer #{number}: 'name' must be letters, digits, _ and -, not {show(inner)}")
        if inner in names or inner in inputs:
            what = "the block's input" if inner in inputs else "an earlier layer's name"
            raise fail(f"layer #{number}: the name '{inner}' is already {what}")
        if "block" in layer:
            raise fail("a block cannot instantiate a block; write its layers out", inner)
        refs = layer.get("inputs", [layer.get("input")])
        for ref in refs if isinstance(refs, list) else []:
            if isinstance(ref, str) and ref not in inputs and ref not in names:
                later = " (a later layer: list every layer after the layers it reads)" if any(
                    isinstance(other, dict) and other.get("name") == ref for other in layers) else ""
                raise fail(f"input '{ref}' names neither an earlier layer of the block nor one of its inputs "
                           f"({', '.join(inputs)}){later}", inner)
        for key, value in layer.items():
            if key not in _NOT_PARAMETERS:
                for ref in _refs(value):
                    if ref not in params:
                        declared = ", ".join(params) if params else "none"
                        raise fail(f"'{key}' refers to '${ref}', which is not a parameter of the block "
                                   f"(its params: {declared}){suggest(ref, params)}", inner)
                    used.add(ref)
        names.append(inner)
    for param in params:
        if param not in used:
            raise fail(f"parameter '{param}' is used by no layer of the block")
    output = raw.get("output", names[-1])
    if output not in names:
        raise fail(f"'output' must name one of the block's layers ({', '.join(names)}), not {show(output)}")
    return _Block(name, params, inputs, output, tuple(layers))


def _names_list(value: Any, key: str, fail, pattern: re.Pattern, what: str, empty_ok: bool = True) -> tuple:
    if not (isinstance(value, list) and (value or empty_ok)
            and all(isinstance(v, str) and pattern.fullmatch(v) for v in value)):
        raise fail(f"'{key}' must be a {'' if empty_ok else 'non-empty '}list of {what}, not {show(value)}")
    if len(set(value)) != len(value):
        raise fail(f"'{key}' lists a name twice: {show(value)}")
    return tuple(value)


def _refs(value: Any) -> list[str]:
    """The parameter names that a value refers to ("$name"), looking inside lists."""
    if isinstance(value, str):
        match = _PARAM_REF_RE.fullmatch(value)
        return [match.group(1)] if match else []
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


def _substitute(value: Any, args: dict) -> Any:
    if isinstance(value, str):
        match = _PARAM_REF_RE.fullmatch(value)
        return copy.deepcopy(args[match.group(1)]) if match else value
    if isinstance(value, list):
        return [_substitute(item, args) for item in value]
    return value


def _instance(source: str, index: int, raw: dict, blocks: dict[str, _Block], previous: str | None) -> list[Entry]:
    name = raw.get("name")
    label = f"layer #{index}"

    def fail(message: str) -> SpecError:
        return SpecError(f"{source}: {label}: {message}")

    if "name" not in raw:
        raise fail("missing required key 'name'")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
        raise fail(f"'name' must be letters, digits, _ and -, starting with a letter or _, not {show(name)}")
    label = f"layer '{name}'"
    block_name = raw["block"]
    if not (isinstance(block_name, str) and block_name in blocks):
        choices = ", ".join(blocks) if blocks else "none are defined (add a [blocks.NAME] table)"
        raise fail(f"unknown block {show(block_name)}; blocks: {choices}{suggest(block_name, list(blocks))}")
    block = blocks[block_name]
    label = f"layer '{name}' (block '{block_name}')"
    valid = ("name", "block", "input", "inputs") + block.params
    for key in raw:
        if key not in valid:
            raise fail(f"unknown key '{key}' for block '{block.name}'; valid keys: {', '.join(valid)}"
                       f"{suggest(key, valid)}")
    missing = [param for param in block.params if param not in raw]
    if missing:
        raise fail(f"missing parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)} of block "
                   f"'{block.name}'")

    if "input" in raw and "inputs" in raw:
        raise fail("give either 'input' or 'inputs', not both")
    if "input" in raw:
        actual = [raw["input"]]
    elif "inputs" in raw:
        actual = raw["inputs"]
    else:
        actual = [previous]
    if not (isinstance(actual, list) and all(isinstance(a, str) for a in actual)):
        raise fail(f"'input' must be a layer name and 'inputs' a list of them, not "
                   f"{show(raw.get('input', raw.get('inputs')))}")
    if len(actual) != len(block.inputs):
        raise fail(f"block '{block.name}' takes {len(block.inputs)} input{'s' * (len(block.inputs) > 1)} "
                   f"({', '.join(block.inputs)}), not {len(actual)}")

    def flat(ref: str) -> str:
        if ref in block.inputs:
            return actual[block.inputs.index(ref)]
        return name if ref == block.output else f"{name}{SEPARATOR}{ref}"

    args = {param: raw[param] for param in block.params}
    entries = []
    for number, layer in enumerate(block.layers, 1):
        inner = layer["name"]
        new = {key: (value if key in _NOT_PARAMETERS else _substitute(value, args)) for key, value in layer.items()}
        new["name"] = flat(inner)
        if "input" in layer:
            new["input"] = flat(layer["input"]) if isinstance(layer["input"], str) else layer["input"]
        elif "inputs" in layer:
            value = layer["inputs"]
            new["inputs"] = [flat(v) for v in value] if isinstance(value, list) and all(
                isinstance(v, str) for v in value) else value
        elif number == 1:
            new["input"] = actual[0]
        where = f"layer #{index} ('{name}', block '{block.name}' layer #{number})"
        entries.append(Entry(new, where, f" (block '{block.name}' layer '{inner}', in '{name}')", name))
    return entries
