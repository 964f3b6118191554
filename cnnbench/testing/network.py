"""A tiny network for adapter tests: every framework builds, compiles and steps it in well under a second.

It has the layers every adapter must get right before anything larger is worth trying — convolution,
ReLU, max pooling, a fully connected layer fed by a 3-D blob (the implicit flatten), softmax loss — and
is shaped so that the classic layout bugs change the numbers ``verify`` compares: the input is not
square (height and width swapped shows), the convolution has several input and output channels and a
non-square kernel (a kernel loaded as ``[kw, kh]`` or ``[in, out]`` shows), and the fully connected layer
reads several channels of several positions (flattening in H, W, C order instead of C, H, W shows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnbench.spec import NetworkSpec

#: The tiny network as spec text (TOML), for writing to a file or passing to ``loads_spec``.
TINY_NETWORK = """\
name = "tiny"
description = "cnnbench.testing's tiny network: conv, relu, max pool, fc, softmax loss"
input = [3, 10, 12]
default_batch_size = 2
layers = [
  {name = "conv1", type = "conv", filters = 4, kernel = [3, 2], pad = 1},
  {name = "relu1", type = "relu"},
  {name = "pool1", type = "pool", mode = "max", kernel = 2, stride = 2},
  {name = "fc1", type = "fc", outputs = 5},
  {name = "loss", type = "softmax_loss"},
]
"""


#: Issue 17's layer types in one small network (an MBConv block with a residual, as in MobileNetV2 and
#: EfficientNet): batch norm (one with its own eps), hardswish, relu6, a depthwise convolution, silu,
#: squeeze-and-excitation (global pooling, two fc, sigmoid, channel scaling), a residual add. For adapters that
#: run the modern types; ``verify`` against the float64 engine checks each of them.
TINY_MODERN_NETWORK = """\
name = "tiny_modern"
description = "cnnbench.testing's tiny modern network: batch norm, hardswish, relu6, depthwise conv, silu, squeeze-and-excitation, residual add, global pooling"
input = [3, 12, 12]
default_batch_size = 2
layers = [
  {name = "stem", type = "conv", filters = 8, kernel = 3, stride = 2, pad = 1, bias = false},
  {name = "stem_bn", type = "batchnorm"},
  {name = "stem_act", type = "hardswish"},
  {name = "expand", type = "conv", filters = 16, kernel = 1, bias = false},
  {name = "expand_bn", type = "batchnorm", eps = 1e-3},
  {name = "expand_act", type = "relu6"},
  {name = "dw", type = "conv", filters = 16, kernel = 3, pad = 1, groups = 16, bias = false},
  {name = "dw_act", type = "silu"},
  {name = "se_pool", type = "global_pool"},
  {name = "se_fc1", type = "fc", outputs = 4},
  {name = "se_act", type = "silu"},
  {name = "se_fc2", type = "fc", outputs = 16},
  {name = "se_gate", type = "sigmoid"},
  {name = "se", type = "channel_scale", inputs = ["dw_act", "se_gate"]},
  {name = "project", type = "conv", filters = 8, kernel = 1, bias = false},
  {name = "project_bn", type = "batchnorm"},
  {name = "add", type = "add", inputs = ["project_bn", "stem_act"]},
  {name = "pool", type = "global_pool"},
  {name = "fc", type = "fc", outputs = 5},
  {name = "loss", type = "softmax_loss"},
]
"""


def tiny_network() -> NetworkSpec:
    """:data:`TINY_NETWORK` as a validated :class:`~cnnbench.spec.NetworkSpec` (a fresh parse each call;
    the spec is frozen, so sharing one is safe too). Use it as a fixture::

        @pytest.fixture
        def spec():
            return tiny_network()
    """
    from cnnbench.spec import loads_spec

    return loads_spec(TINY_NETWORK, "cnnbench.testing.TINY_NETWORK")
