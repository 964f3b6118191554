"""Prototxt import of Caffe's BatchNorm + Scale pair, Eltwise SUM, global pooling, Sigmoid and Swish (issue 17),
and a ResNet-50 in the layout of the Caffe models published with the ResNet paper, against the built-in
resnet50 with every difference accounted for."""

from __future__ import annotations

import pytest

from cnnbench.spec import SpecError
from cnnbench.spec.catalog import resolve_network
from cnnbench.spec.prototxt import prototxt_to_data
from cnnbench.spec import parse_spec


def layer(name, kind, bottoms, top=None, params=""):
    lines = "".join(f'  bottom: "{b}"\n' for b in bottoms)
    return f'layer {{\n  name: "{name}"\n  type: "{kind}"\n{lines}  top: "{top or name}"\n{params}}}\n'


def conv(name, bottom, filters, kernel, stride=1, pad=0, bias=False):
    return layer(name, "Convolution", [bottom], params=(
        f"  convolution_param {{ num_output: {filters} kernel_size: {kernel} stride: {stride} pad: {pad} "
        f"bias_term: {'true' if bias else 'false'} }}\n"))


def bn_scale(blob, suffix):
    # In place, as the published models have them.
    return (layer(f"bn{suffix}", "BatchNorm", [blob], blob, "  batch_norm_param { use_global_stats: true }\n")
            + layer(f"scale{suffix}", "Scale", [blob], blob, "  scale_param { bias_term: true }\n"))


def relu(blob):
    return layer(f"{blob}_relu", "ReLU", [blob], blob)


HEAD = 'name: "t"\ninput: "data"\ninput_dim: 2\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'


def small() -> str:
    return (HEAD + conv("c1", "data", 4, 3, pad=1) + bn_scale("c1", "_c1") + relu("c1")
            + conv("c2", "c1", 4, 3, pad=1) + bn_scale("c2", "_c2")
            + layer("sum", "Eltwise", ["c1", "c2"])
            + layer("gate", "Sigmoid", ["sum"]) + layer("sw", "Swish", ["gate"])
            + layer("pool", "Pooling", ["sw"], params="  pooling_param { pool: AVE global_pooling: true }\n")
            + layer("fc", "InnerProduct", ["pool"], params="  inner_product_param { num_output: 5 }\n"))


def test_batchnorm_scale_pairs_eltwise_and_global_pooling_import():
    data = prototxt_to_data(small(), "t.prototxt")
    spec = parse_spec(data, "t.prototxt")
    kinds = [(l.name, l.type) for l in spec.layers]
    assert kinds == [("c1", "conv"), ("bn_c1", "batchnorm"), ("c1_relu", "relu"), ("c2", "conv"),
                     ("bn_c2", "batchnorm"), ("sum", "add"), ("gate", "sigmoid"), ("sw", "silu"),
                     ("pool", "global_pool"), ("fc", "fc"), ("loss", "softmax_loss")]
    assert spec.layer("sum").inputs == ("c1_relu", "bn_c2")
    assert spec.layer("bn_c1").params == {"eps": 1e-5, "momentum": 0.001}
    assert spec.layer("bn_c1").param_count == 8  # the Scale's scale and bias, 4 channels each
    assert any("BatchNorm and the Scale after it became one batchnorm" in c for c in data.comments)


@pytest.mark.parametrize("text, message", [
    (HEAD + conv("c1", "data", 4, 3) + layer("bn", "BatchNorm", ["c1"], "c1")
     + layer("fc", "InnerProduct", ["c1"], params="  inner_product_param { num_output: 5 }\n"),
     "layer 'bn': a BatchNorm needs a Scale layer with bias_term: true after it"),
    (HEAD + conv("c1", "data", 4, 3) + layer("bn", "BatchNorm", ["c1"], "c1")
     + layer("s", "Scale", ["c1"], "c1") + layer("fc", "InnerProduct", ["c1"], params="  inner_product_param { num_output: 5 }\n"),
     "a Scale after a BatchNorm needs bias_term: true"),
    (HEAD + conv("c1", "data", 4, 3) + layer("s", "Scale", ["c1"], "c1", "  scale_param { bias_term: true }\n"),
     "a Scale layer is supported only right after a BatchNorm"),
    (HEAD + conv("c1", "data", 4, 3) + conv("c2", "data", 4, 3)
     + layer("p", "Eltwise", ["c1", "c2"], params="  eltwise_param { operation: PROD }\n"),
     "operation: PROD is not supported (SUM only"),
    (HEAD + layer("p", "Pooling", ["data"], params="  pooling_param { pool: MAX global_pooling: true }\n"),
     "pool: MAX is not supported (global pooling is global_pool, an average)"),
])
def test_what_cannot_be_imported_is_a_one_line_error(text, message):
    with pytest.raises(SpecError) as err:
        prototxt_to_data(text, "t.prototxt")
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def resnet50_v1_prototxt(classes: int = 1000, conv1_bias: bool = True) -> str:
    """ResNet-50 in the layout of the deploy prototxt published with the ResNet paper (KaimingHe/
    deep-residual-networks): res2a..res5c with branch1 (projection) and branch2a/b/c, every convolution
    followed by an in-place BatchNorm and Scale, the downsampling stride on branch2a's 1x1 convolution (v1),
    a 7x7 average pool and fc1000. Written here from that description, not copied."""
    text = 'name: "ResNet-50"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224\n'
    text += conv("conv1", "data", 64, 7, 2, 3, bias=conv1_bias) + bn_scale("conv1", "_conv1") + relu("conv1")
    text += layer("pool1", "Pooling", ["conv1"], params="  pooling_param { kernel_size: 3 stride: 2 pool: MAX }\n")
    previous = "pool1"
    for stage, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], 2):
        for index in range(blocks):
            name = f"res{stage}{'abcdef'[index]}"
            stride = 2 if index == 0 and stage > 2 else 1
            shortcut = previous
            if index == 0:
                shortcut = f"{name}_branch1"
                text += conv(shortcut, previous, 4 * width, 1, stride) + bn_scale(shortcut, f"{stage}a_branch1")
            a, b, c = (f"{name}_branch2{x}" for x in "abc")
            text += conv(a, previous, width, 1, stride) + bn_scale(a, f"{name}a") + relu(a)
            text += conv(b, a, width, 3, 1, 1) + bn_scale(b, f"{name}b") + relu(b)
            text += conv(c, b, 4 * width, 1) + bn_scale(c, f"{name}c")
            text += layer(name, "Eltwise", [shortcut, c]) + relu(name)
            previous = name
    text += layer("pool5", "Pooling", [previous], params="  pooling_param { kernel_size: 7 stride: 1 pool: AVE }\n")
    text += layer("fc1000", "InnerProduct", ["pool5"], params=f"  inner_product_param {{ num_output: {classes} }}\n")
    text += layer("prob", "Softmax", ["fc1000"])
    return text


@pytest.mark.parametrize("classes, conv1_bias", [(1000, True), (3, True), (1000, False)])
def test_a_resnet_paper_style_resnet50_imports_and_its_count_differs_only_where_it_should(classes, conv1_bias):
    imported = parse_spec(prototxt_to_data(resnet50_v1_prototxt(classes, conv1_bias), "ResNet-50-deploy.prototxt"))
    builtin = resolve_network("resnet50")
    # The same layers of each kind, and the same output.
    kinds = lambda spec: sorted(l.type for l in spec.layers if l.type not in ("pool", "global_pool"))  # noqa: E731
    assert kinds(imported) == kinds(builtin)
    assert imported.layers[-2].output_shape == (classes,)
    # Every difference accounted for: conv1's bias (64), the classifier's class count (2049 per class:
    # 2048 weights and a bias); the stride on the 1x1 instead of the 3x3 changes no parameter.
    difference = (64 if conv1_bias else 0) - (1000 - classes) * 2049
    assert imported.param_count - builtin.param_count == difference
    # v1 strides on branch2a, v1.5 on the 3x3: the 1x1 then costs 4x less and the 3x3 4x more.
    assert imported.layer("res3a_branch2a").params["stride"] == (2, 2)
    assert builtin.layer("layer2_0__conv2").params["stride"] == (2, 2)
    assert imported.forward_flops < builtin.forward_flops
