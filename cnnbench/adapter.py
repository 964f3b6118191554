"""The framework-adapter contract: the one abstract class every framework plugin implements.

The worker process (``python -m cnnbench.execution.worker``) drives an adapter through one job:

    adapter = AdapterClass()
    adapter.prepare(config)                 # threads, kernel families, precision switches
    model = adapter.build(spec, config)     # synthetic data made once, on the device
    adapter.step(model)                     # warm-up, then timed windows of steps
    adapter.synchronize(model)              # at every window edge
    adapter.peak_memory(model)

For ``cnnbench layers`` (job mode "layers") it also drives the optional single-layer methods:

    layer = adapter.build_layer(spec, name, config)   # one layer alone, synthetic inputs, one forward done
    adapter.step_layer(layer, "forward")              # warm-up, then timed windows, per direction
    adapter.step_layer(layer, "backward")
    adapter.synchronize(layer)                        # at every window edge, with the layer's handle

The host never imports a framework: it only calls the class-level methods ``availability()`` and
``capabilities()``, which must answer from package metadata and static knowledge. Framework imports
belong inside the instance methods, which run in the worker.

Anything the adapter cannot do for a given configuration raises :class:`Unsupported` with a reason a
user can act on; the worker turns it into the row status ``unsupported``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from cnnbench.config import RunConfig
    from cnnbench.spec import NetworkSpec


class Unsupported(Exception):
    """This adapter cannot run this configuration; ``reason`` says why (becomes the row's reason)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class OutOfMemory(Exception):
    """The device ran out of memory; adapters raise it so the row status is ``oom``, not ``error``."""


@dataclass(frozen=True)
class Availability:
    """Whether the framework can be imported in this interpreter, found without importing it."""

    available: bool
    version: str | None = None
    reason: str | None = None
    install_hint: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can do on one kind of device, in principle (runtime checks come in ``prepare``).

    ``unsupported`` maps an axis value the adapter knows it cannot run to the reason, so the table can
    say why without starting a worker (e.g. ``{"native": "TensorFlow has no convolution without cuDNN"}``).
    """

    precisions: tuple[str, ...]
    kernels: tuple[str, ...]
    threads: bool = True
    unsupported: dict[str, str] = field(default_factory=dict)


@dataclass
class VerifyOutput:
    """What one forward and backward on given weights and data produced, as float64 NumPy arrays in
    the canonical layout (see :meth:`FrameworkAdapter.verify`)."""

    loss: float
    #: [batch, classes]: the input of the softmax loss.
    logits: Any
    #: layer name -> {"weight": ..., "bias": ...} for every layer with parameters.
    grads: dict[str, dict[str, Any]]


#: The directions ``step_layer`` runs, in the order the worker times them.
DIRECTIONS = ("forward", "backward")


def propagate_down(spec: NetworkSpec, layer_name: str) -> tuple[bool, ...]:
    """Which inputs of a layer get a gradient in a training step (Caffe's ``propagate_down``): those that
    depend on parameters. The first convolution's input (the data) gets none, as in every framework."""
    depends = {"data": False}
    for layer in spec.layers:
        needs = tuple(depends[name] for name in layer.inputs)
        if layer.name == layer_name:
            return needs
        depends[layer.name] = any(needs) or layer.param_count > 0
    raise KeyError(f"network '{spec.name}' has no layer '{layer_name}'")


def runs_backward(spec: NetworkSpec, layer_name: str) -> bool:
    """Whether a training step runs this layer's backward at all: it has parameters, or an input that
    needs a gradient. A layer reading only the data with no parameters (a pool straight after the input)
    is skipped by every framework's autograd, so ``cnnbench layers`` times no backward for it."""
    return spec.layer(layer_name).param_count > 0 or any(propagate_down(spec, layer_name))


class FrameworkAdapter(ABC):
    """Base class of every framework adapter. Subclasses set ``name`` and implement the methods."""

    #: The name users type (``--frameworks torch``); unique across all plugins.
    name: ClassVar[str]
    #: The distribution whose presence and version describe availability (e.g. ``"torch"``).
    package: ClassVar[str]
    #: The importable module to look for without importing it (defaults to ``package``).
    module: ClassVar[str | None] = None
    #: What a user runs to make the framework available.
    install_hint: ClassVar[str] = ""
    #: The pip extra of cnnbench that installs the framework; None: the adapter's name.
    extra: ClassVar[str | None] = None
    #: Adapter-specific switches users set with ``--option NAME=VALUE``: name -> (allowed values, help).
    #: Values arrive in ``RunConfig.options``; unknown names and values are usage errors.
    options: ClassVar[dict[str, tuple[tuple[str, ...], str]]] = {}

    # -- host side: no framework imports ------------------------------------------------------------

    @classmethod
    def availability(cls) -> Availability:
        """Is the framework importable here, and which version? Must not import the framework."""
        module = cls.module or cls.package
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a dotted name whose parent package is missing
            spec = None
        if spec is None:
            return Availability(False, None, f"python package '{module}' is not installed", cls.install_hint)
        try:
            version = importlib.metadata.version(cls.package)
        except importlib.metadata.PackageNotFoundError:
            version = None
        return Availability(True, cls.version_label(version) if version else None, None, cls.install_hint)

    @classmethod
    def version_label(cls, package_version: str) -> str:
        """The version users see, from ``package``'s: by default that version itself; an adapter whose
        engine is not ``package`` (caffe: cnnbench's engine on NumPy) names its engine's version."""
        return package_version

    @classmethod
    @abstractmethod
    def capabilities(cls, device_kind: str) -> Capabilities:
        """Precisions, kernel families and thread control on ``"cpu"`` or ``"cuda"``; no imports."""

    # -- worker side --------------------------------------------------------------------------------

    @abstractmethod
    def prepare(self, config: RunConfig) -> None:
        """Apply the run's settings before anything is built; raise Unsupported if this machine can't."""

    @abstractmethod
    def build(self, spec: NetworkSpec, config: RunConfig) -> Any:
        """Build the network, its synthetic input and labels on the device; return the model handle."""

    @abstractmethod
    def step(self, model: Any) -> None:
        """One training step: forward, softmax cross-entropy, backward for every parameter."""

    @abstractmethod
    def synchronize(self, model: Any) -> None:
        """Block until all work queued on the device has finished (and surface its errors)."""

    def peak_memory(self, model: Any) -> tuple[int | None, str]:
        """Peak memory in bytes and what was measured; default: the worker process's peak RSS."""
        import resource

        # ru_maxrss is in KiB on Linux.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS"

    def verify(
        self,
        spec: NetworkSpec,
        config: RunConfig,
        weights: dict[str, dict[str, Any]],
        data: Any,
        labels: Any,
    ) -> VerifyOutput:
        """Load ``weights``, run one forward and backward on ``data`` and ``labels``, return the outputs.

        Canonical layout, the same for every adapter (converting is the adapter's job): convolution
        weights ``[out, in / groups, kh, kw]``, fully connected weights ``[out, in]`` with a 3-D input
        flattened in C, H, W order, biases ``[out]``; a batch norm's ``weight`` and ``bias`` are its scale and
        shift, ``[C]`` each, and it uses the batch's statistics; ``data`` is ``[batch, C, H, W]``, ``labels`` are
        integer classes ``[batch]``; all arrays arrive as float64 / int64 NumPy arrays. The loss is the
        mean softmax cross-entropy over the batch; dropout layers pass their input through unchanged.
        Computation happens at ``config.precision`` on ``config.device``; the results come back as
        float64 NumPy arrays.
        """
        raise Unsupported(f"the {self.name} adapter does not implement verify")

    # -- optional: single layers, for ``cnnbench layers`` (the paper's Fig. 5) ---------------------

    def build_layer(self, spec: NetworkSpec, layer_name: str, config: RunConfig) -> Any:
        """Build layer ``layer_name`` of ``spec`` alone, ready to time; return its handle.

        The worker has called ``prepare(config)`` already. The layer gets synthetic inputs of its input
        shapes (``spec.layer(name).input_shapes``, with ``config.batch_size`` in front) on the device,
        in the dtype the layer sees inside the network at ``config.precision``, and its parameters
        initialised. Backward uses a fixed synthetic upstream gradient of the output's shape (for the
        softmax loss: the loss's own gradient, 1) and computes what a training step computes: every
        parameter gradient, and the input gradients :func:`propagate_down` names. Do one forward here,
        so that ``step_layer(handle, "backward")`` can run on its own (e.g. torch ``retain_graph=True``).
        The handle is passed to ``synchronize``, so it must work there too. The worker calls this for
        every layer, the softmax loss included (timed as "other"), then drops the handle.
        """
        raise Unsupported(f"{self.name} does not run single layers")

    def step_layer(self, handle: Any, direction: str) -> None:
        """Run the layer of ``handle`` once in ``direction``: ``"forward"`` (as in training: dropout
        active, autograd recording) or ``"backward"`` (the upstream gradient to the input and parameter
        gradients, repeatable without a new forward). The worker times many calls between two
        ``synchronize(handle)`` calls; it never asks for the backward of a layer whose backward a
        training step skips (see :func:`runs_backward`)."""
        raise Unsupported(f"{self.name} does not run single layers")

    def inventory(self, config: RunConfig) -> dict[str, Any]:
        """Framework-side provenance: versions of the framework and its libraries, the device's name."""
        return {}

    def actual_threads(self, config: RunConfig) -> int | None:
        """The number of compute threads the framework really uses (None if it cannot say)."""
        return config.threads
