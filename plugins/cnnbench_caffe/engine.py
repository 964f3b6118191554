"""The net: layers wired by blob name (Caffe's Net), with one training step and weights in and out.

Everything a step touches — input, labels, every output, gradient and work buffer — is allocated here,
once; a step then only writes into those arrays. The backward pass walks the layers in reverse file
order (the spec lists them topologically) and sums the gradients of a blob read by several layers, the
job of the Split layers Caffe inserts.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy

from cnnbench.adapter import Unsupported
from cnnbench_caffe.backend import Backend
from cnnbench_caffe.im2col import conv_size
from cnnbench_caffe.layers import Layer
from cnnbench_caffe.modern import is_depthwise, layer_class

DATA = "data"
#: Per-layer column matrices are kept from forward to backward while they fit in this many bytes
#: together; beyond it the convolutions share one matrix and lower their input again in the backward
#: pass, as Caffe does (alexnet at batch 32 needs 0.4 GB of columns in fp32, at batch 128 1.6 GB).
COLUMN_BUDGET_BYTES = 1 << 30
#: The optional update (off by default, as in DESIGN.md): Caffe's SGD with momentum.
LEARNING_RATE, MOMENTUM = 0.01, 0.9


def column_sizes(spec: Any, batch: int) -> dict[str, int]:
    """Elements of each convolution's column matrix (im2col of its whole batch), by layer name."""
    sizes = {}
    for layer in spec.layers:
        if layer.type != "conv" or is_depthwise(layer.params, layer.input_shapes[0][0]):
            continue  # a depthwise convolution lowers nothing
        c, h, w = layer.input_shapes[0]
        p = layer.params
        out = [conv_size(s, k, st, q) for s, k, st, q in zip((h, w), p["kernel"], p["stride"], p["pad"])]
        sizes[layer.name] = c * math.prod(p["kernel"]) * batch * math.prod(out)
    return sizes


def shares_columns(spec: Any, batch: int, dtype: Any, budget: int = COLUMN_BUDGET_BYTES) -> bool:
    """Whether the net's convolutions share one column buffer (and lower again in backward)."""
    sizes = column_sizes(spec, batch)
    return bool(sizes) and sum(sizes.values()) * numpy.dtype(dtype).itemsize > budget


class Net:
    """One network on one device in one dtype; ``train=False`` makes dropout the identity."""

    def __init__(self, spec: Any, batch: int, backend: Backend, dtype: Any, *, train: bool = True, seed: int = 0,
                 optimizer: bool = False, column_budget: int = COLUMN_BUDGET_BYTES):
        xp = self.xp = backend.xp
        self.spec, self.backend, self.batch = spec, backend, batch
        self.dtype = numpy.dtype(dtype)
        self.data = xp.zeros((batch, *spec.input_shape), self.dtype)
        self.labels = xp.zeros(batch, xp.int64)
        blobs: dict[str, Any] = {DATA: self.data}
        #: whether a blob depends on parameters, i.e. whether its gradient is needed (propagate_down)
        self.depends: dict[str, bool] = {DATA: False}
        readers: dict[str, int] = {}
        for layer in spec.layers:
            for name in layer.inputs:
                readers[name] = readers.get(name, 0) + 1
        columns = self._shared_columns(spec, batch, column_budget)
        self.layers: list[tuple[Layer, tuple[str, ...]]] = []
        for index, layer in enumerate(spec.layers):
            cls = layer_class(layer)
            if cls is None:
                raise Unsupported(f"the Caffe-style engine has no layer type '{layer.type}' (layer '{layer.name}')")
            extra: dict[str, Any] = {}
            if layer.type == "conv":
                extra["columns"] = columns
            elif layer.type == "dropout":
                extra.update(train=train, seed=seed + index)
            elif layer.type == "softmax_loss":
                extra["labels"] = self.labels
            grads = [self.depends[name] for name in layer.inputs]
            unit = cls(layer.name, layer.params, [blobs[name] for name in layer.inputs], grads, backend, **extra)
            if layer.type != "softmax_loss" and tuple(unit.output.shape[1:]) != tuple(layer.output_shape):
                raise AssertionError(f"layer '{layer.name}': the engine made {tuple(unit.output.shape[1:])}, "
                                     f"the spec says {tuple(layer.output_shape)}")
            blobs[layer.name] = unit.output
            self.depends[layer.name] = any(grads) or bool(unit.weights)
            self.layers.append((unit, layer.inputs))
        self.loss_layer = self.layers[-1][0]
        self.logits = blobs[spec.logits]
        # Gradient sums of blobs that several layers read (Caffe's Split layers).
        self.sums = {name: xp.empty_like(blobs[name]) for name, count in readers.items()
                     if count > 1 and self.depends[name]}
        self.history = None
        if optimizer:
            self.history = [(unit, key, xp.zeros_like(unit.weights[key]))
                            for unit, _ in self.layers for key in unit.weights]

    def _shared_columns(self, spec: Any, batch: int, budget: int) -> Any:
        sizes = column_sizes(spec, batch)
        if not shares_columns(spec, batch, self.dtype, budget):
            return None
        return self.xp.empty(max(sizes.values()), self.dtype)

    # -- a training step ---------------------------------------------------------------------------

    def forward(self) -> None:
        for unit, _ in self.layers:
            unit.forward()

    def backward(self) -> None:
        xp = self.xp
        diffs: dict[str, Any] = {}
        for unit, inputs in reversed(self.layers):
            if unit is self.loss_layer:
                dxs = unit.backward(None)
            elif not self.depends[unit.name]:
                continue  # nothing at or before this layer has parameters
            else:
                dxs = unit.backward(diffs[unit.name])
            for name, dx in zip(inputs, dxs):
                if dx is None:
                    continue
                total = self.sums.get(name)
                if total is None:
                    diffs[name] = dx
                elif name in diffs:
                    xp.add(total, dx, out=total)
                else:
                    xp.copyto(total, dx)
                    diffs[name] = total

    def update(self) -> None:
        """Caffe's SGD: ``history = momentum * history + lr * grad``, ``weight -= history``."""
        xp = self.xp
        for unit, key, history in self.history or ():
            grad = unit.grads[key]
            xp.multiply(grad, LEARNING_RATE, out=grad)  # the gradient is recomputed every step
            xp.multiply(history, MOMENTUM, out=history)
            xp.add(history, grad, out=history)
            xp.subtract(unit.weights[key], history, out=unit.weights[key])

    def step(self) -> None:
        self.forward()
        self.backward()
        if self.history is not None:
            self.update()

    @property
    def loss(self) -> float:
        return float(self.loss_layer.loss)

    # -- weights and data in, results out ----------------------------------------------------------

    def parameters(self) -> dict[str, dict[str, Any]]:
        return {unit.name: unit.weights for unit, _ in self.layers if unit.weights}

    def gradients(self) -> dict[str, dict[str, numpy.ndarray]]:
        """Every parameter gradient as a float64 NumPy array, in the canonical layout."""
        to_numpy = self.backend.to_numpy
        return {unit.name: {key: to_numpy(grad).astype(numpy.float64) for key, grad in unit.grads.items()}
                for unit, _ in self.layers if unit.grads}

    def load_weights(self, weights: Mapping[str, Mapping[str, Any]]) -> None:
        """Copy canonical-layout weights in (into the existing arrays, which the layers hold views of)."""
        params = self.parameters()
        unknown = sorted(set(weights) - set(params))
        if unknown:
            raise ValueError(f"weights for layers without parameters or not in '{self.spec.name}': "
                             f"{', '.join(unknown)}; layers with parameters: {', '.join(params)}")
        for name, arrays in params.items():
            given = weights.get(name)
            if given is None or set(given) != set(arrays):
                raise ValueError(f"layer '{name}' needs weights {sorted(arrays)}, got "
                                 f"{sorted(given) if given is not None else 'none'}")
            for key, target in arrays.items():
                value = numpy.asarray(given[key])
                if value.shape != tuple(target.shape):
                    raise ValueError(f"layer '{name}' {key}: expected shape {tuple(target.shape)}, got {value.shape}")
                target[...] = self.backend.asarray(value, self.dtype)

    def init_weights(self, seed: int) -> None:
        """Uniform in +-1/sqrt(fan_in) for weights and biases (PyTorch's default initialisation), drawn
        with NumPy so that the CPU and the GPU start from the same numbers."""
        rng = numpy.random.default_rng(seed)
        weights = {}
        types = {unit.name: unit.type for unit, _ in self.layers}
        for name, arrays in self.parameters().items():
            if types[name] == "batchnorm":
                # scale 1 and shift 0, as every framework starts a batch norm
                weights[name] = {"weight": numpy.ones(arrays["weight"].shape), "bias": numpy.zeros(arrays["bias"].shape)}
                continue
            bound = 1.0 / math.sqrt(math.prod(arrays["weight"].shape[1:]))
            weights[name] = {key: rng.uniform(-bound, bound, tuple(array.shape)) for key, array in arrays.items()}
        self.load_weights(weights)

    def set_input(self, data: Any, labels: Any) -> None:
        data, labels = numpy.asarray(data), numpy.asarray(labels)
        if data.shape != tuple(self.data.shape):
            raise ValueError(f"data must have shape {tuple(self.data.shape)}, not {data.shape}")
        if labels.shape != (self.batch,):
            raise ValueError(f"labels must have shape ({self.batch},), not {labels.shape}")
        classes = self.spec.num_classes
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"labels must be classes in [0, {classes})")
        self.data[...] = self.backend.asarray(data, self.dtype)
        self.labels[...] = self.backend.asarray(labels, numpy.int64)

    def synthetic_input(self, seed: int) -> None:
        """Random input and labels, made once (DESIGN.md: one training step, identical everywhere)."""
        rng = numpy.random.default_rng(seed)
        self.set_input(rng.standard_normal(tuple(self.data.shape), dtype=numpy.float32),
                       rng.integers(0, self.spec.num_classes, self.batch))
