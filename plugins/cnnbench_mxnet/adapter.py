"""MXNet adapter: Gluon, hybridized into a static graph, NCHW; the idiomatic Gluon training step.

MXNet reads its switches from environment variables, some of them once, when the library loads, so
``prepare()`` sets them before ``import mxnet`` (and refuses to run if MXNet was imported already with
other values):

- Kernel families on the CPU (the paper's Fig. 4): ``vendor`` is MKL-DNN (oneDNN),
  ``MXNET_MKLDNN_ENABLED=1``; ``native`` is MXNet's own im2col + GEMM on its bundled OpenBLAS,
  ``MXNET_MKLDNN_ENABLED=0``. On a GPU (Fig. 2): cuDNN on or off per operator (``cudnn_off`` on
  convolution and pooling, the element-wise ``relu`` operator instead of cuDNN's activation).
- Threads: ``OMP_NUM_THREADS``. Without it MXNet uses half the logical CPUs on x86 (it assumes two
  hyper-threads per core), which :meth:`MXNetAdapter.actual_threads` reports.
- Precisions: ``fp32`` (strict: ``NVIDIA_TF32_OVERRIDE=0`` on a GPU) and ``fp16`` on a GPU
  (``net.cast('float16')``, the loss in fp32). MXNet 1.9.1's CPU operators have no float16 kernels.

Errors of asynchronous operators surface where their outputs are read: ``synchronize()`` waits on the
step's loss and every gradient with ``wait_to_read()``, which re-raises them, instead of relying on
the global ``mx.nd.waitall()``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import re
import sys
from dataclasses import dataclass
from typing import Any

from cnnbench.adapter import Availability, Capabilities, FrameworkAdapter, OutOfMemory, Unsupported, VerifyOutput

#: The fix whenever MXNet cannot be imported by the current interpreter: an environment of its own,
#: whose interpreter the host then uses for MXNet's workers.
ENV_FIX = "the fix: cnnbench env create mxnet"
#: MXNet 1.9 uses ``np.bool``, which NumPy 1.24 removed.
NUMPY_LIMIT = (1, 24)
_NO_FP16_ON_CPU = ("MXNet 1.9.1's CPU operators have no float16 kernels (its CPU GEMM stops with "
                   "'FP16 gemm on cpu not implemented'); fp16 needs a GPU")
_NO_BF16 = ("MXNet 1.9.1 has no bfloat16 training path in Gluon (bfloat16 exists only as an MKL-DNN "
            "inference conversion of symbolic graphs)")
_NO_TF32 = ("MXNet 1.9.1 has no TF32 switch of its own (cuDNN and cuBLAS decide by their defaults); "
            "cnnbench runs its fp32 strictly, with NVIDIA_TF32_OVERRIDE=0")


@dataclass
class MXNetModel:
    net: Any
    loss_fn: Any
    x: Any
    y: Any
    ctx: Any
    fp16: bool
    #: The arrays whose readiness means the step is done: every gradient (and, with an optimizer,
    #: every weight), plus the last loss.
    grads: list
    weights: list
    record: Any  # mxnet.autograd.record
    trainer: Any = None
    loss: Any = None


class MXNetAdapter(FrameworkAdapter):
    name = "mxnet"
    package = "mxnet"
    install_hint = "cnnbench env create mxnet"

    @classmethod
    def availability(cls) -> Availability:
        """Installed, and importable with this interpreter's NumPy? Package metadata only."""
        found = super().availability()
        if not found.available:
            return Availability(False, None, f"python package 'mxnet' is not installed in this interpreter; {ENV_FIX}",
                                cls.install_hint)
        version = found.version or _gpu_build_version()
        try:
            numpy = importlib.metadata.version("numpy")
        except importlib.metadata.PackageNotFoundError:
            numpy = None
        if numpy is not None and _release(numpy) >= NUMPY_LIMIT:
            mxnet = f"mxnet {version}" if version else "mxnet"
            return Availability(
                False, version,
                f"{mxnet} cannot be imported by this interpreter: it needs numpy<1.24 (it uses np.bool, which "
                f"NumPy 1.24 removed) and this one has numpy {numpy}; {ENV_FIX}",
                cls.install_hint,
            )
        return Availability(True, version, None, cls.install_hint)

    @classmethod
    def capabilities(cls, device_kind: str) -> Capabilities:
        if device_kind == "cuda":
            return Capabilities(precisions=("fp32", "fp16"), kernels=("vendor", "native"),
                                unsupported={"bf16": _NO_BF16, "tf32": _NO_TF32})
        return Capabilities(
            precisions=("fp32",),
            kernels=("vendor", "native"),
            unsupported={"fp16": _NO_FP16_ON_CPU, "bf16": _NO_BF16,
                         "tf32": "TF32 is a format of NVIDIA tensor cores; the CPU has none"},
        )

    # -- worker side ------------------------------------------------------------------------------

    @staticmethod
    def environment(config) -> dict[str, str]:
        """The variables MXNet must see when it loads, for this run."""
        env = {
            # With MKL-DNN off, MXNet logs a "storage type fallback" paragraph per operator; harmless.
            "MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0",
        }
        if config.device_kind == "cpu":
            env["MXNET_MKLDNN_ENABLED"] = "1" if config.kernels == "vendor" else "0"
        elif config.precision == "fp32":
            # cuDNN 8 and cuBLAS use TF32 for float32 on Ampere and newer unless told otherwise.
            env["NVIDIA_TF32_OVERRIDE"] = "0"
        if config.threads:
            env["OMP_NUM_THREADS"] = str(config.threads)
            # One engine worker runs one operator at a time on OMP_NUM_THREADS threads; more workers
            # would run operators side by side, each with that many threads, oversubscribing the cores.
            env["MXNET_CPU_WORKER_NTHREADS"] = "1"
        return env

    def prepare(self, config) -> None:
        reason = self.capabilities(config.device_kind).unsupported.get(config.precision)
        if reason:
            raise Unsupported(reason)
        env = self.environment(config)
        if "mxnet" in sys.modules:
            stale = sorted(k for k, v in env.items() if os.environ.get(k) != v)
            if stale:
                raise RuntimeError(f"mxnet was imported before prepare(), so it cannot see {', '.join(stale)}; "
                                   f"set them before 'import mxnet'")
        os.environ.update(env)

        import mxnet as mx

        features = mx.runtime.Features()
        if config.device_kind == "cpu":
            if config.kernels == "vendor" and not features.is_enabled("MKLDNN"):
                raise Unsupported(f"mxnet {mx.__version__} was built without MKL-DNN: use --kernels native")
            return
        if not features.is_enabled("CUDA"):
            raise Unsupported(f"mxnet {mx.__version__} is a CPU-only build (pip package 'mxnet'); CUDA needs a "
                              f"GPU build such as mxnet-cu112")
        count = mx.context.num_gpus()
        if config.device_index >= count:
            raise Unsupported(f"{config.device} does not exist: this machine has {count} CUDA device(s)")
        if config.kernels == "vendor" and not features.is_enabled("CUDNN"):
            raise Unsupported(f"mxnet {mx.__version__} was built without cuDNN: use --kernels native")

    def build(self, spec, config) -> MXNetModel:
        return self._build(spec, config, dropout=True)

    def _build(self, spec, config, dropout: bool) -> MXNetModel:
        import mxnet as mx
        from mxnet import autograd, gluon

        from cnnbench_mxnet.model import INITIALIZER, SpecNet

        mx.random.seed(config.seed, ctx="all")
        ctx = mx.gpu(config.device_index) if config.device_kind == "cuda" else mx.cpu()
        fp16 = config.precision == "fp16"
        dtype = "float16" if fp16 else "float32"
        try:
            net = SpecNet(spec, cudnn_off=config.device_kind == "cuda" and config.kernels == "native",
                          dropout=dropout)
            net.initialize(INITIALIZER, ctx=ctx)
            if fp16:
                net.cast("float16")
            net.hybridize(static_alloc=True, static_shape=True)
            x = mx.nd.random.normal(shape=(config.batch_size, *spec.input_shape), ctx=ctx, dtype=dtype)
            y = mx.nd.random.randint(0, spec.num_classes, shape=(config.batch_size,), ctx=ctx).astype("float32")
            # Not batch norm's running statistics, which have no gradient (grad_req "null").
            params = [p for p in net.collect_params().values() if p.grad_req != "null"]
            trainer = None
            if config.optimizer:
                # The loss is a mean already, so the update rescales by 1, not by the batch size.
                trainer = gluon.Trainer(net.collect_params(), "sgd",
                                        {"learning_rate": 0.01, "momentum": 0.9, "multi_precision": fp16})
            x.wait_to_read()
        except mx.base.MXNetError as exc:
            _raise_if_oom(exc)
            raise
        return MXNetModel(
            net=net, loss_fn=gluon.loss.SoftmaxCrossEntropyLoss(), x=x, y=y, ctx=ctx, fp16=fp16,
            grads=[p.grad(ctx) for p in params], weights=[p.data(ctx) for p in params],
            record=autograd.record, trainer=trainer,
        )

    def step(self, model: MXNetModel) -> None:
        # grad_req is "write" (Gluon's default): backward overwrites every gradient, nothing to zero.
        try:
            with model.record():
                logits = model.net(model.x)
                if model.fp16:
                    logits = logits.astype("float32")
                loss = model.loss_fn(logits, model.y).mean()
            loss.backward()
            if model.trainer is not None:
                model.trainer.step(1)
        except Exception as exc:
            _raise_if_oom(exc)
            raise
        model.loss = loss

    def synchronize(self, model: MXNetModel) -> None:
        # wait_to_read() re-raises the error of any operator that produced the array or fed it.
        try:
            if model.loss is not None:
                model.loss.wait_to_read()
            for array in model.grads:
                array.wait_to_read()
            if model.trainer is not None:
                for array in model.weights:
                    array.wait_to_read()
        except Exception as exc:
            _raise_if_oom(exc)
            raise

    def verify(self, spec, config, weights, data, labels) -> VerifyOutput:
        import mxnet as mx
        import numpy as np

        # Dropout layers built as identities (the contract: dropout passes its input through), and the
        # graph run in training mode like the step: MKL-DNN's max pooling keeps the workspace its backward
        # needs only in training mode, so autograd.record(train_mode=False) gives wrong gradients.
        model = self._build(spec, dataclasses.replace(config, batch_size=len(data)), dropout=False)
        net, ctx = model.net, model.ctx
        dtype = "float16" if model.fp16 else "float32"
        # The canonical layout is MXNet's own: [out, in/groups, kh, kw], and [out, in] for Dense, whose
        # flatten=True folds the input in C, H, W order; the arrays load as they are.
        for name in net.parameter_layers:
            block = net.layer_block(name)
            block.weight.set_data(mx.nd.array(weights[name]["weight"], ctx=ctx, dtype=dtype))
            if block.bias is not None:
                block.bias.set_data(mx.nd.array(weights[name]["bias"], ctx=ctx, dtype=dtype))
        x = mx.nd.array(data, ctx=ctx, dtype=dtype)
        y = mx.nd.array(labels, ctx=ctx, dtype="float32")
        with mx.autograd.record():
            logits = net(x)
            if model.fp16:
                logits = logits.astype("float32")
            loss = model.loss_fn(logits, y).mean()
        loss.backward()

        def numpy(array):
            return array.asnumpy().astype(np.float64)

        grads = {}
        for name in net.parameter_layers:
            block = net.layer_block(name)
            grads[name] = {"weight": numpy(block.weight.grad(ctx))}
            if block.bias is not None:
                grads[name]["bias"] = numpy(block.bias.grad(ctx))
        return VerifyOutput(float(loss.asscalar()), numpy(logits), grads)

    def peak_memory(self, model: MXNetModel) -> tuple[int | None, str]:
        if model.ctx.device_type == "gpu":
            import mxnet as mx

            free, total = mx.context.gpu_memory_info(model.ctx.device_id)
            return total - free, ("GPU memory in use at the end (gpu_memory_info; MXNet's pool keeps what it "
                                  "took, so this is its peak, plus any other process on the GPU)")
        return super().peak_memory(model)

    def actual_threads(self, config) -> int | None:
        """MXNet's own rule (src/engine/openmp.cc): MXNET_OMP_MAX_THREADS, else OMP_NUM_THREADS, else
        half the CPUs this process may run on, on x86."""
        for var in ("MXNET_OMP_MAX_THREADS", "OMP_NUM_THREADS"):
            value = os.environ.get(var, "").split(",")[0].strip()
            if value.isdigit() and int(value) > 0:
                return int(value)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
        return max(1, cpus >> 1) if x86 else cpus

    def inventory(self, config) -> dict[str, Any]:
        import mxnet as mx
        import numpy as np

        features = mx.runtime.Features()
        blas = next((name for flag, name in (("BLAS_MKL", "mkl"), ("BLAS_OPEN", "openblas"),
                                             ("BLAS_ATLAS", "atlas"), ("BLAS_APPLE", "accelerate"))
                     if features.is_enabled(flag)), None)
        info: dict[str, Any] = {
            "mxnet": mx.__version__,
            "numpy": np.__version__,
            "blas": blas,
            "mkldnn_built": features.is_enabled("MKLDNN"),
            "mkldnn": features.is_enabled("MKLDNN") and os.environ.get("MXNET_MKLDNN_ENABLED", "1") != "0",
            "omp_threads": self.actual_threads(config),
        }
        # MXNet 1.9.1 bundles OpenBLAS 0.3.13, which does not know CPUs newer than it and then falls
        # back to generic kernels: worth knowing when reading --kernels native results.
        info.update(_bundled_openblas(mx))
        if config.device_kind == "cuda":
            info.update({"cuda_built": features.is_enabled("CUDA"), "cudnn_built": features.is_enabled("CUDNN")})
            info.update(_cuda_device(config.device_index))
        return info


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def _gpu_build_version() -> str | None:
    """The version of a GPU build (mxnet-cu112, ...), whose distribution is not named 'mxnet'."""
    for dist in importlib.metadata.packages_distributions().get("mxnet", []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _bundled_openblas(mx) -> dict[str, Any]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    folder = os.path.dirname(mx.__file__)
    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas" and lib.get("filepath", "").startswith(folder):
            return {"openblas": lib.get("version"), "openblas_core": lib.get("architecture")}
    return {}


def _cuda_device(index: int) -> dict[str, Any]:
    """Name, UUID and PCI bus id of CUDA device ``index`` (numbered as MXNet numbers it, after
    CUDA_VISIBLE_DEVICES), from the CUDA driver API: MXNet 1.x has no call for them, and the host's
    NVML meter finds the GPU by UUID or bus id, never by index."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        device = ctypes.c_int()
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), index) != 0:
            return {}
        name = ctypes.create_string_buffer(256)
        uuid = ctypes.create_string_buffer(16)
        if cuda.cuDeviceGetName(name, 256, device) != 0 or cuda.cuDeviceGetUuid(uuid, device) != 0:
            return {}

        def attribute(code: int) -> int:
            value = ctypes.c_int()
            cuda.cuDeviceGetAttribute(ctypes.byref(value), code, device)
            return value.value

        # CUdevice_attribute: PCI bus 33, PCI device 34, PCI domain 50, compute capability 75 / 76.
        u = uuid.raw.hex()
        return {
            "gpu": name.value.decode(errors="replace"),
            "gpu_uuid": f"GPU-{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}",
            "gpu_pci_bus_id": f"{attribute(50):08x}:{attribute(33):02x}:{attribute(34):02x}.0",
            "gpu_compute_capability": f"{attribute(75)}.{attribute(76)}",
        }
    except (OSError, AttributeError):
        return {}


def _raise_if_oom(exc: Exception) -> None:
    text = str(exc)
    # CUDA: "cudaMalloc retry failed: out of memory"; the CPU allocator: std::bad_alloc.
    if "out of memory" in text.lower() or "bad_alloc" in text:
        lines = [line for line in text.splitlines() if "out of memory" in line.lower() or "bad_alloc" in line]
        raise OutOfMemory(lines[-1].strip() if lines else "out of memory") from exc
