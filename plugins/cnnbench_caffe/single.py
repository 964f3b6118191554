"""One layer of the engine on its own, for ``cnnbench layers``: the same layer class the net uses, bound to
synthetic inputs instead of the previous layers' outputs.

The engine computes layer by layer already, so a layer alone does exactly the work it does inside the
net: the same buffers, the same ``propagate_down``, and a convolution lowers its input again in
backward exactly when the net would (its column matrices do not fit the budget, see ``engine.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy

from cnnbench.adapter import Unsupported, propagate_down
from cnnbench_caffe.backend import Backend
from cnnbench_caffe.engine import column_sizes, shares_columns
from cnnbench_caffe.layers import Layer
from cnnbench_caffe.modern import layer_class


@dataclass
class CaffeLayer:
    unit: Layer
    #: The fixed upstream gradient (None for the softmax loss, whose backward starts the chain).
    dy: Any
    #: ``synchronize`` reads the backend from the handle, as from a CaffeModel.
    backend: Backend


def build_single(spec: Any, name: str, batch: int, backend: Backend, dtype: Any, seed: int) -> CaffeLayer:
    layer = spec.layer(name)
    cls = layer_class(layer)
    if cls is None:
        raise Unsupported(f"the Caffe-style engine has no layer type '{layer.type}' (layer '{name}')")
    xp, dtype = backend.xp, numpy.dtype(dtype)
    rng = numpy.random.default_rng(seed)
    inputs = [backend.asarray(rng.standard_normal((batch, *shape), dtype=numpy.float32), dtype)
              for shape in layer.input_shapes]
    extra: dict[str, Any] = {}
    if layer.type == "conv":
        if shares_columns(spec, batch, dtype) and name in column_sizes(spec, batch):
            # The net's shared buffer: this layer then lowers again in backward, as it does in the net.
            extra["columns"] = xp.empty(column_sizes(spec, batch)[name], dtype)
    elif layer.type == "dropout":
        extra.update(train=True, seed=seed)
    elif layer.type == "softmax_loss":
        classes = layer.input_shapes[0][0]
        extra["labels"] = backend.asarray(rng.integers(0, classes, batch), numpy.int64)
    unit = cls(name, layer.params, inputs, list(propagate_down(spec, name)), backend, **extra)
    for key, array in unit.weights.items() if layer.type != "batchnorm" else ():  # starts at scale 1, shift 0
        # Uniform in +-1/sqrt(fan_in), as Net.init_weights draws them.
        fan_in = math.prod(unit.weights["weight"].shape[1:])
        bound = 1.0 / math.sqrt(fan_in)
        array[...] = backend.asarray(rng.uniform(-bound, bound, tuple(array.shape)), dtype)
    dy = None
    if layer.type != "softmax_loss":
        dy = backend.asarray(rng.standard_normal(tuple(unit.output.shape), dtype=numpy.float32), dtype)
    # One forward, so backward has what it reads (masks, argmax, columns) from the start.
    unit.forward()
    return CaffeLayer(unit, dy, backend)


def step_single(handle: CaffeLayer, direction: str) -> None:
    # Backward again without a forward does the same arithmetic on the same shapes: a convolution's
    # backward overwrites its column matrix with the columns' gradient, so later backwards read
    # W^T dy instead of the lowered input, which costs the same and stays bounded (no update).
    if direction == "forward":
        handle.unit.forward()
    elif direction == "backward":
        handle.unit.backward(handle.dy)
    else:
        raise ValueError(f"unknown direction '{direction}'; valid choices: forward, backward")
