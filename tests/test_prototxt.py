"""Caffe prototxt import and the TOML writer.

The fixtures are the project's own (tests/fixtures/): copies of convnet-benchmarks' Caffe definitions
(see tests/fixtures/convnet-benchmarks/SOURCE.md) and small hand-written files whose expected figures
are worked out here by hand.
"""

from __future__ import annotations

import json
import math
import pathlib
import random

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from cnnbench.spec.catalog import builtin_networks, is_path, resolve_network
from cnnbench.spec.prototxt import Message, dumps_spec_toml, load_prototxt, parse_prototxt, prototxt_to_data
from cnnbench.spec import SpecError, loads_spec, parse_spec

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
CONVNET_BENCHMARKS = FIXTURES / "convnet-benchmarks"
NEW_SYNTAX = FIXTURES / "prototxt" / "new_syntax.prototxt"
OLD_SYNTAX = FIXTURES / "prototxt" / "old_syntax.prototxt"


def structure(spec):
    """The network without its layer names: each layer's type, parameters, shapes, costs and inputs
    (as positions in the layer list, -1 for the data)."""
    index = {layer.name: i for i, layer in enumerate(spec.layers)}
    index["data"] = -1
    return [(layer.type, layer.params, layer.input_shapes, layer.output_shape, layer.param_count,
             layer.forward_flops, layer.backward_flops, tuple(index[i] for i in layer.inputs))
            for layer in spec.layers]


# -- convnet-benchmarks' definitions ------------------------------------------------------------------

# name: (batch, input, params, forward FLOPs per image), from the formulas in test_spec.py.
CONVNET_BENCHMARKS_FIGURES = {
    "alexnet": (128, (3, 224, 224), 61_100_840, 1_428_376_960),
    "overfeat": (128, (3, 231, 231), 145_920_872, 5_602_807_808),
    "vgg_a": (64, (3, 224, 224), 132_863_336, 15_218_180_096),
    "googlenet": (128, (3, 224, 224), 6_998_552, 3_165_343_744),
}


@pytest.mark.parametrize("name", sorted(CONVNET_BENCHMARKS_FIGURES))
def test_convnet_benchmarks_import_equals_the_builtin_network(name):
    path = CONVNET_BENCHMARKS / f"{name}.prototxt"
    imported = load_prototxt(path)
    ours = resolve_network(name)
    batch, shape, params, flops = CONVNET_BENCHMARKS_FIGURES[name]
    assert (imported.name, imported.default_batch_size, imported.input_shape) == (name, batch, shape)
    assert imported.param_count == ours.param_count == params
    assert imported.forward_flops == ours.forward_flops == flops
    assert imported.backward_flops == ours.backward_flops
    # Layer for layer the same network, in the same order; only the names differ.
    assert structure(imported) == structure(ours)
    assert imported.source == str(path)
    # The softmax loss is appended: none of these files has one.
    assert imported.layers[-1].name == "loss"


@pytest.mark.parametrize("name", sorted(CONVNET_BENCHMARKS_FIGURES))
def test_convnet_benchmarks_round_trip_through_toml_and_json(name):
    path = CONVNET_BENCHMARKS / f"{name}.prototxt"
    data = prototxt_to_data(path.read_text(), str(path))
    text = dumps_spec_toml(data)
    assert tomllib.loads(text) == data
    assert "has no loss layer: 'loss' (softmax_loss) was appended" in text.split("\nname = ")[0]
    again = loads_spec(text, "again.toml")
    assert again == load_prototxt(path)
    # What a worker process gets: the mapping as JSON.
    assert parse_spec(json.loads(json.dumps(load_prototxt(path).data))) == again


def test_caffe_names_become_valid_unique_names():
    googlenet = load_prototxt(CONVNET_BENCHMARKS / "googlenet.prototxt")
    names = [layer.name for layer in googlenet.layers]
    assert names[:3] == ["conv1__7x7_s2", "conv1__relu_7x7", "pool1__3x3_s2"]
    assert "inception_3a__3x3_reduce" in names and "inception_5b__output" in names
    # The in-place ReLU after the inception module's 1x1 conv is a layer of its own, and the concat
    # reads the ReLUs (the last writers of Caffe's in-place blobs).
    assert googlenet.layer("inception_3a__output").inputs == (
        "inception_3a__relu_1x1", "inception_3a__relu_3x3", "inception_3a__relu_5x5", "inception_3a__relu_pool_proj")
    assert names[-3:] == ["fc6", "fc6__relu", "loss"]
    # alexnet.prototxt reuses "conv1/relu" for three ReLUs; its conv1 layer writes the blob "conv1/11x11_s4".
    alexnet = load_prototxt(CONVNET_BENCHMARKS / "alexnet.prototxt")
    assert [l.name for l in alexnet.layers if "relu" in l.name] == [
        "conv1__relu", "conv2__relu", "conv3__relu", "conv4__relu", "conv5__relu", "conv1__relu_2", "conv1__relu_3"]
    assert alexnet.layer("conv1__relu").inputs == ("conv1",)
    assert alexnet.layer("fc7").inputs == ("conv1__relu_2",)


def test_resolve_network_accepts_a_prototxt_path(tmp_path):
    path = CONVNET_BENCHMARKS / "vgg_a.prototxt"
    assert is_path("vgg_a.prototxt") and is_path(path)
    assert structure(resolve_network(str(path))) == structure(resolve_network("vgg_a"))
    local = tmp_path / "tiny.prototxt"
    local.write_text(OLD_SYNTAX.read_text())
    assert resolve_network(local).name == "tiny-old"
    # A plugin's network may be a prototxt too.
    assert resolve_network("tiny", extra={"tiny": local}).default_batch_size == 4
    with pytest.raises(SpecError, match=r"nope\.prototxt: cannot read: no such file"):
        resolve_network(str(tmp_path / "nope.prototxt"))


def test_builtin_networks_are_toml_only():
    assert all(path.suffix == ".toml" for path in builtin_networks().values())


# -- the hand-written fixtures ------------------------------------------------------------------------


def test_new_syntax():
    spec = load_prototxt(NEW_SYNTAX)
    assert spec.name == "tiny_new"  # "tiny/new", made a valid network name
    assert spec.input_shape == (3, 15, 15) and spec.default_batch_size == 2
    assert [(l.name, l.type, l.output_shape) for l in spec.layers] == [
        ("conv1__3x5_s2", "conv", (8, 8, 8)),    # H: (15 + 2 - 3) // 2 + 1, W: (15 + 4 - 5) // 2 + 1
        ("relu", "relu", (8, 8, 8)),
        ("norm1", "lrn", (8, 8, 8)),
        ("pool1", "pool", (8, 5, 5)),            # ceil((8 + 2 - 3) / 2) + 1 = 5; rounding down gives 4
        ("branch__1x1", "conv", (4, 5, 5)),
        ("relu_2", "relu", (4, 5, 5)),           # the second "relu"
        ("branch__pool", "pool", (8, 5, 5)),
        ("cat", "concat", (12, 5, 5)),
        ("flat", "flatten", (300,)),
        ("drop", "dropout", (300,)),
        ("fc", "fc", (10,)),
        ("loss", "softmax_loss", ()),            # the Accuracy layer (TEST phase only) is left out
    ]
    assert spec.layer("cat").inputs == ("relu_2", "branch__pool")
    assert spec.layer("branch__pool").inputs == ("pool1",)
    assert spec.layer("conv1__3x5_s2").params == {
        "filters": 8, "kernel": (3, 5), "stride": (2, 2), "pad": (1, 2), "groups": 1, "bias": True}
    assert spec.layer("norm1").params == {"local_size": 3, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
    assert spec.layer("pool1").params == {"mode": "avg", "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1),
                                          "round": "ceil"}
    assert spec.layer("branch__pool").params["round"] == "floor"  # round_mode: FLOOR
    assert spec.layer("branch__1x1").params["groups"] == 2 and not spec.layer("branch__1x1").params["bias"]
    assert spec.layer("drop").params == {"ratio": 0.25}
    conv1, branch, fc = 8 * 3 * 3 * 5 + 8, 4 * (8 // 2) * 1, 300 * 10 + 10
    assert spec.param_count == conv1 + branch + fc == 3394
    macs = 8 * 8 * 8 * 3 * 3 * 5 + 4 * 5 * 5 * 4 + 300 * 10
    assert spec.forward_flops == 2 * macs == 52880
    text = dumps_spec_toml(prototxt_to_data(NEW_SYNTAX.read_text(), str(NEW_SYNTAX)))
    assert "# 1 layer of the TEST phase only was left out." in text
    assert "appended" not in text


def test_old_syntax_and_a_deploy_softmax():
    spec = load_prototxt(OLD_SYNTAX)
    assert (spec.name, spec.input_shape, spec.default_batch_size) == ("tiny-old", (1, 12, 12), 4)
    assert [(l.name, l.type, l.output_shape) for l in spec.layers] == [
        ("conv1", "conv", (6, 8, 8)),
        ("conv1__relu", "relu", (6, 8, 8)),
        ("pool1", "pool", (6, 4, 4)),
        ("norm1", "lrn", (6, 4, 4)),
        ("a", "conv", (2, 4, 4)),
        ("b", "conv", (3, 4, 4)),
        ("concat", "concat", (5, 4, 4)),
        ("fc", "fc", (5,)),
        ("drop", "dropout", (5,)),
        ("prob", "softmax_loss", ()),
    ]
    assert spec.layer("b").inputs == ("norm1",)
    assert spec.layer("norm1").params == {"local_size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}
    assert spec.param_count == (6 * 25 + 6) + (2 * 6 + 2) + (3 * 6 * 9 + 3) + (80 * 5 + 5) == 740
    assert spec.forward_flops == 2 * (6 * 64 * 25 + 2 * 16 * 6 + 3 * 16 * 54 + 80 * 5) == 25568
    text = dumps_spec_toml(prototxt_to_data(OLD_SYNTAX.read_text(), str(OLD_SYNTAX)))
    assert "# Softmax layer 'prob' became 'prob', the softmax_loss for training." in text
    assert tomllib.loads(text)["layers"][-1] == {"name": "prob", "type": "softmax_loss"}


NET = 'name: "n"\ninput: "data"\ninput_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
CONV = ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
        'convolution_param { num_output: 4 kernel_size: 3 } }\n')
FC = 'layer { name: "fc" type: "InnerProduct" bottom: "c" top: "fc" inner_product_param { num_output: 2 } }\n'


def imported(text: str):
    return parse_spec(prototxt_to_data(text, "t.prototxt"), "t.prototxt")


def test_input_forms_agree():
    by_dim = imported(NET + CONV + FC)
    by_shape = imported('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n' + CONV + FC)
    by_layer = imported('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 '
                        'dim: 8 dim: 8 } } }\n' + CONV + FC)
    assert structure(by_dim) == structure(by_shape) == structure(by_layer)
    assert by_dim.input_shape == by_layer.input_shape == (3, 8, 8)
    # The network is named after the file when the prototxt has no name.
    assert by_shape.name == "t"
    # The input blob may have any name.
    renamed = imported(NET.replace('"data"', '"img"') + CONV.replace('bottom: "data"', 'bottom: "img"') + FC)
    assert structure(renamed) == structure(by_dim)


def test_a_label_input_may_feed_the_loss_only():
    two = 'input: "data"\ninput_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\ninput: "label"\n' \
          'input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1\n'
    loss = 'layer { name: "l" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "l" }\n'
    assert imported(two + CONV + FC + loss).loss.inputs == ("fc",)
    with pytest.raises(SpecError, match=r"layer 'c': reads the input blob 'label'"):
        imported(two + CONV.replace('bottom: "data"', 'bottom: "label"') + FC)


def test_layer_names_are_sanitised_deterministically():
    layers = "".join(
        f'layer {{ {name} type: "ReLU" bottom: "{bottom}" top: "{bottom}" }}\n'
        for name, bottom in [('name: "conv/relu"', "c"), ('name: "conv/relu"', "c"), ('name: "1st relu.x"', "c"),
                             ('name: "data"', "c"), ("", "c"), ('name: "conv/relu_2"', "c")])
    spec = imported(NET + CONV + layers + FC.replace('bottom: "c"', 'bottom: "c"'))
    assert [l.name for l in spec.layers] == [
        "c", "conv__relu", "conv__relu_2", "_1st_relu_x", "data_2", "relu6", "conv__relu_2_2", "fc", "loss"]
    assert spec.layer("fc").inputs == ("conv__relu_2_2",)


# -- errors -------------------------------------------------------------------------------------------

CONVERSION_ERRORS = [
    (NET + CONV + 'layer { name: "p/1" type: "PReLU" bottom: "c" top: "c" }\n' + FC,
     "line 5: layer 'p/1': unsupported layer type 'PReLU'; supported: BatchNorm, Concat, Convolution, Dropout, "
     "Eltwise, Flatten, InnerProduct, Input, LRN, Pooling, ReLU, Scale, Sigmoid, Softmax, SoftmaxWithLoss, Swish"),
    (NET + 'layers { name: "d" type: DATA top: "data" }\n', "line 4: layer 'd': unsupported layer type 'DATA'"),
    (NET + CONV.replace('bottom: "data"', 'bottom: "x"') + FC,
     "line 4: layer 'c': bottom 'x' is the top of no earlier layer nor an input"),
    # A cycle: each layer reads the other's top, so the first reads a blob no earlier layer wrote.
    (NET + 'layer { name: "a" type: "ReLU" bottom: "b" top: "a" }\nlayer { name: "b" type: "ReLU" bottom: "a" '
     'top: "b" }\n', "line 4: layer 'a': bottom 'b' is the top of no earlier layer"),
    (NET + CONV.replace('top: "c"', 'top: "c" top: "d"') + FC, "layer 'c': a Convolution layer needs exactly one top"),
    (NET + CONV.replace('top: "c"', '') + FC, "layer 'c': a Convolution layer needs exactly one top, not 0"),
    (NET + CONV.replace('bottom: "data"', '') + FC, "layer 'c': missing 'bottom'"),
    (NET + 'layer { name: "x" bottom: "data" top: "x" }', "line 4: layer 'x': missing 'type'"),
    (NET + CONV.replace("num_output: 4 ", "") + FC, "line 4: layer 'c': missing 'num_output'"),
    (NET + CONV.replace("kernel_size: 3", "stride: 2") + FC, "layer 'c': missing 'kernel_size' (or 'kernel_h' and"),
    (NET + CONV.replace("kernel_size: 3", "kernel_size: 3 kernel_size: 3 kernel_size: 3") + FC,
     "'kernel_size' given 3 times"),
    (NET + CONV.replace("kernel_size: 3", "kernel_size: 3 dilation: 2") + FC, "dilation other than 1"),
    (NET + CONV.replace("num_output: 4", "num_output: -4") + FC, "'num_output' must be a non-negative integer"),
    (NET + CONV.replace("kernel_size: 3", "kernel_size: 3 bias_term: maybe") + FC,
     "'bias_term' must be true or false, not 'maybe'"),
    (NET + CONV + 'layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { global_pooling: true '
     'pool: MAX } }\n' + FC, "layer 'p': pool: MAX is not supported (global pooling is global_pool, an average)"),
    (NET + CONV + 'layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: STOCHASTIC '
     'kernel_size: 2 } }\n' + FC, "layer 'p': pool: STOCHASTIC is not supported"),
    (NET + CONV + 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" relu_param { negative_slope: 0.1 } }\n' + FC,
     "layer 'r': negative_slope: 0.1 is not supported"),
    (NET + CONV + 'layer { name: "n" type: "LRN" bottom: "c" top: "c" lrn_param { norm_region: WITHIN_CHANNEL } }\n'
     + FC, "layer 'n': norm_region: WITHIN_CHANNEL is not supported"),
    (NET + CONV + 'layer { name: "k" type: "Concat" bottom: "c" bottom: "c" top: "k" concat_param { axis: 2 } }\n',
     "layer 'k': axis: 2 is not supported"),
    (NET + CONV + 'layer { name: "k" type: "ReLU" bottom: "c" bottom: "c" top: "k" }\n',
     "layer 'k': a ReLU layer reads one bottom, not 2"),
    (NET + CONV + 'layer { name: "f" type: "Flatten" bottom: "c" top: "f" flatten_param { axis: 2 } }\n',
     "layer 'f': axis: 2 is not supported"),
    (NET + CONV + 'layer { name: "d" type: "Dropout" bottom: "c" top: "c" dropout_param { dropout_ratio: "x" } }\n',
     "layer 'd': 'dropout_ratio' must be a number"),
    (NET + CONV + 'layer { name: "d" type: "Dropout" bottom: "c" top: "c" dropout_param: 3 }\n',
     "layer 'd': 'dropout_param' must be a message"),
    (CONV + FC, "line 1: no input: give 'input' with 'input_dim' or 'input_shape', or an Input layer"),
    ('input: "data"\ninput_dim: 1\ninput_dim: 3\n' + CONV, "line 1: 1 input needs 4 input_dim values"),
    ('input: "data"\ninput_shape { dim: 3 dim: 8 dim: 8 }\n' + CONV, "input 'data' must have 4 positive dims"),
    (NET, "line 1: no layers"),
    (NET + CONV + 'layers { name: "r" type: RELU bottom: "c" top: "c" }\n', "mixes the old 'layers { }'"),
    ('layer { name: "in" type: "Input" top: "data" }\n' + CONV, "line 1: layer 'in': an Input layer needs a top and"),
]


@pytest.mark.parametrize("text,fragment", CONVERSION_ERRORS)
def test_conversion_errors_name_the_file_line_and_layer(text, fragment):
    with pytest.raises(SpecError) as info:
        prototxt_to_data(text, "bad.prototxt")
    message = str(info.value)
    assert message.startswith("bad.prototxt: line "), message
    assert fragment in message, message
    assert "\n" not in message


def test_spec_errors_of_an_imported_network_name_the_file():
    # Well-formed Caffe, but the kernel does not fit: the spec's own check names the file and the layer.
    text = NET + CONV.replace("kernel_size: 3", "kernel_size: 9") + FC
    with pytest.raises(SpecError, match=r"^t\.prototxt: layer 'c': output size would be 0x0"):
        imported(text)


def test_load_prototxt_reading_errors(tmp_path):
    with pytest.raises(SpecError, match=r"missing\.prototxt: cannot read: "):
        load_prototxt(tmp_path / "missing.prototxt")
    (tmp_path / "latin1.prototxt").write_bytes(b'name: "\xe9"\n')
    with pytest.raises(SpecError, match="cannot read: not UTF-8"):
        load_prototxt(tmp_path / "latin1.prototxt")


# -- the text-format parser ---------------------------------------------------------------------------


def test_parser_reads_the_text_format():
    root = parse_prototxt(
        '# comment\nname: "a" "b" # adjacent strings join\n'
        "esc: 'it\\'s \\x41\\101\\n'\n"
        "n: 3, f: -1.5e-3; h: 0x1F g: 2.5f inf: -inf word: MAX t: true\n"
        "m { x: 1 } m: { x: 2 } m < x: 3 >\n"
        "list: [1, 2, 3] msgs: [{ y: 1 }, { y: 2 }] empty: []\n")
    assert root.get("name") == "ab"
    assert root.get("esc") == "it's AA\n"
    assert root.get("n") == 3 and root.get("f") == -1.5e-3 and root.get("h") == 31 and root.get("g") == 2.5
    assert root.get("inf") == -math.inf
    assert root.get("word") == "MAX" and root.get("t") == "true"
    assert [m.get("x") for m in root.all("m")] == [1, 2, 3]
    assert root.all("list") == [1, 2, 3]
    assert [m.get("y") for m in root.all("msgs")] == [1, 2]
    assert root.all("empty") == [] and root.get("missing", 7) == 7
    assert isinstance(root.get("m"), Message) and root.line_of("list") == 6


PARSE_ERRORS = [
    ('name: "a\n', 'line 1: invalid prototxt: an unterminated string'),
    ('a { b: 1\n\n', "line 3: invalid prototxt: expected a field name or '}', found the end of the file"),
    ("a: 1\nb: 2 }\n", "line 2: invalid prototxt: expected a field name, found '}'"),
    ("a: 1\nb 2\n", "line 2: invalid prototxt: expected ':' or '{' after 'b', found 2"),
    ("a: 1\n\nb: @\n", "line 3: invalid prototxt: unexpected character '@'"),
    ("a: [1 2]\n", "line 1: invalid prototxt: expected ',' or ']', found 2"),
    ("a: :\n", "line 1: invalid prototxt: expected a value, found ':'"),
    ("a: 12abc\n", "line 1: invalid prototxt: unexpected character '1'"),
]


@pytest.mark.parametrize("text,fragment", PARSE_ERRORS)
def test_parser_errors_give_the_line(text, fragment):
    with pytest.raises(SpecError) as info:
        parse_prototxt(text, "x.prototxt")
    assert str(info.value) == f"x.prototxt: {fragment}"


def test_a_malformed_prototxt_file_is_one_line_error(tmp_path):
    path = tmp_path / "broken.prototxt"
    path.write_text(NET + CONV + "layer {\n  name: 'x'\n")
    with pytest.raises(SpecError) as info:
        resolve_network(str(path))
    assert str(info.value) == (f"{path}: line 7: invalid prototxt: expected a field name or '}}', "
                               "found the end of the file")


# -- the TOML writer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(builtin_networks()))
def test_builtin_specs_round_trip_through_the_writer(name):
    spec = resolve_network(name)
    text = dumps_spec_toml(spec.data)
    assert tomllib.loads(text) == spec.data
    assert loads_spec(text) == spec


def test_writer_handles_awkward_values():
    data = {
        "name": 'quote " backslash \\ tab \t newline \n nul \x00 del \x7f é ✓',
        "weird key.with dots": 1, "": "empty key", "n": -3, "big": 2**62, "f": 1e-4, "g": 1e300, "h": -0.0,
        "inf": float("inf"), "ninf": float("-inf"), "t": True, "no": False, "empty": [], "nested": [[1, 2], ["a"]],
        "mixed": [1, "a", 2.5, True], "inline": [{"a": 1, "b": {"c": [1]}}, {}],
        "table": {"x": 1, "sub": {"y": [{"z": 2}]}, "empty": {}}, "after": {"k": "v"},
    }
    text = dumps_spec_toml(data)
    assert tomllib.loads(text) == data
    assert list(tomllib.loads(text)) == list(data)
    with pytest.raises(TypeError):
        dumps_spec_toml({"x": object()})
    with pytest.raises(TypeError):
        dumps_spec_toml({"x": {1: 2}})


def random_value(rng: random.Random, depth: int = 0):
    """A random TOML value: awkward strings (quotes, control and non-ASCII characters), any ints and
    floats, booleans, and nested arrays and tables."""
    choice = rng.randrange(7 if depth < 3 else 4)
    if choice == 0:
        return rng.choice([True, False])
    if choice == 1:
        return rng.choice([0, -1, 2**63 - 1, -2**63, rng.randrange(-10**6, 10**6)])
    if choice == 2:
        return rng.choice([0.0, -0.0, 0.1, 1e-7, 1e300, -2.5, math.inf, -math.inf, rng.uniform(-1e6, 1e6)])
    if choice == 3:
        return random_text(rng)
    if choice in (4, 5):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_text(rng): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_text(rng: random.Random) -> str:
    alphabet = 'ab_-. "\\\'\t\n\r\x00\x1f\x7f\x80é✓\U0001f600=[]{}#$'
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))


def test_writer_round_trips_arbitrary_mappings():
    rng = random.Random(20240601)
    for _ in range(500):
        data = {random_text(rng): random_value(rng) for _ in range(rng.randrange(6))}
        text = dumps_spec_toml(data)
        assert tomllib.loads(text) == data, text
