"""The Caffe-style engine as a cnnbench adapter (``--framework caffe``).

Kernel families: ``native`` only — convolution as im2col + GEMM layer by layer, the BLAS sgemm on the
CPU and cuBLAS (through CuPy) on CUDA, Caffe's own path without cuDNN (the paper's Fig. 2 and 4).

Precisions: ``fp32`` for timing (IEEE fp32 throughout; CuPy's TF32 switch ``CUPY_TF32`` stays off).
``verify()`` computes in float64 whatever ``config.precision`` says, because this engine is the float64
reference of ``cnnbench verify``; set ``verify_float64 = False`` on an instance to verify the engine's
own fp32 arithmetic instead (then ``config.precision`` must be ``fp32``).

Single layers (``cnnbench layers``): the engine's own layer classes, each bound to synthetic inputs
(see ``single.py``), so a layer alone does the work it does inside the net.

Threads: the BLAS thread pool, through threadpoolctl when it is installed; without it the host's
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` (set for every worker when
``--threads`` is given) are what the BLAS reads at start-up. Everything outside the GEMMs runs on one
thread, as in Caffe without OpenMP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

from cnnbench.adapter import Capabilities, FrameworkAdapter, Unsupported, VerifyOutput

_VENDOR = ("the Caffe-style engine has only its own im2col + GEMM kernels; cuDNN/oneDNN are what the "
           "framework adapters' vendor family measures")
_HALF = ("the Caffe-style engine computes in fp32 (float64 for verify): Caffe's own kernels have no "
         "{0} (half precision came with NVIDIA's Caffe fork, on cuDNN)")


@dataclass
class CaffeModel:
    net: Any
    backend: Any


class CaffeAdapter(FrameworkAdapter):
    name = "caffe"
    package = "numpy"
    install_hint = "pip install numpy (and for CUDA: pip install cupy-cuda12x)"

    #: verify() computes in float64 (the reference of ``cnnbench verify``), not at config.precision.
    verify_float64: ClassVar[bool] = True

    def __init__(self) -> None:
        self.backend: Any = None
        self._limits: Any = None

    @classmethod
    def version_label(cls, package_version: str) -> str:
        # The engine is cnnbench's own code: its version is cnnbench's; NumPy (and CuPy, on CUDA) beside it.
        import importlib.metadata
        import importlib.util

        from cnnbench import __version__

        libraries = [f"numpy {package_version}"]
        if importlib.util.find_spec("cupy") is not None:
            for distribution in importlib.metadata.packages_distributions().get("cupy", []):
                libraries.append(f"cupy {importlib.metadata.version(distribution)}")
                break
        return f"cnnbench {__version__} ({', '.join(libraries)})"

    @classmethod
    def capabilities(cls, device_kind: str) -> Capabilities:
        unsupported = {"vendor": _VENDOR, "fp16": _HALF.format("fp16"), "bf16": _HALF.format("bf16")}
        if device_kind == "cuda":
            unsupported["tf32"] = ("the Caffe-style engine runs cuBLAS in IEEE fp32, as Caffe does "
                                   "(CuPy's TF32 mode, CUPY_TF32=1, stays off)")
        else:
            unsupported["tf32"] = "TF32 is a format of NVIDIA tensor cores; the CPU has none"
        return Capabilities(precisions=("fp32",), kernels=("native",), unsupported=unsupported)

    # -- worker side ------------------------------------------------------------------------------

    def prepare(self, config) -> None:
        from cnnbench_caffe.backend import Backend

        caps = self.capabilities(config.device_kind)
        if config.kernels not in caps.kernels:
            raise Unsupported(caps.unsupported.get(config.kernels, f"no kernel family '{config.kernels}'"))
        self._dtype(config)
        self.backend = Backend(config.device)
        if config.threads:
            self._limit_threads(config.threads)

    def _dtype(self, config) -> Any:
        import numpy

        if config.precision != "fp32":
            reason = self.capabilities(config.device_kind).unsupported.get(config.precision)
            raise Unsupported(reason or f"the Caffe-style engine has no precision '{config.precision}'")
        return numpy.float32

    def _limit_threads(self, threads: int) -> None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return  # the host's *_NUM_THREADS variables were read when the BLAS loaded
        # Kept on the instance: the limit holds until restored.
        self._limits = threadpool_limits(limits=threads, user_api="blas")

    def build(self, spec, config) -> CaffeModel:
        from cnnbench_caffe.engine import Net

        backend = self.backend or self._backend(config)
        try:
            net = Net(spec, config.batch_size, backend, self._dtype(config), train=True, seed=config.seed,
                      optimizer=config.optimizer)
            net.init_weights(config.seed)
            net.synthetic_input(config.seed + 1)
        except Exception as exc:
            backend.raise_if_oom(exc)
            raise
        return CaffeModel(net, backend)

    def _backend(self, config) -> Any:
        from cnnbench_caffe.backend import Backend

        return Backend(config.device)

    def step(self, model: CaffeModel) -> None:
        try:
            model.net.step()
        except Exception as exc:
            model.backend.raise_if_oom(exc)
            raise

    def build_layer(self, spec, layer_name, config) -> Any:
        from cnnbench_caffe.single import build_single

        backend = self.backend or self._backend(config)
        try:
            return build_single(spec, layer_name, config.batch_size, backend, self._dtype(config), config.seed)
        except Exception as exc:
            backend.raise_if_oom(exc)
            raise

    def step_layer(self, handle, direction: str) -> None:
        from cnnbench_caffe.single import step_single

        try:
            step_single(handle, direction)
        except Exception as exc:
            handle.backend.raise_if_oom(exc)
            raise

    def synchronize(self, model: CaffeModel) -> None:
        # NumPy returns when the work is done; CuPy queues kernels on the device's stream.
        try:
            model.backend.synchronize()
        except Exception as exc:
            model.backend.raise_if_oom(exc)
            raise

    def peak_memory(self, model: CaffeModel) -> tuple[int | None, str]:
        if model.backend.is_gpu:
            # Every buffer is made at build and the pool never gives blocks back, so what it holds is
            # its high-water mark.
            return model.backend.memory_bytes(), "CuPy memory pool total bytes"
        return super().peak_memory(model)

    def verify(self, spec, config, weights, data, labels) -> VerifyOutput:
        import numpy

        from cnnbench_caffe.engine import Net

        dtype = numpy.float64 if self.verify_float64 else self._dtype(config)
        backend = self._backend(config)
        data = numpy.asarray(data)
        try:
            net = Net(spec, data.shape[0], backend, dtype, train=False, seed=config.seed)
            net.load_weights(weights)
            net.set_input(data, labels)
            net.forward()
            net.backward()
            logits = backend.to_numpy(net.logits).astype(numpy.float64)
            return VerifyOutput(loss=net.loss, logits=logits, grads=net.gradients())
        except Exception as exc:
            backend.raise_if_oom(exc)
            raise

    def actual_threads(self, config) -> int | None:
        try:
            from threadpoolctl import threadpool_info
        except ImportError:
            for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
                if os.environ.get(var, "").isdigit():
                    return int(os.environ[var])
            return None
        blas = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
        return blas[0]["num_threads"] if blas else None

    def inventory(self, config) -> dict[str, Any]:
        import numpy

        info: dict[str, Any] = {"numpy": numpy.__version__, "blas": _numpy_blas()}
        try:
            from threadpoolctl import threadpool_info

            info["blas_pools"] = [
                {key: pool.get(key) for key in ("internal_api", "version", "num_threads", "architecture")}
                for pool in threadpool_info() if pool.get("user_api") == "blas"
            ]
        except ImportError:
            pass
        if config.device_kind == "cuda":
            info.update(_cuda_inventory(config.device_index))
        return info


def _numpy_blas() -> str | None:
    """NumPy's BLAS as its build recorded it, e.g. ``scipy-openblas 0.3.29``."""
    import numpy

    try:
        deps = numpy.show_config(mode="dicts")["Build Dependencies"]
        blas = deps["blas"]
        return " ".join(str(blas[key]) for key in ("name", "version") if blas.get(key)) or None
    except Exception:  # older NumPy: show_config() only prints
        return None


def _cuda_inventory(index: int) -> dict[str, Any]:
    import cupy

    runtime = cupy.cuda.runtime
    props = runtime.getDeviceProperties(index)
    name = props["name"]
    return {
        "cupy": cupy.__version__,
        "cuda_runtime": runtime.runtimeGetVersion(),
        "cuda_driver": runtime.driverGetVersion(),
        "gpu": name.decode() if isinstance(name, bytes) else name,
        "gpu_compute_capability": f"{props['major']}.{props['minor']}",
        "gpu_memory_bytes": props["totalGlobalMem"],
        # how the host's NVML meter finds this device (never by index)
        "gpu_uuid": _uuid(props.get("uuid")),
        "gpu_pci_bus_id": f"{props.get('pciDomainID', 0):08x}:{props.get('pciBusID', 0):02x}:"
                          f"{props.get('pciDeviceID', 0):02x}.0" if "pciBusID" in props else None,
    }


def _uuid(raw) -> str | None:
    """CUDA's 16 UUID bytes as NVML writes them (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."""
    if not raw:
        return None
    if isinstance(raw, str):
        return raw
    h = bytes(raw).hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
