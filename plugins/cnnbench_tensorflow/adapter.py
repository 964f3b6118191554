"""TensorFlow adapter: the network as one ``tf.function`` training step, the way TensorFlow 2 trains.

Kernel families (the paper's Fig. 2 and Fig. 4):
- ``vendor``: oneDNN on the CPU (``TF_ENABLE_ONEDNN_OPTS=1``: grappler rewrites convolutions, pooling and
  matmuls to ``_Mkl*`` ops), cuDNN on CUDA.
- ``native``: TensorFlow's own Eigen kernels on the CPU (``TF_ENABLE_ONEDNN_OPTS=0``). On CUDA TensorFlow
  has no convolution without cuDNN, so ``native`` there is unsupported.
TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, when it is imported, so ``prepare()`` sets it before the
first ``import tensorflow`` (the worker imports nothing before). Which kernels really ran is recorded from
the executed graph of the first step (``kernels_seen`` in the provenance) and checked against the family.
With ``--option xla=on`` XLA compiles the whole step into one computation with its own CPU kernels
(``kernels_seen`` then lists none of TensorFlow's); the kernels axis only names how TensorFlow itself was
configured.

Layout: NHWC on the CPU, where TensorFlow's convolutions (oneDNN's and Eigen's) want channels last. On
CUDA, NCHW for fp32 and tf32, where cuDNN's fp32 kernels are fastest channels-first, and NHWC for fp16 and
bf16, the tensor cores' native layout — the choice TensorFlow's own layout optimizer makes, taken at build
time so no transposes are left at the graph's edges. The adapter converts weights and data to the layout;
the function is the same.

Precisions: ``fp32`` (TF32 off: TensorFlow enables it by default on Ampere and newer), ``tf32`` on CUDA,
``fp16`` and ``bf16`` as a Keras mixed-precision policy does it (float32 variables cast to the compute
dtype inside the step, the loss in float32).

Threads: ``--threads N`` sets the intra-op pool to N and the inter-op pool to 1 (Intel's advice for
oneDNN: one inter-op thread per socket), so one op at a time runs on N threads; without it TensorFlow's
defaults hold (both pools as large as the CPUs this process may run on).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from cnnbench.adapter import Availability, Capabilities, FrameworkAdapter, OutOfMemory, Unsupported, VerifyOutput

_NATIVE_GPU = ("TensorFlow has no convolution without cuDNN on CUDA; its native (Eigen) kernels run on the "
               "CPU only: use --device cpu --kernels native")
_TF32_CPU = "TF32 is a format of NVIDIA tensor cores; the CPU has none"
#: Distributions that install the ``tensorflow`` module, for its version without importing it.
_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos", "tf-nightly",
                  "tf-nightly-cpu")
#: Op types that carry the arithmetic: what ``kernels_seen`` lists.
_COMPUTE_OPS = ("Conv", "Pool", "MatMul", "LRN")


@dataclass
class TFModel:
    net: Any
    x: Any
    y: Any
    step: Any  # the compiled training step
    device: str  # "/CPU:0" or "/GPU:0" (the one visible GPU)
    #: What the last step returned: (loss, gradients), or the loss alone with an optimizer update.
    outputs: Any = None
    kernels_seen: list[str] = field(default_factory=list)
    #: The run's config until the first step has run (and recorded and checked its kernels), then None.
    first_step_config: Any = None


class TensorFlowAdapter(FrameworkAdapter):
    name = "tensorflow"
    package = "tensorflow"
    install_hint = 'pip install "cnnbench[tensorflow]"'
    options = {"xla": (("on", "off"), "compile the step with XLA (jit_compile=True)")}

    def __init__(self) -> None:
        self.tf: Any = None
        self.device = "/CPU:0"
        self.gpu_details: dict[str, Any] = {}
        self.kernels_seen: list[str] = []

    @classmethod
    def availability(cls) -> Availability:
        """As the base class, but the version comes from whichever distribution installed the module
        (``tensorflow-cpu`` and others install ``tensorflow`` too)."""
        try:
            found = importlib.util.find_spec("tensorflow") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return Availability(False, None, "python package 'tensorflow' is not installed", cls.install_hint)
        for dist in _DISTRIBUTIONS:
            try:
                return Availability(True, importlib.metadata.version(dist), None, cls.install_hint)
            except importlib.metadata.PackageNotFoundError:
                continue
        return Availability(True, None, None, cls.install_hint)

    @classmethod
    def capabilities(cls, device_kind: str) -> Capabilities:
        if device_kind == "cuda":
            return Capabilities(precisions=("fp32", "tf32", "fp16", "bf16"), kernels=("vendor",),
                                unsupported={"native": _NATIVE_GPU})
        return Capabilities(precisions=("fp32", "fp16", "bf16"), kernels=("vendor", "native"),
                            unsupported={"tf32": _TF32_CPU})

    # -- worker side ------------------------------------------------------------------------------

    def prepare(self, config) -> None:
        caps = self.capabilities(config.device_kind)
        for value, allowed in ((config.kernels, caps.kernels), (config.precision, caps.precisions)):
            if value not in allowed:
                raise Unsupported(caps.unsupported.get(value, f"tensorflow cannot run '{value}' on "
                                                              f"{config.device_kind}"))
        onednn = config.kernels == "vendor"
        if "tensorflow" not in sys.modules:
            os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn else "0"
            # INFO and WARNING lines stay out of the worker's stderr (the host keeps its tail for failed
            # cells); errors stay. A user's own setting wins, for debugging. (TensorFlow 2.21 still prints
            # a few INFO lines while it loads, before absl's logging reads this setting.)
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        self.tf = tf
        if config.device_kind == "cpu":
            self._prepare_cpu(tf, config, onednn)
        else:
            self._prepare_cuda(tf, config)
        # TensorFlow enables TF32 by default on Ampere and newer; fp32 means IEEE fp32.
        tf.config.experimental.enable_tensor_float_32_execution(config.precision == "tf32")
        if config.threads:
            _fix("the intra-op thread count", tf.config.threading.set_intra_op_parallelism_threads,
                 tf.config.threading.get_intra_op_parallelism_threads, config.threads)
            _fix("the inter-op thread count", tf.config.threading.set_inter_op_parallelism_threads,
                 tf.config.threading.get_inter_op_parallelism_threads, 1)

    def _prepare_cpu(self, tf, config, onednn: bool) -> None:
        enabled = onednn_enabled()
        if enabled is not None and enabled != onednn:
            if onednn:
                raise Unsupported(f"tensorflow {tf.__version__} runs without oneDNN here "
                                  f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')!r} when it "
                                  f"was imported, or a build without it)")
            raise RuntimeError(
                f"kernels={config.kernels} needs TF_ENABLE_ONEDNN_OPTS=0 before tensorflow is imported, but "
                f"tensorflow was imported earlier in this process with oneDNN on; run each configuration in "
                f"a fresh process (the cnnbench worker does)")
        # Ops go to the CPU even where a GPU is present, and TensorFlow takes none of its memory.
        _fix("the visible GPUs", lambda v: tf.config.set_visible_devices(v, "GPU"),
             lambda: tf.config.get_visible_devices("GPU"), [])
        self.device = "/CPU:0"

    def _prepare_cuda(self, tf, config) -> None:
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            build = tf.sysconfig.get_build_info()
            what = (f"built for CUDA {build.get('cuda_version')}" if build.get("is_cuda_build")
                    else "a CPU-only build")
            raise Unsupported(f"CUDA is not available to tensorflow {tf.__version__} ({what}, no usable GPU)")
        if config.device_index >= len(gpus):
            raise Unsupported(f"{config.device} does not exist: this machine has {len(gpus)} CUDA device(s)")
        gpu = gpus[config.device_index]
        details = tf.config.experimental.get_device_details(gpu)
        major, minor = details.get("compute_capability", (0, 0))
        if config.precision in ("tf32", "bf16") and major < 8:
            name = "TF32" if config.precision == "tf32" else "bf16"
            raise Unsupported(f"{name} needs compute capability 8.0 or newer; this GPU has {major}.{minor}")
        if not tf.test.is_built_with_cuda():
            raise Unsupported(f"tensorflow {tf.__version__} is built without CUDA (cuDNN)")
        # Only the chosen GPU becomes a TensorFlow device ("/GPU:0"), and it takes memory as it needs
        # it instead of all of it at start-up (the peak is read from the allocator either way).
        _fix("the visible GPUs", lambda v: tf.config.set_visible_devices(v, "GPU"),
             lambda: tf.config.get_visible_devices("GPU"), [gpu])
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # already initialised in this process: memory growth only changes when memory is taken
        self.device = "/GPU:0"
        self.gpu_details = {"gpu": details.get("device_name"), "gpu_compute_capability": f"{major}.{minor}"}

    def _layout(self, config) -> str:
        if config.device_kind == "cuda" and config.precision in ("fp32", "tf32"):
            return "NCHW"
        return "NHWC"

    def _dtype(self, config):
        tf = self.tf
        return {"fp16": tf.float16, "bf16": tf.bfloat16}.get(config.precision, tf.float32)

    def build(self, spec, config) -> TFModel:
        from cnnbench_tensorflow.model import SpecNet
        from cnnbench_tensorflow.step import make_train_step

        tf = self.tf
        layout = self._layout(config)
        c, h, w = spec.input_shape
        shape = (config.batch_size, h, w, c) if layout == "NHWC" else (config.batch_size, c, h, w)
        try:
            with tf.device(self.device):
                net = SpecNet(spec, layout, self._dtype(config), seed=config.seed)
                data = tf.random.Generator.from_seed(config.seed + 1)
                x = data.normal(shape)
                y = data.uniform([config.batch_size], 0, spec.num_classes, dtype=tf.int32)
            step = make_train_step(net, xla=config.option("xla") == "on", optimizer=config.optimizer)
        except tf.errors.ResourceExhaustedError as exc:
            raise OutOfMemory(_first_line(exc)) from exc
        # The first step traces, optimises and runs the graph, and records the kernels it ran (see step()).
        # It is the first warm-up iteration, not an extra one in build(): that cost every cell a step.
        return TFModel(net, x, y, step, self.device, first_step_config=config)

    def _check_kernels(self, config, seen: list[str]) -> None:
        """The kernel family must be the one that ran (TensorFlow falls back to Eigen silently, e.g. for
        fp16 or bf16 on a CPU without the instructions oneDNN needs for them)."""
        if config.device_kind != "cpu" or config.option("xla") == "on" or not seen:
            return
        mkl = [op for op in seen if op.startswith("_Mkl") and "Conv" in op]
        if config.kernels == "vendor" and not mkl and any("Conv" in op for op in seen):
            raise Unsupported(f"oneDNN took none of the convolutions at {config.precision} on this CPU "
                              f"(TensorFlow ran {', '.join(seen)}): use --kernels native")
        if config.kernels == "native" and any(op.startswith("_Mkl") for op in seen):
            raise RuntimeError(f"kernels=native but oneDNN ops ran: {', '.join(seen)}")

    def step(self, model: TFModel) -> None:
        try:
            if model.first_step_config is None:
                model.outputs = model.step(model.x, model.y)
                return
            config, model.first_step_config = model.first_step_config, None
            self.kernels_seen = model.kernels_seen = _first_run(self.tf, model)
        except self.tf.errors.ResourceExhaustedError as exc:
            raise OutOfMemory(_first_line(exc)) from exc
        self._check_kernels(config, model.kernels_seen)

    def synchronize(self, model: TFModel) -> None:
        tf = self.tf
        try:
            # Waits for every device's queue: on a GPU the backward pass is still queued behind the loss.
            tf.test.experimental.sync_devices()
            if model.outputs is not None:
                loss = model.outputs[0] if isinstance(model.outputs, (tuple, list)) else model.outputs
                loss.numpy()  # materialised: an error of the step surfaces here
        except tf.errors.ResourceExhaustedError as exc:
            raise OutOfMemory(_first_line(exc)) from exc

    def peak_memory(self, model: TFModel) -> tuple[int | None, str]:
        if model.device.startswith("/GPU"):
            info = self.tf.config.experimental.get_memory_info("GPU:0")
            return info["peak"], "TensorFlow GPU allocator peak (get_memory_info)"
        return super().peak_memory(model)

    def verify(self, spec, config, weights, data, labels) -> VerifyOutput:
        import numpy as np

        from cnnbench_tensorflow.model import SpecNet
        from cnnbench_tensorflow.step import make_forward_backward

        tf = self.tf
        layout = self._layout(config)
        data = np.asarray(data, dtype=np.float32)
        if layout == "NHWC":
            data = data.transpose(0, 2, 3, 1)
        try:
            with tf.device(self.device):
                net = SpecNet(spec, layout, self._dtype(config), seed=config.seed)
                net.load(weights)
                x = tf.constant(np.ascontiguousarray(data))
                y = tf.constant(np.asarray(labels, dtype=np.int64))
            fn = make_forward_backward(net, xla=config.option("xla") == "on")
            loss, logits, grads = fn(x, y)
        except tf.errors.ResourceExhaustedError as exc:
            raise OutOfMemory(_first_line(exc)) from exc
        out: dict[str, dict[str, Any]] = {}
        pairs = [(layer, kind) for layer, kinds in net.params.items() for kind in kinds]
        for (layer, kind), grad in zip(pairs, grads):
            array = net.to_canonical(layer, kind, grad.numpy())
            out.setdefault(layer, {})[kind] = array.astype(np.float64)
        return VerifyOutput(float(loss.numpy()), logits.numpy().astype(np.float64), out)

    def actual_threads(self, config) -> int | None:
        intra = self.tf.config.threading.get_intra_op_parallelism_threads()
        return intra or default_threads()

    def inventory(self, config) -> dict[str, Any]:
        tf = self.tf
        build = tf.sysconfig.get_build_info()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
        info: dict[str, Any] = {
            "tensorflow": tf.__version__,
            "onednn": onednn_enabled(),
            # as TensorFlow read it at import (set by prepare() unless tensorflow was imported before)
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "xla": config.option("xla") == "on",
            "layout": self._layout(config),
            "intra_op_threads": self.actual_threads(config),
            "inter_op_threads": inter or default_threads(),
            "kernels_seen": self.kernels_seen,
        }
        if config.device_kind == "cuda":
            info.update({"cuda": build.get("cuda_version"), "cudnn": build.get("cudnn_version"),
                         **self.gpu_details, "gpu_pci_bus_id": _pci_bus_id()})
        return info


def onednn_enabled() -> bool | None:
    """Whether TensorFlow's oneDNN ops are on in this process (what TF_ENABLE_ONEDNN_OPTS decided at
    import); None where this TensorFlow cannot say."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # private API
        return None


def default_threads() -> int:
    """TensorFlow's default pool size: the CPUs this process may run on (``port::MaxParallelism``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _fix(what: str, setter, getter, value) -> None:
    """Apply a setting TensorFlow accepts only before it initialises; in a process where it already
    has, an equal value is fine and a different one is a clear error."""
    if getter() == value:
        return
    try:
        setter(value)
    except RuntimeError as exc:
        raise RuntimeError(f"{what} cannot change once TensorFlow has initialised in this process (it is "
                           f"{getter()!r}, this run needs {value!r}); run each configuration in a fresh "
                           f"process (the cnnbench worker does)") from exc


def _first_run(tf, model: TFModel) -> list[str]:
    """Run the step once, collecting the graphs TensorFlow executed (optimised and partitioned; graph
    collection only, no per-op timing); return the op types that do the arithmetic, e.g.
    ``_MklNativeFusedConv2D`` (oneDNN) or ``_FusedConv2D`` (Eigen)."""
    try:
        from tensorflow.python.eager import context

        collect = context.enable_graph_collection, context.disable_graph_collection, context.export_run_metadata
    except (ImportError, AttributeError):  # private API: without it the step still runs, unrecorded
        model.outputs = model.step(model.x, model.y)
        return []
    enable, disable, export = collect
    enable()
    try:
        model.outputs = model.step(model.x, model.y)
        metadata = export()
    finally:
        disable()
    ops = {node.op for graph in metadata.function_graphs for part in graph.partition_graphs for node in part.node}
    return sorted(op for op in ops if any(word in op for word in _COMPUTE_OPS))


def _pci_bus_id() -> str | None:
    """The visible GPU's PCI bus id, which the host's NVML meter matches (never the index)."""
    try:
        from tensorflow.python.client import device_lib

        for device in device_lib.list_local_devices():
            if device.device_type == "GPU" and "pci bus id: " in device.physical_device_desc:
                return device.physical_device_desc.split("pci bus id: ")[1].split(",")[0].strip()
    except Exception:  # provenance only: never fail a run for it
        return None
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else "out of memory"
