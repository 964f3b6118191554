"""The network spec: parsing, validation messages, shape inference, parameter and FLOP counts.

Expected numbers are written out or computed here from the textbook formulas, independently of
cnnbench.spec, and never read from the shared reference folder.
"""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from cnnbench.spec.catalog import UnknownNetwork, builtin_dir, builtin_networks, resolve_network
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
    assert "\n" not in message, message  # one line
    return message


FC_LOSS = ('name = "fc", type = "fc", outputs = 10', 'name = "loss", type = "softmax_loss"')


# -- the built-in networks ----------------------------------------------------------------------------


def test_builtins_are_found_by_name():
    assert list(builtin_networks()) == ["alexnet", "efficientnet_b0", "googlenet", "lenet", "mobilenet_v2", "overfeat",
                                        "resnet18", "resnet50", "vgg_a"]
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


def conv_costs(convs):
    """Parameters and multiply-adds of convolutions given as (in, out, kernel, output side), with bias."""
    return (sum(o * i * k * k + o for i, o, k, _ in convs),
            [o * s * s * i * k * k for i, o, k, s in convs])


def fc_costs(fcs):
    return sum(i * o + o for i, o in fcs), [i * o for i, o in fcs]


def test_overfeat():
    spec = resolve_network("overfeat")
    assert (spec.input_shape, spec.default_batch_size) == ((3, 231, 231), 128)
    shapes = {l.name: l.output_shape for l in spec.layers}
    # (231 - 11) / 4 + 1 = 56 -> 28 -> (28 - 5) + 1 = 24 -> 12 -> 12 -> 12 -> 12 -> 6
    assert [shapes[n] for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")] == [
        (96, 56, 56), (96, 28, 28), (256, 24, 24), (256, 12, 12), (512, 12, 12), (1024, 12, 12), (1024, 12, 12),
        (1024, 6, 6)]
    # As the prototxt: no ReLU after fc6 and fc7, no dropout.
    assert [l.type for l in spec.layers].count("relu") == 5
    assert spec.layer("fc7").inputs == ("fc6",) and spec.layer("fc8").inputs == ("fc7",)
    conv_params, conv_macs = conv_costs([(3, 96, 11, 56), (96, 256, 5, 24), (256, 512, 3, 12), (512, 1024, 3, 12),
                                         (1024, 1024, 3, 12)])
    fc_params, fc_macs = fc_costs([(1024 * 6 * 6, 3072), (3072, 4096), (4096, 1000)])
    assert spec.param_count == conv_params + fc_params == 145_920_872
    assert spec.forward_flops == 2 * (sum(conv_macs) + sum(fc_macs)) == 5_602_807_808
    assert spec.backward_flops == 4 * (sum(conv_macs) + sum(fc_macs)) - 2 * conv_macs[0]
    assert spec.num_classes == 1000


def test_vgg_a():
    spec = resolve_network("vgg_a")
    assert (spec.input_shape, spec.default_batch_size) == ((3, 224, 224), 64)
    convs = [(3, 64, 3, 224), (64, 128, 3, 112), (128, 256, 3, 56), (256, 256, 3, 56), (256, 512, 3, 28),
             (512, 512, 3, 28), (512, 512, 3, 14), (512, 512, 3, 14)]
    assert [l.output_shape for l in spec.layers if l.type == "conv"] == [(o, s, s) for _, o, _, s in convs]
    assert [l.output_shape for l in spec.layers if l.type == "pool"] == [
        (64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]
    assert [l.type for l in spec.layers].count("relu") == 8
    conv_params, conv_macs = conv_costs(convs)
    fc_params, fc_macs = fc_costs([(512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)])
    assert spec.param_count == conv_params + fc_params == 132_863_336
    assert spec.forward_flops == 2 * (sum(conv_macs) + sum(fc_macs)) == 15_218_180_096


# name, input side, then the output channels of 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection.
INCEPTION = [
    ("inception_3a", 28, 64, 96, 128, 16, 32, 32),
    ("inception_3b", 28, 128, 128, 192, 32, 96, 64),
    ("inception_4a", 14, 192, 96, 208, 16, 48, 64),
    ("inception_4b", 14, 160, 112, 224, 24, 64, 64),
    ("inception_4c", 14, 128, 128, 256, 24, 64, 64),
    ("inception_4d", 14, 112, 144, 288, 32, 64, 64),
    ("inception_4e", 14, 256, 160, 320, 32, 128, 128),
    ("inception_5a", 7, 256, 160, 320, 32, 128, 128),
    ("inception_5b", 7, 384, 192, 384, 48, 128, 128),
]


def test_googlenet():
    spec = resolve_network("googlenet")
    assert (spec.input_shape, spec.default_batch_size) == ((3, 224, 224), 128)
    # conv1: (224 + 6 - 7) // 2 + 1 = 112; Caffe's ceil pools: 112 -> 56, 56 -> 28, 28 -> 14, 14 -> 7.
    stem = [(3, 64, 7, 112), (64, 64, 1, 56), (64, 192, 3, 56)]
    convs, channels = list(stem), 192
    for name, side, c1, c3r, c3, c5r, c5, proj in INCEPTION:
        convs += [(channels, c1, 1, side), (channels, c3r, 1, side), (c3r, c3, 3, side), (channels, c5r, 1, side),
                  (c5r, c5, 5, side), (channels, proj, 1, side)]
        channels = c1 + c3 + c5 + proj
        module = spec.layer(name)
        assert (module.type, module.output_shape, module.block) == ("concat", (channels, side, side), name)
        assert module.inputs == tuple(f"{name}__relu_{b}" for b in ("1x1", "3x3", "5x5", "pool_proj"))
        assert spec.layer(f"{name}__3x3").params["pad"] == (1, 1)
        assert spec.layer(f"{name}__pool").params == {
            "mode": "max", "kernel": (3, 3), "stride": (1, 1), "pad": (1, 1), "round": "ceil"}
    assert channels == 1024
    assert [l.output_shape for l in spec.layers if l.type == "conv"] == [(o, s, s) for _, o, _, s in convs]
    assert spec.layer("pool5").params == {"mode": "avg", "kernel": (7, 7), "stride": (1, 1), "pad": (0, 0),
                                          "round": "ceil"}
    assert spec.layer("pool5").output_shape == (1024, 1, 1)
    # As the prototxt: its LRN layers are commented out, no dropout, no auxiliary classifiers; a ReLU
    # follows fc6, and the loss reads it.
    assert {"lrn", "dropout"}.isdisjoint(l.type for l in spec.layers)
    assert spec.logits == "relu_fc6" and spec.layer("relu_fc6").inputs == ("fc6",)
    assert len(spec.layers) == 8 + 9 * 14 + 2 + 4
    assert [l.type for l in spec.layers].count("relu") == 3 + 9 * 6 + 1
    conv_params, conv_macs = conv_costs(convs)
    fc_params, fc_macs = fc_costs([(1024, 1000)])
    assert spec.param_count == conv_params + fc_params == 6_998_552
    assert spec.forward_flops == 2 * (sum(conv_macs) + sum(fc_macs)) == 3_165_343_744
    assert spec.backward_flops == 4 * (sum(conv_macs) + sum(fc_macs)) - 2 * conv_macs[0]
    # Written once, instantiated nine times; the mapping keeps the block for the worker's re-parse.
    assert list(spec.data["blocks"]) == ["inception"]
    assert sum("block" in layer for layer in spec.data["layers"]) == 9


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


@pytest.mark.parametrize("name", ["lenet", "alexnet", "overfeat", "vgg_a", "googlenet"])
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
    assert ", ".join(LAYER_TYPES) == ("add, batchnorm, channel_scale, concat, conv, dropout, fc, flatten, global_pool, "
                                      "hardswish, lrn, pool, relu, relu6, sigmoid, silu, softmax_loss")


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
     ["'default_batch_size' must be a positive int up to 2147483647, not 0"]),
    ('name = "t"\ninput = [3, 8, 8]\ndefault_batch_size = true\nlayers = [{}]',
     ["'default_batch_size' must be a positive int up to 2147483647, not true"]),
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
    ([C, 'name = "c", type = "relu"', *FC_LOSS], ["layer 'c': duplicate layer name (layer #1 and layer #2)"]),
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
     ["layer 'c': 'filters' must be a positive int up to 2147483647, not 0"]),
    (['name = "c", type = "conv", filters = true, kernel = 3', *FC_LOSS],
     ["layer 'c': 'filters' must be a positive int up to 2147483647, not true"]),
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


# -- concat, LRN and average pooling ------------------------------------------------------------------


def test_concat_joins_channels():
    spec = spec_of('name = "a", type = "conv", filters = 2, kernel = 3, pad = 1',
                   'name = "b", type = "conv", input = "data", filters = 5, kernel = 1',
                   'name = "p", type = "pool", input = "data", mode = "max", kernel = 3, stride = 1, pad = 1',
                   'name = "k", type = "concat", inputs = ["a", "b", "p", "a"]', *FC_LOSS)
    k = spec.layer("k")
    assert k.inputs == ("a", "b", "p", "a")
    assert k.input_shapes == ((2, 8, 8), (5, 8, 8), (3, 8, 8), (2, 8, 8))
    assert k.output_shape == (12, 8, 8)
    assert (k.params, k.param_count, k.forward_flops, k.backward_flops) == ({}, 0, 0, 0)
    # The conv after a concat of a conv needs its input gradient.
    assert spec.layer("fc").backward_flops == 2 * spec.layer("fc").forward_flops


def test_concat_of_features_and_of_one_input():
    spec = spec_of('name = "f", type = "flatten"', 'name = "g", type = "fc", input = "data", outputs = 6',
                   'name = "k", type = "concat", inputs = ["f", "g"]', 'name = "one", type = "concat"', *FC_LOSS)
    assert spec.layer("k").output_shape == (3 * 8 * 8 + 6,)
    assert spec.layer("one").inputs == ("k",) and spec.layer("one").output_shape == (198,)


def test_lrn_defaults_and_costs():
    spec = spec_of('name = "n", type = "lrn"', 'name = "m", type = "lrn", local_size = 3, alpha = 1e-4, beta = 1, '
                   'k = 2', *FC_LOSS)
    assert spec.layer("n").params == {"local_size": 5, "alpha": 1.0, "beta": 0.75, "k": 1.0}
    m = spec.layer("m")
    assert m.params == {"local_size": 3, "alpha": 0.0001, "beta": 1.0, "k": 2.0}
    assert all(isinstance(m.params[key], float) for key in ("alpha", "beta", "k"))
    assert (m.output_shape, m.param_count, m.forward_flops, m.backward_flops) == ((3, 8, 8), 0, 0, 0)


def caffe_pooled(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's PoolingLayer::Reshape, transcribed: round up, then drop a last window that starts in the padding."""
    pooled = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_ceil_follows_caffe_for_every_small_case(mode):
    header = 'name = "t"\ninput = [1, 1, 1]\ndefault_batch_size = 1\n'
    checked = 0
    for size in range(1, 12):
        for kernel in range(1, 6):
            for stride in range(1, 4):
                for pad in range(0, kernel):
                    if size + 2 * pad < kernel:
                        continue
                    text = net(f'name = "p", type = "pool", mode = "{mode}", kernel = {kernel}, stride = {stride}, '
                               f'pad = {pad}, round = "ceil"', *FC_LOSS,
                               header=header.replace("[1, 1, 1]", f"[1, {size}, {size}]"))
                    expected = caffe_pooled(size, kernel, stride, pad)
                    assert loads_spec(text).layer("p").output_shape == (1, expected, expected)
                    checked += 1
    assert checked > 400


def test_avg_pool_with_padding():
    header = 'name = "t"\ninput = [4, 7, 7]\ndefault_batch_size = 1\n'
    spec = spec_of('name = "p", type = "pool", mode = "avg", kernel = 3, stride = 2, pad = 1, round = "ceil"',
                   *FC_LOSS, header=header)
    assert spec.layer("p").output_shape == (4, 4, 4)
    assert spec.layer("p").params == {"mode": "avg", "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1),
                                      "round": "ceil"}


# -- reusable blocks ----------------------------------------------------------------------------------

PAIR = """
[blocks.pair]
params = ["n", "k"]
layers = [
  {name = "a", type = "conv", filters = "$n", kernel = ["$k", "$k"], pad = 1},
  {name = "relu_a", type = "relu"},
  {name = "b", type = "conv", input = "input", filters = "$n", kernel = 1},
  {name = "out", type = "concat", inputs = ["relu_a", "b"]},
]
"""
PAIR_LAYERS = ('name = "p1", block = "pair", n = 2, k = 3', 'name = "p2", block = "pair", n = 4, k = 3', *FC_LOSS)


def test_block_instances_expand_into_layers():
    spec = loads_spec(net(*PAIR_LAYERS) + PAIR)
    assert [(l.name, l.inputs, l.output_shape, l.block) for l in spec.layers] == [
        ("p1__a", ("data",), (2, 8, 8), "p1"),
        ("p1__relu_a", ("p1__a",), (2, 8, 8), "p1"),
        ("p1__b", ("data",), (2, 8, 8), "p1"),
        ("p1", ("p1__relu_a", "p1__b"), (4, 8, 8), "p1"),
        ("p2__a", ("p1",), (4, 8, 8), "p2"),
        ("p2__relu_a", ("p2__a",), (4, 8, 8), "p2"),
        ("p2__b", ("p1",), (4, 8, 8), "p2"),
        ("p2", ("p2__relu_a", "p2__b"), (8, 8, 8), "p2"),
        ("fc", ("p2",), (10,), None),
        ("loss", ("fc",), (), None),
    ]
    assert spec.layer("p2__a").params["kernel"] == (3, 3)
    # The same network written out flat is the same spec (the block a layer came from is not compared).
    flat = spec_of('name = "p1__a", type = "conv", filters = 2, kernel = 3, pad = 1',
                   'name = "p1__relu_a", type = "relu"',
                   'name = "p1__b", type = "conv", input = "data", filters = 2, kernel = 1',
                   'name = "p1", type = "concat", inputs = ["p1__relu_a", "p1__b"]',
                   'name = "p2__a", type = "conv", filters = 4, kernel = 3, pad = 1',
                   'name = "p2__relu_a", type = "relu"',
                   'name = "p2__b", type = "conv", input = "p1", filters = 4, kernel = 1',
                   'name = "p2", type = "concat", inputs = ["p2__relu_a", "p2__b"]', *FC_LOSS)
    assert flat == spec and hash(flat) == hash(spec)
    assert all(l.block is None for l in flat.layers)
    # The raw mapping, blocks included, survives the trip to a worker process.
    assert spec.data["blocks"]["pair"]["params"] == ["n", "k"]
    again = parse_spec(json.loads(json.dumps(spec.data)), "worker")
    assert again == spec and [l.block for l in again.layers] == [l.block for l in spec.layers]


def test_block_with_several_inputs_and_a_declared_output():
    merge = """
[blocks.merge]
inputs = ["x", "y"]
output = "cat"
layers = [
  {name = "cat", type = "concat", inputs = ["x", "y"]},
  {name = "aux", type = "relu"},
]
"""
    spec = loads_spec(net('name = "c1", type = "conv", filters = 2, kernel = 1',
                          'name = "c2", type = "conv", input = "data", filters = 3, kernel = 1',
                          'name = "m", block = "merge", inputs = ["c1", "c2"]',
                          'name = "r", type = "relu"',  # reads the instance's output, not its last layer
                          'name = "s", type = "concat", inputs = ["r", "m__aux"]', *FC_LOSS) + merge)
    assert spec.layer("m").inputs == ("c1", "c2") and spec.layer("m").output_shape == (5, 8, 8)
    assert spec.layer("m__aux").inputs == ("m",)
    assert spec.layer("r").inputs == ("m",)
    assert spec.layer("s").output_shape == (10, 8, 8)


def test_an_instance_without_input_reads_the_previous_layer():
    spec = loads_spec(net('name = "c", type = "conv", filters = 2, kernel = 1',
                          'name = "p", block = "pair", n = 1, k = 3', *FC_LOSS) + PAIR)
    assert spec.layer("p__a").inputs == ("c",) and spec.layer("p__b").inputs == ("c",)


BLOCK_ERRORS = [
    # (network layers, blocks TOML, fragments: the first is where the message points)
    (['name = "x", block = "pari", n = 2, k = 3', *FC_LOSS], PAIR,
     ["layer 'x': unknown block 'pari'; blocks: pair; did you mean 'pair'?"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], "",
     ["layer 'x': unknown block 'pair'; blocks: none are defined"]),
    (['name = "x", block = "pair", n = 2', *FC_LOSS], PAIR, ["layer 'x' (block 'pair'): missing parameter k"]),
    (['name = "x", block = "pair", n = 2, k = 3, kk = 1', *FC_LOSS], PAIR,
     ["layer 'x' (block 'pair'): unknown key 'kk' for block 'pair'; valid keys: name, block, input, inputs, n, k"]),
    (['name = "x", block = "pair", n = 2, k = 3, input = "data", inputs = ["data"]', *FC_LOSS], PAIR,
     ["layer 'x' (block 'pair'): give either 'input' or 'inputs'"]),
    (['name = "x", block = "pair", n = 2, k = 3, inputs = ["data", "data"]', *FC_LOSS], PAIR,
     ["layer 'x' (block 'pair'): block 'pair' takes 1 input (input), not 2"]),
    (['name = "x", block = "pair", n = 2, k = 3, input = 7', *FC_LOSS], PAIR,
     ["layer 'x' (block 'pair'): 'input' must be a layer name"]),
    (['block = "pair", n = 2, k = 3', *FC_LOSS], PAIR, ["layer #1: missing required key 'name'"]),
    (['name = "x/y", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR, ["layer #1: 'name' must be"]),
    # An error inside an instance names the expanded layer, the block's layer and the instance.
    (['name = "x", block = "pair", n = 0, k = 3', *FC_LOSS], PAIR,
     ["layer 'x__a' (block 'pair' layer 'a', in 'x'): 'filters' must be a positive int up to 2147483647, not 0"]),
    (['name = "x", block = "pair", n = 2, k = 20', *FC_LOSS], PAIR,
     ["layer 'x__a' (block 'pair' layer 'a', in 'x'): output size would be -9x-9"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace('type = "relu"', 'type = "rleu"'),
     ["layer 'x__relu_a' (block 'pair' layer 'relu_a', in 'x'): unknown type 'rleu'", "did you mean 'relu'?"]),
    (['name = "x", block = "pair", n = 2, k = 3, input = "x"', *FC_LOSS], PAIR,
     ["layer 'x__a' (block 'pair' layer 'a', in 'x'): input 'x' is a later layer (a cycle"]),
    (['name = "x", block = "pair", n = 2, k = 3, input = "nope"', *FC_LOSS], PAIR,
     ["layer 'x__a' (block 'pair' layer 'a', in 'x'): input 'nope' names no earlier layer"]),
    (['name = "x__a", type = "relu"', 'name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR,
     ["layer 'x__a': duplicate layer name (layer #1 and layer #2 ('x', block 'pair' layer #1))"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace('input = "input"', 'input = "nope"'),
     ["block 'pair' layer 'b': input 'nope' names neither an earlier layer of the block nor one of its inputs "
      "(input)"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace('"relu_a", "b"', '"relu_a", "c"'),
     ["block 'pair' layer 'out': input 'c' names neither"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS],
     PAIR.replace('type = "relu"}', 'type = "relu", input = "b"}'), ["block 'pair' layer 'relu_a': input 'b'",
                                                                   "(a later layer"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace('filters = "$n", kernel = 1',
                                                                           'filters = "$m", kernel = 1'),
     ["block 'pair' layer 'b': 'filters' refers to '$m', which is not a parameter of the block (its params: n, k)"]),
    (['name = "x", block = "pair", n = 2, k = 3, z = 1', *FC_LOSS], PAIR.replace('["n", "k"]', '["n", "k", "z"]'),
     ["block 'pair': parameter 'z' is used by no layer of the block"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace("params =", "parms ="),
     ["block 'pair': unknown key 'parms'", "did you mean 'params'?"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace('"k"]', '"1k"]'),
     ["block 'pair': 'params' must be a list of identifiers"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace('"k"]', '"k", "n"]'),
     ["block 'pair': 'params' lists a name twice"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace('name = "relu_a"', 'name = "a"'),
     ["block 'pair': layer #2: the name 'a' is already an earlier layer's name"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace('name = "relu_a"', 'name = "input"'),
     ["block 'pair': layer #2: the name 'input' is already the block's input"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace('name = "relu_a"', 'name = "r/a"'),
     ["block 'pair': layer #2: 'name' must be letters, digits, _ and -"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS],
     PAIR.replace('{name = "relu_a", type = "relu"}', '{name = "relu_a", block = "pair"}'),
     ["block 'pair' layer 'relu_a': a block cannot instantiate a block"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace("layers = [", 'output = "zz"\nlayers = ['),
     ["block 'pair': 'output' must name one of the block's layers (a, relu_a, b, out), not 'zz'"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], "\n[blocks]\npair = 3\n",
     ["block 'pair': a block must be a table, not 3"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], '\n[blocks.pair]\nparams = []\nlayers = []\n',
     ["block 'pair': 'layers' must be a non-empty list of tables"]),
    (['name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR.replace("[blocks.pair]", '[blocks."a-b"]'),
     ["block 'a-b': a block's name must be letters, digits and _"]),
    (['type = "relu"', 'name = "x", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR,
     ["layer #1: missing required key 'name'"]),
    (['name = "data", block = "pair", n = 2, k = 3', *FC_LOSS], PAIR,
     ["layer #1 ('data', block 'pair' layer #4): the name 'data' is reserved"]),
    ([FC_LOSS[0], 'name = "loss", type = "softmax_loss", block = 3'], "",
     ["layer 'loss': unknown block 3; blocks: none are defined"]),
]


@pytest.mark.parametrize("layers,blocks,fragments", BLOCK_ERRORS)
def test_block_errors(layers, blocks, fragments):
    message = error_of(net(*layers) + blocks, source="nets/b.toml")
    assert message.startswith(f"nets/b.toml: {fragments[0].split(': ')[0]}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_blocks_must_be_a_table():
    message = error_of(HEADER + "blocks = 3\n" + "layers = [{}]\n")
    assert message == "<string>: 'blocks' must be a table of [blocks.NAME] tables, not 3"


# -- the bad specs that issue 3 lists, each one clear line naming the file, the layer and the problem --

BAD_SPECS = {
    "unknown layer type": ([C, 'name = "r", type = "reul"', *FC_LOSS],
                           "layer 'r': unknown type 'reul'; valid types: add, batchnorm"),
    "missing input": ([C, 'name = "r", type = "relu", input = "cc"', *FC_LOSS],
                      "layer 'r': input 'cc' names no earlier layer; defined so far: data, c; did you mean 'c'?"),
    "cycle": ([C, 'name = "a", type = "relu", input = "b"', 'name = "b", type = "relu", input = "a"', *FC_LOSS],
              "layer 'a': input 'b' is a later layer (a cycle or forward reference)"),
    "duplicate names": ([C, 'name = "c", type = "relu"', *FC_LOSS],
                        "layer 'c': duplicate layer name (layer #1 and layer #2)"),
    "concat of mismatched shapes": (
        [C, 'name = "k", type = "concat", inputs = ["c", "data"]', *FC_LOSS],
        "layer 'k': concat inputs must agree in height and width, but 'c' is (2, 6, 6) and 'data' is (3, 8, 8)"),
    "concat of mismatched ranks": (
        [C, 'name = "f", type = "flatten"', 'name = "k", type = "concat", inputs = ["f", "c"]', *FC_LOSS],
        "layer 'k': concat inputs must agree in rank, but 'f' is (72,) and 'c' is (2, 6, 6)"),
    "negative output size": (['name = "c", type = "conv", filters = 2, kernel = [3, 12], pad = 1', *FC_LOSS],
                             "layer 'c': output size would be 8x-1, less than 1"),
    "lrn even size": (['name = "n", type = "lrn", local_size = 4', *FC_LOSS],
                      "layer 'n': 'local_size' must be odd (the window is centred on each channel), not 4"),
    "lrn negative alpha": (['name = "n", type = "lrn", alpha = -1', *FC_LOSS],
                           "layer 'n': 'alpha' must be a non-negative number, not -1"),
    "lrn zero k": (['name = "n", type = "lrn", k = 0', *FC_LOSS], "layer 'n': 'k' must be a positive number, not 0"),
    "lrn text beta": (['name = "n", type = "lrn", beta = "x"', *FC_LOSS], "layer 'n': 'beta' must be a non-negative"),
    "lrn of features": (['name = "f", type = "flatten"', 'name = "n", type = "lrn"', *FC_LOSS],
                        "layer 'n': type 'lrn' needs a 3-D (C, H, W) input"),
    "lrn unknown key": (['name = "n", type = "lrn", size = 5', *FC_LOSS],
                        "layer 'n': unknown key 'size' for type 'lrn'; valid keys: alpha, beta, input, inputs, k, "
                        "local_size, name, type"),
    "several inputs to a one-input type": ([C, 'name = "r", type = "relu", inputs = ["c", "data"]', *FC_LOSS],
                                           "layer 'r': type 'relu' takes exactly 1 input, not 2"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs_give_one_clear_line(case, tmp_path):
    layers, expected = BAD_SPECS[case]
    path = tmp_path / "bad.toml"
    path.write_text(net(*layers))
    with pytest.raises(SpecError) as info:
        resolve_network(str(path))
    assert str(info.value).startswith(f"{path}: {expected}"), str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_toml_file_gives_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(net(*FC_LOSS).replace('outputs = 10', 'outputs = = 10'))
    with pytest.raises(SpecError) as info:
        resolve_network(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML: ") and "line 5" in message and "\n" not in message


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
        "unknown network 'lenett'; valid choices: alexnet, efficientnet_b0, googlenet, lenet, mobilenet_v2, overfeat, resnet18, resnet50, vgg_a "
        "(or a path to a .toml spec or a Caffe .prototxt file)")
    assert isinstance(info.value, SpecError)


def test_extra_networks_are_choices_but_cannot_shadow_builtins(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(net(*FC_LOSS))
    assert resolve_network("tiny", extra={"tiny": path}).name == "t"
    assert resolve_network("lenet", extra={"lenet": path}).name == "lenet"
    with pytest.raises(UnknownNetwork, match="alexnet, efficientnet_b0, googlenet, lenet, mobilenet_v2, overfeat, resnet18, resnet50, tiny, vgg_a "):
        resolve_network("nope", extra={"tiny": path})


def test_spec_modules_import_no_framework():
    import cnnbench.spec.layers
    import cnnbench.spec.prototxt
    import cnnbench.spec
    import cnnbench.spec.blocks

    for module in (cnnbench.spec, cnnbench.spec.layers, cnnbench.spec.blocks, cnnbench.spec.prototxt):
        source = open(module.__file__, encoding="utf-8").read()
        for framework in ("torch", "tensorflow", "mxnet", "numpy", "yaml", "google.protobuf"):
            assert f"import {framework}" not in source


def test_layer_lookup_error_lists_layers():
    spec = resolve_network("lenet")
    with pytest.raises(KeyError, match="conv1, pool1"):
        spec.layer("conv3")
