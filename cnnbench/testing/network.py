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


def tiny_network() -> NetworkSpec:
    """:data:`TINY_NETWORK` as a validated :class:`~cnnbench.spec.NetworkSpec` (a fresh parse each call;
    the spec is frozen, so sharing one is safe too). Use it as a fixture::

        @pytest.fixture
        def spec():
            return tiny_network()
    """
    from cnnbench.spec import loads_spec

    return loads_spec(TINY_NETWORK, "cnnbench.testing.TINY_NETWORK")
