"""The network spec: parsing, validation messages, shape inference, parameter and FLOP counts.

Expected numbers are written out or computed here from the textbook formulas, independently of
cnnbench.spec, and never read from the shared reference folder.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from cnnbench.networks import UnknownNetwork, builtin_dir, builtin_networks, resolve_network
from cnnbench.spec import LAYER_TYPES, SpecError, load_spec, loads_spec, parse_spec

HEADER = 'name = "t"\ninput = [3, 8, 8]\ndefault_batch_size = 4\n'


def net(*layers: str, header: str = HEADER) -> str:
    """A spec's TOML with the given inline-table layers."""
    return header + "layers = [\n" + "".join(f"  {{{layer}}},\n" for layer in layers) + "]\n"


def spec_of(*layers: str, header: str = HEADER):
    return loads_spec(net(*layers, header=header))


def error_of(text: str, source: str = "<string>") -> str:
    with pytest.raises(SpecError) as info:
        loads_spec(text, source)
    message = str(info.value)
    assert message.startswith(f"{source}: "), message
    return message


FC_LOSS = ('name = "fc", type = "fc", outputs = 10', 'name = "loss", type = "softmax_loss"')


# -- the built-in networks ----------------------------------------------------------------------------


def test_builtins_are_found_by_name():
    assert list(builtin_networks()) == ["alexnet", "lenet"]
    assert builtin_dir().is_dir()
    for name, path in builtin_networks().items():
        assert path.parent == builtin_dir()
        assert resolve_network(name).name == name


def test_lenet():
    spec = resolve_network("lenet")
    assert spec.input_shape == (1, 28, 28)
    assert spec.default_batch_size == 64
    assert [(l.name, l.type, l.output_shape) for l in spec.layers] == [
        ("conv1", "conv", (20, 24, 24)),
        ("pool1", "pool", (20, 12, 12)),
        ("conv2", "conv", (50, 8, 8)),
        ("pool2", "pool", (50, 4, 4)),
        ("fc1", "fc", (500,)),
        ("relu1", "relu", (500,)),
        ("fc2", "fc", (10,)),
        ("loss", "softmax_loss", ()),
    ]
    assert spec.param_count == 431080
    macs = {"conv1": 288000, "conv2": 1600000, "fc1": 400000, "fc2": 5000}
    assert {l.name: l.forward_flops // 2 for l in spec.layers if l.forward_flops} == macs
    assert spec.forward_flops == 4_586_000
    # conv1 reads the data, which needs no gradient: weight gradient only.
    assert spec.layer("conv1").backward_flops == 2 * 288000
    assert spec.layer("conv2").backward_flops == 4 * 1600000
    assert spec.backward_flops == 2 * 288000 + 4 * (1600000 + 400000 + 5000)
    assert spec.training_flops == spec.forward_flops + spec.backward_flops == 13_182_000
    assert spec.num_classes == 10
    assert spec.logits == "fc2"
    assert spec.layer("fc1").input_shapes == ((50, 4, 4),)
    assert spec.layer("conv1").inputs == ("data",)
    assert spec.layer("conv1").params == {
        "filters": 20, "kernel": (5, 5), "stride": (1, 1), "pad": (0, 0), "groups": 1, "bias": True}
    assert spec.layer("pool1").params == {
        "mode": "max", "kernel": (2, 2), "stride": (2, 2), "pad": (0, 0), "round": "floor"}
    assert spec.layer("fc2").params == {"outputs": 10, "bias": True}


def test_alexnet():
    spec = resolve_network("alexnet")
    assert spec.input_shape == (3, 224, 224)
    assert spec.default_batch_size == 128
    shapes = {l.name: l.output_shape for l in spec.layers}
    assert shapes["conv1"] == (64, 55, 55)
    assert shapes["pool1"] == (64, 27, 27)
    assert shapes["conv2"] == (192, 27, 27)
    assert shapes["pool2"] == (192, 13, 13)
    assert shapes["conv3"] == (384, 13, 13)
    assert shapes["conv4"] == shapes["conv5"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6)
    assert shapes["fc6"] == shapes["fc7"] == (4096,)
    assert shapes["fc8"] == (1000,)
    assert [l.type for l in spec.layers].count("relu") == 7
    assert {"dropout", "flatten"}.isdisjoint(l.type for l in spec.layers)
    assert all(spec.layer(p).params["round"] == "ceil" for p in ("pool1", "pool2", "pool5"))

    # (in channels, out channels, kernel, output side) of each conv; (in, out) of each fc.
    convs = [(3, 64, 11, 55), (64, 192, 5, 27), (192, 384, 3, 13), (384, 256, 3, 13), (256, 256, 3, 13)]
    fcs = [(256 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
    params = sum(o * i * k * k + o for i, o, k, _ in convs) + sum(i * o + o for i, o in fcs)
    assert params == 61_100_840
    assert spec.param_count == params
    macs = [o * s * s * i * k * k for i, o, k, s in convs] + [i * o for i, o in fcs]
    assert spec.forward_flops == 2 * sum(macs) == 1_428_376_960
    assert spec.backward_flops == 4 * sum(macs) - 2 * macs[0]
    assert spec.num_classes == 1000
    assert spec.logits == "fc8"


# -- the format ---------------------------------------------------------------------------------------


def test_implicit_input_is_the_previous_layer_and_first_reads_data():
    spec = spec_of('name = "a", type = "relu"', 'name = "b", type = "flatten"', *FC_LOSS)
    assert [l.inputs for l in spec.layers] == [("data",), ("a",), ("b",), ("fc",)]
    assert spec.layer("b").output_shape == (3 * 8 * 8,)


def test_explicit_inputs():
    spec = spec_of(
        'name = "c1", type = "conv", filters = 4, kernel = 3',
        'name = "r", input = "c1", type = "relu"',
        'name = "fc", inputs = ["r"], type = "fc", outputs = 5',
        'name = "loss", type = "softmax_loss"',
    )
    assert spec.layer("r").inputs == ("c1",)
    assert spec.layer("fc").input_shapes == ((4, 6, 6),)
    assert spec.num_classes == 5


def test_a_dead_branch_is_rejected():
    with pytest.raises(SpecError, match=r"layer 'side': its output is read by no layer"):
        spec_of(
            'name = "c1", type = "conv", filters = 4, kernel = 3',
            'name = "side", type = "pool", mode = "avg", kernel = 2',
            'name = "r", input = "c1", type = "relu"',
            'name = "fc", type = "fc", outputs = 5',
            'name = "loss", type = "softmax_loss"',
        )


def test_array_of_tables_form_equals_inline_form():
    tables = HEADER + textwrap.dedent("""
        [[layers]]
        name = "c"
        type = "conv"
        filters = 2
        kernel = [3, 1]

        [[layers]]
        name = "fc"
        type = "fc"
        outputs = 10

        [[layers]]
        name = "loss"
        type = "softmax_loss"
    """)
    inline = net('name = "c", type = "conv", filters = 2, kernel = [3, 1]', *FC_LOSS)
    assert loads_spec(tables) == loads_spec(inline)
    assert loads_spec(tables).data == loads_spec(inline).data
    assert loads_spec(tables).layer("c").output_shape == (2, 6, 8)


@pytest.mark.parametrize("name", ["lenet", "alexnet"])
def test_data_round_trips_through_json(name):
    spec = resolve_network(name)
    again = parse_spec(json.loads(json.dumps(spec.data)))
    assert again == spec
    assert parse_spec(spec.data, spec.source) == spec
    assert again.source == "<string>"
    assert hash(again) == hash(spec)


def test_parse_spec_does_not_keep_the_callers_mapping():
    spec = resolve_network("lenet")
    data = json.loads(json.dumps(spec.data))
    again = parse_spec(data)
    data["layers"].clear()
    assert again.data == spec.data


def test_defaults_and_description():
    spec = spec_of('name = "d", type = "dropout"', 'name = "fc", type = "fc", outputs = 3, bias = false',
                   'name = "loss", type = "softmax_loss"')
    assert spec.description == ""
    assert spec.layer("d").params == {"ratio": 0.5}
    assert spec.layer("fc").param_count == 3 * 8 * 8 * 3
    assert spec.layer("fc").params == {"outputs": 3, "bias": False}


# -- pooling and convolution arithmetic ---------------------------------------------------------------


def pooled(side: int, round_: str, kernel: int, stride: int, pad: int = 0) -> tuple[int, ...]:
    header = f'name = "t"\ninput = [1, {side}, {side}]\ndefault_batch_size = 1\n'
    spec = spec_of(f'name = "p", type = "pool", mode = "max", kernel = {kernel}, stride = {stride}, '
                   f'pad = {pad}, round = "{round_}"', *FC_LOSS, header=header)
    return spec.layer("p").output_shape[1:]


def test_pool_floor_and_ceil_agree_when_windows_fit():
    assert pooled(24, "floor", 2, 2) == pooled(24, "ceil", 2, 2) == (12, 12)
    assert pooled(55, "floor", 3, 2) == pooled(55, "ceil", 3, 2) == (27, 27)


def test_pool_ceil_keeps_a_partial_last_window():
    # (6 - 3) / 2 = 1.5: floor drops the partial window, Caffe's ceil keeps it.
    assert pooled(6, "floor", 3, 2) == (2, 2)
    assert pooled(6, "ceil", 3, 2) == (3, 3)
    assert pooled(112, "floor", 3, 2) == (55, 55)
    assert pooled(112, "ceil", 3, 2) == (56, 56)


def test_pool_ceil_with_padding_applies_caffes_last_window_rule():
    # ceil((5 + 2 - 2) / 2) + 1 = 4, but the 4th window would start at 6 >= 5 + 1, in the padding only.
    assert pooled(5, "ceil", 2, 2, pad=1) == (3, 3)
    assert pooled(5, "floor", 2, 2, pad=1) == (3, 3)
    # With pad 1 and side 4 the last window starts at 4 < 4 + 1, so it stays.
    assert pooled(4, "ceil", 2, 2, pad=1) == (3, 3)
    assert pooled(4, "floor", 2, 2, pad=1) == (3, 3)
    assert pooled(6, "ceil", 3, 2, pad=1) == (4, 4)
    assert pooled(6, "floor", 3, 2, pad=1) == (3, 3)


def test_conv_rectangular_kernel_stride_pad():
    spec = spec_of('name = "c", type = "conv", filters = 6, kernel = [3, 5], stride = [1, 2], pad = [1, 0]',
                   *FC_LOSS)
    c = spec.layer("c")
    assert c.output_shape == (6, 8, 2)
    assert c.params["kernel"] == (3, 5) and c.params["stride"] == (1, 2) and c.params["pad"] == (1, 0)
    assert c.param_count == 6 * 3 * 3 * 5 + 6
    assert c.forward_flops == 2 * 6 * 8 * 2 * 3 * 3 * 5


def test_groups():
    header = 'name = "t"\ninput = [4, 8, 8]\ndefault_batch_size = 4\n'
    spec = spec_of('name = "c", type = "conv", filters = 6, kernel = 3, groups = 2, bias = false',
                   *FC_LOSS, header=header)
    c = spec.layer("c")
    assert c.params["groups"] == 2
    assert c.param_count == 6 * (4 // 2) * 3 * 3
    assert c.forward_flops == 2 * 6 * 6 * 6 * (4 // 2) * 3 * 3
    assert c.backward_flops == c.forward_flops  # reads data: no input gradient


def test_input_gradient_counted_after_a_layer_with_parameters_only():
    first = spec_of('name = "p", type = "pool", mode = "max", kernel = 2',
                    'name = "c", type = "conv", filters = 2, kernel = 3', *FC_LOSS)
    assert first.layer("c").backward_flops == first.layer("c").forward_flops
    second = spec_of('name = "c0", type = "conv", filters = 2, kernel = 1',
                     'name = "c", type = "conv", filters = 2, kernel = 3', *FC_LOSS)
    assert second.layer("c").backward_flops == 2 * second.layer("c").forward_flops


# -- validation messages ------------------------------------------------------------------------------


def test_error_names_file_and_layer(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(net('name = "conv9", type = "convolution", filters = 2', *FC_LOSS))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == (f"{path}: layer 'conv9': unknown type 'convolution'; valid types: "
                               f"{', '.join(LAYER_TYPES)}")
    assert ", ".join(LAYER_TYPES) == "conv, dropout, fc, flatten, pool, relu, softmax_loss"


def test_unreadable_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match=r"nope\.toml: cannot read: "):
        load_spec(missing)
    (tmp_path / "latin1.toml").write_bytes(b'name = "\xe9"\n')
    with pytest.raises(SpecError, match="cannot read: not UTF-8"):
        load_spec(tmp_path / "latin1.toml")


def test_toml_syntax_error():
    message = error_of('name = "t"\ninput = = [1, 2, 3]\n')
    assert message.startswith("<string>: invalid TOML: ") and "line 2" in message, message


TOP_LEVEL_ERRORS = [
    ('input = [1, 2, 2]\ndefault_batch_size = 1\nlayers = [{name = "l", type = "softmax_loss"}]',
     ["missing required top-level key 'name'"]),
    ('name = "t"\ndefault_batch_size = 1\nlayers = [{name = "l", type = "softmax_loss"}]',
     ["missing required top-level key 'input'"]),
    ('name = "t"\ninput = [1, 2, 2]\nlayers = [{name = "l", type = "softmax_loss"}]',
     ["'default_batch_size'"]),
    ('name = "t"\ninput = [1, 2, 2]\ndefault_batch_size = 1', ["'layers'"]),
    (HEADER + "layers = []", ["'layers' must be a non-empty list of tables"]),
    (HEADER + 'layers = "conv"', ["'layers' must be a non-empty list of tables"]),
    (HEADER + "layers = [1]", ["layer #1", "must be a table"]),
    (HEADER + "nmae = 1\nlayers = [{}]", ["unknown top-level key 'nmae'", "valid keys: name, description"]),
    ('name = ""\n' + HEADER[10:] + "layers = [{}]", ["'name' must be"]),
    ('name = 3\n' + HEADER[10:] + "layers = [{}]", ["'name' must be"]),
    (HEADER + 'description = 5\nlayers = [{}]', ["'description' must be a string"]),
    ('name = "t"\ninput = [3, 8]\ndefault_batch_size = 4\nlayers = [{}]', ["'input'", "3 positive ints"]),
    ('name = "t"\ninput = [3, 0, 8]\ndefault_batch_size = 4\nlayers = [{}]', ["'input'", "3 positive ints"]),
    ('name = "t"\ninput = [3, true, 8]\ndefault_batch_size = 4\nlayers = [{}]', ["'input'"]),
    ('name = "t"\ninput = [3, 8, 8]\ndefault_batch_size = 0\nlayers = [{}]',
     ["'default_batch_size' must be a positive int, not 0"]),
    ('name = "t"\ninput = [3, 8, 8]\ndefault_batch_size = true\nlayers = [{}]',
     ["'default_batch_size' must be a positive int, not true"]),
    ('name = "t"\ninput = [3, 8, 8]\ndefault_batch_size = 2.0\nlayers = [{}]', ["'default_batch_size'"]),
]


@pytest.mark.parametrize("text,fragments", TOP_LEVEL_ERRORS)
def test_top_level_errors(text, fragments):
    message = error_of(text)
    for fragment in fragments:
        assert fragment in message, message


C = 'name = "c", type = "conv", filters = 2, kernel = 3'
LAYER_ERRORS = [
    # (layers, fragments: the layer's label comes first)
    (['type = "relu"', *FC_LOSS], ["layer #1: missing required key 'name'"]),
    (['name = "data", type = "relu"', *FC_LOSS], ["layer #1:", "'data' is reserved"]),
    (['name = "a.b", type = "relu"', *FC_LOSS], ["layer #1:", "'name' must be"]),
    (['name = "c"', *FC_LOSS], ["layer 'c': missing required key 'type'"]),
    ([C, 'name = "c", type = "relu"', *FC_LOSS], ["layer 'c': duplicate layer name", "#1 and #2"]),
    (['name = "c", type = "conv", kernel = 3', *FC_LOSS],
     ["layer 'c': missing required parameter 'filters' for type 'conv'"]),
    (['name = "c", type = "conv", filters = 2', *FC_LOSS], ["layer 'c': missing required parameter 'kernel'"]),
    (['name = "p", type = "pool", kernel = 2', *FC_LOSS], ["layer 'p': missing required parameter 'mode'"]),
    (['name = "f", type = "fc"', FC_LOSS[1]], ["layer 'f': missing required parameter 'outputs'"]),
    ([C + ", filter = 3", *FC_LOSS],
     ["layer 'c': unknown key 'filter' for type 'conv'",
      "valid keys: bias, filters, groups, input, inputs, kernel, name, pad, stride, type", "did you mean 'filters'"]),
    (['name = "r", type = "relu", ratio = 0.5', *FC_LOSS], ["layer 'r': unknown key 'ratio' for type 'relu'"]),
    (['name = "c", type = "conv", filters = 0, kernel = 3', *FC_LOSS],
     ["layer 'c': 'filters' must be a positive int, not 0"]),
    (['name = "c", type = "conv", filters = true, kernel = 3', *FC_LOSS],
     ["layer 'c': 'filters' must be a positive int, not true"]),
    (['name = "c", type = "conv", filters = 2.0, kernel = 3', *FC_LOSS], ["layer 'c': 'filters'"]),
    (['name = "c", type = "conv", filters = 2, kernel = true', *FC_LOSS], ["layer 'c': 'kernel' must be"]),
    (['name = "c", type = "conv", filters = 2, kernel = [3, 0]', *FC_LOSS], ["layer 'c': 'kernel' must be"]),
    (['name = "c", type = "conv", filters = 2, kernel = [3, 3, 3]', *FC_LOSS], ["layer 'c': 'kernel'"]),
    ([C + ", stride = 0", *FC_LOSS], ["layer 'c': 'stride' must be a positive"]),
    ([C + ", pad = -1", *FC_LOSS], ["layer 'c': 'pad' must be a non-negative"]),
    ([C + ", bias = 1", *FC_LOSS], ["layer 'c': 'bias' must be true or false, not 1"]),
    ([C + ", groups = 2", *FC_LOSS], ["layer 'c': groups=2 must divide", "input channels (3)"]),
    (['name = "p", type = "pool", mode = "min", kernel = 2', *FC_LOSS],
     ["layer 'p': 'mode' must be one of max, avg, not 'min'"]),
    (['name = "p", type = "pool", mode = "max", kernel = 2, round = "up"', *FC_LOSS],
     ["layer 'p': 'round' must be one of floor, ceil"]),
    (['name = "p", type = "pool", mode = "max", kernel = 2, pad = 2', *FC_LOSS],
     ["layer 'p': pad 2x2 must be smaller than kernel 2x2"]),
    (['name = "d", type = "dropout", ratio = 1.0', *FC_LOSS], ["layer 'd': 'ratio' must be a number in [0, 1)"]),
    (['name = "d", type = "dropout", ratio = true', *FC_LOSS], ["layer 'd': 'ratio'"]),
    (['name = "c", type = "conv", filters = 2, kernel = 9', *FC_LOSS],
     ["layer 'c': output size would be 0x0, less than 1", "input 8x8, kernel 9x9"]),
    (['name = "c", type = "conv", filters = 2, kernel = [3, 12], pad = 1', *FC_LOSS],
     ["layer 'c': output size would be 8x-1"]),
    ([C, 'name = "p", type = "pool", mode = "max", kernel = 4, stride = 4', 'name = "p2", type = "pool", '
      'mode = "max", kernel = 2', *FC_LOSS], ["layer 'p2': output size would be 0x0", "input 1x1"]),
    (['name = "f", type = "flatten"', 'name = "c", type = "conv", filters = 2, kernel = 1', *FC_LOSS],
     ["layer 'c': type 'conv' needs a 3-D (C, H, W) input", "shape (192,)"]),
    (['name = "f", type = "fc", outputs = 4', 'name = "p", type = "pool", mode = "avg", kernel = 1', *FC_LOSS],
     ["layer 'p': type 'pool' needs a 3-D"]),
    ([C, 'name = "loss", type = "softmax_loss"'],
     ["layer 'loss': type 'softmax_loss' needs a 1-D (F,) input", "shape (2, 6, 6)"]),
    ([C, 'name = "r", type = "relu", input = "cc"', *FC_LOSS],
     ["layer 'r': input 'cc' names no earlier layer; defined so far: data, c"]),
    ([C, 'name = "r", type = "relu", input = "later"', 'name = "later", type = "relu"', *FC_LOSS],
     ["layer 'r': input 'later' is a later layer", "forward reference"]),
    ([C, 'name = "r", type = "relu", input = "r"', *FC_LOSS], ["layer 'r': input 'r' is the layer itself"]),
    ([C, 'name = "r", type = "relu", input = "c", inputs = ["c"]', *FC_LOSS], ["layer 'r': give either"]),
    ([C, 'name = "r", type = "relu", inputs = []', *FC_LOSS], ["layer 'r': 'inputs' must be a non-empty list"]),
    ([C, 'name = "r", type = "relu", input = 3', *FC_LOSS], ["layer 'r': 'input' must be a layer name"]),
    ([C, 'name = "r", type = "relu", inputs = ["c", "data"]', *FC_LOSS],
     ["layer 'r': type 'relu' takes exactly 1 input, not 2"]),
    ([C, FC_LOSS[0]], ["layer 'fc': no softmax_loss layer", "of type 'softmax_loss'", "not 'fc'"]),
    ([C, *FC_LOSS, 'name = "after", type = "relu"'],
     ["layer 'loss': softmax_loss must be the last layer, but 'after' comes after it"]),
    ([C, *FC_LOSS, 'name = "loss2", type = "softmax_loss"'],
     ["layer 'loss2': only one softmax_loss layer is allowed; 'loss' is one already"]),
]


@pytest.mark.parametrize("layers,fragments", LAYER_ERRORS)
def test_layer_errors(layers, fragments):
    message = error_of(net(*layers), source="networks/bad.toml")
    assert message.startswith(f"networks/bad.toml: {fragments[0].split(':')[0]}:"), message
    for fragment in fragments:
        assert fragment in message, message


def test_parse_spec_rejects_a_non_table():
    with pytest.raises(SpecError, match=r"^<string>: a spec must be a table"):
        parse_spec([1, 2])  # type: ignore[arg-type]


# -- resolving names and paths ------------------------------------------------------------------------


def test_resolve_by_path(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(net(*FC_LOSS))
    spec = resolve_network(str(path))
    assert spec.source == str(path)
    assert spec.name == "t" and spec.num_classes == 10
    assert resolve_network(builtin_networks()["lenet"]) == resolve_network("lenet")


def test_resolve_missing_path_names_it(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(SpecError) as info:
        resolve_network(str(missing))
    assert str(info.value).startswith(f"{missing}: cannot read")
    with pytest.raises(SpecError, match="cannot read"):
        resolve_network("no/such/net")
    with pytest.raises(SpecError, match="not a file"):
        resolve_network(str(tmp_path) + "/")


def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownNetwork) as info:
        resolve_network("lenett")
    assert str(info.value) == (
        "unknown network 'lenett'; valid choices: alexnet, lenet (or a path to a .toml spec file)")
    assert isinstance(info.value, SpecError)


def test_extra_networks_are_choices_but_cannot_shadow_builtins(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(net(*FC_LOSS))
    assert resolve_network("tiny", extra={"tiny": path}).name == "t"
    assert resolve_network("lenet", extra={"lenet": path}).name == "lenet"
    with pytest.raises(UnknownNetwork, match="alexnet, lenet, tiny "):
        resolve_network("nope", extra={"tiny": path})


def test_spec_module_imports_no_framework():
    import cnnbench.spec as spec_module

    source = open(spec_module.__file__, encoding="utf-8").read()
    for framework in ("torch", "tensorflow", "mxnet", "numpy", "yaml"):
        assert f"import {framework}" not in source


def test_layer_lookup_error_lists_layers():
    spec = resolve_network("lenet")
    with pytest.raises(KeyError, match="conv1, pool1"):
        spec.layer("conv3")
