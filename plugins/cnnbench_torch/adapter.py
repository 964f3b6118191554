"""PyTorch adapter: eager mode, the idiomatic PyTorch training step.

Kernel families (the paper's Fig. 2 and Fig. 4):
- ``vendor``: cuDNN on CUDA (autotuned during warm-up with ``cudnn.benchmark``), oneDNN on the CPU.
- ``native``: PyTorch's own im2col + GEMM convolution (``slow_conv2d``), cuDNN / oneDNN / NNPACK off.

Single layers (``cnnbench layers``): each layer's module alone, on synthetic inputs in the dtype it sees
inside the network, under the same device, kernel and autocast settings (see ``layer.py``).

Precisions: ``fp32`` is strict IEEE fp32 (TF32 off, on CUDA too, where PyTorch enables it for
convolutions by default); ``tf32`` enables it on CUDA; ``fp16`` and ``bf16`` use autocast.

Options: ``--option memory_format=channels_last`` converts the module's 4-D parameters and the input batch
to ``torch.channels_last`` (NHWC strides; oneDNN's and cuDNN's preferred layout), in whole-network steps,
single layers and ``verify`` alike; the step is otherwise the same. ``contiguous`` (NCHW, the default) is
PyTorch's usual layout. The worker records the layout it used as ``memory_format`` in its provenance.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from cnnbench.adapter import Capabilities, FrameworkAdapter, OutOfMemory, Unsupported, VerifyOutput

#: ``--option memory_format=...``: the first is the default (today's behaviour, PyTorch's own default).
MEMORY_FORMATS = ("contiguous", "channels_last")


@dataclass
class TorchModel:
    module: Any
    x: Any
    y: Any
    device: Any
    autocast: Any  # a callable returning the autocast context for the run's precision
    optimizer: Any = None
    scaler: Any = None


class TorchAdapter(FrameworkAdapter):
    name = "torch"
    package = "torch"
    install_hint = 'pip install "cnnbench[torch]"'
    options = {"memory_format": (MEMORY_FORMATS, "layout of the 4-D parameters and input: contiguous (NCHW, the "
                                                 "default) or channels_last (NHWC strides)")}

    @classmethod
    def capabilities(cls, device_kind: str) -> Capabilities:
        if device_kind == "cuda":
            return Capabilities(precisions=("fp32", "tf32", "fp16", "bf16"), kernels=("vendor", "native"))
        return Capabilities(
            precisions=("fp32", "fp16", "bf16"),
            kernels=("vendor", "native"),
            unsupported={"tf32": "TF32 is a format of NVIDIA tensor cores; the CPU has none"},
        )

    # -- worker side ------------------------------------------------------------------------------

    def prepare(self, config) -> None:
        import torch

        # the worker may be asked directly (the host's pre-check skipped): refuse here as well
        refused = self.capabilities(config.device_kind).unsupported
        for value in (config.precision, config.kernels):
            if value in refused:
                raise Unsupported(refused[value])
        _memory_format_name(config)
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.device_kind == "cuda":
            self._prepare_cuda(torch, config)
        else:
            self._prepare_cpu(torch, config)

    def _prepare_cpu(self, torch, config) -> None:
        vendor = config.kernels == "vendor"
        if vendor and not torch.backends.mkldnn.is_available():
            raise Unsupported(f"torch {torch.__version__} was built without oneDNN (mkldnn)")
        torch.backends.mkldnn.enabled = vendor
        # NNPACK would otherwise take some convolutions when oneDNN is off; "native" means slow_conv2d.
        torch.backends.nnpack.set_flags(vendor)
        if vendor:
            # oneDNN takes half-precision convolutions only where the CPU has the instructions for
            # them; elsewhere PyTorch quietly falls back to slow_conv2d, which is the native family.
            mkldnn = torch.ops.mkldnn
            if config.precision == "bf16" and not mkldnn._is_mkldnn_bf16_supported():
                raise Unsupported("oneDNN has no bf16 kernels for this CPU (needs AVX-512 BF16 or AMX); "
                                  "PyTorch would run its native kernels: use --kernels native")
            if config.precision == "fp16" and not mkldnn._is_mkldnn_fp16_supported():
                raise Unsupported("oneDNN has no fp16 kernels for this CPU (needs AVX-512 FP16 or AMX-FP16); "
                                  "PyTorch would run its native kernels: use --kernels native")

    def _prepare_cuda(self, torch, config) -> None:
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise Unsupported(f"CUDA is not available to torch {torch.__version__} ({build}, no usable GPU)")
        count = torch.cuda.device_count()
        if config.device_index >= count:
            raise Unsupported(f"{config.device} does not exist: this machine has {count} CUDA device(s)")
        # "cuda" alone means device 0; set_device needs an index.
        device = torch.device("cuda", config.device_index)
        torch.cuda.set_device(device)
        major, minor = torch.cuda.get_device_capability(device)
        if config.precision == "tf32" and major < 8:
            raise Unsupported(f"TF32 needs compute capability 8.0 or newer; this GPU has {major}.{minor}")
        if config.precision == "bf16" and not _native_bf16(torch):
            raise Unsupported(f"this GPU (compute capability {major}.{minor}) has no bf16 support")
        if config.kernels == "vendor" and not torch.backends.cudnn.is_available():
            raise Unsupported(f"torch {torch.__version__} cannot load cuDNN")
        tf32 = config.precision == "tf32"
        if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
            torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
            torch.backends.cudnn.conv.fp32_precision = "tf32" if tf32 else "ieee"
        else:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.enabled = config.kernels == "vendor"
        # Autotuning happens in the first (warm-up) iterations, which are excluded from timing.
        torch.backends.cudnn.benchmark = config.kernels == "vendor"

    def build(self, spec, config) -> TorchModel:
        import torch

        from cnnbench_torch.model import build_module

        torch.manual_seed(config.seed)
        device = _device(torch, config)
        layout = _memory_format(torch, config)
        try:
            # to(memory_format=...) restrides only the 4-D parameters (convolution weights); the rest stay as they are
            module = build_module(spec).to(device, memory_format=layout).train()
            x = torch.randn(config.batch_size, *spec.input_shape, device=device).contiguous(memory_format=layout)
            y = torch.randint(0, spec.num_classes, (config.batch_size,), device=device)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            _raise_if_oom(exc)
            raise
        model = TorchModel(module, x, y, device, _autocast(torch, device, config.precision))
        if config.optimizer:
            model.optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
            if config.precision == "fp16":
                model.scaler = torch.amp.GradScaler(device.type)
        return model

    def step(self, model: TorchModel) -> None:
        import torch.nn.functional as F

        module = model.module
        module.zero_grad(set_to_none=True)
        try:
            with model.autocast():
                loss = F.cross_entropy(module(model.x), model.y)
            if model.scaler is not None:
                model.scaler.scale(loss).backward()
                model.scaler.step(model.optimizer)
                model.scaler.update()
            else:
                loss.backward()
                if model.optimizer is not None:
                    model.optimizer.step()
        except Exception as exc:
            _raise_if_oom(exc)
            raise

    def build_layer(self, spec, layer_name, config) -> Any:
        import torch

        from cnnbench_torch.layer import blob_dtypes, build_single

        device = _device(torch, config)
        autocast = _autocast(torch, device, config.precision)
        try:
            dtypes = None
            if config.precision in ("fp16", "bf16"):
                # Once per network: every layer of the job reads it.
                cache = getattr(self, "_dtypes", None)
                if cache is None or cache[0] != (spec.name, config.precision):
                    cache = self._dtypes = ((spec.name, config.precision), blob_dtypes(spec, device, autocast))
                dtypes = cache[1]
            return build_single(spec, layer_name, config.batch_size, device, autocast, dtypes, config.seed,
                                _memory_format(torch, config))
        except Exception as exc:
            _raise_if_oom(exc)
            raise

    def step_layer(self, handle, direction: str) -> None:
        from cnnbench_torch.layer import step_single

        try:
            step_single(handle, direction)
        except Exception as exc:
            _raise_if_oom(exc)
            raise

    def verify(self, spec, config, weights, data, labels) -> VerifyOutput:
        import torch
        import torch.nn.functional as F

        from cnnbench_torch.model import parameter_modules

        model = self.build(spec, config)
        module = model.module
        for sub in module.modules():
            if isinstance(sub, torch.nn.Dropout):
                sub.eval()  # the contract: dropout passes its input through
        layers = parameter_modules(module, spec)
        with torch.no_grad():
            for name, layer in layers.items():
                # The canonical layout is PyTorch's own: [out, in/groups, kh, kw] and [out, in] with C,H,W
                # flattening, so the weights copy as they are.
                layer.weight.copy_(torch.from_numpy(weights[name]["weight"]))
                if layer.bias is not None:
                    layer.bias.copy_(torch.from_numpy(weights[name]["bias"]))
        x = torch.from_numpy(data).to(model.device, torch.float32)
        x = x.contiguous(memory_format=_memory_format(torch, config))
        y = torch.from_numpy(labels).to(model.device)
        module.zero_grad(set_to_none=True)
        with model.autocast():
            logits = module(x)
            loss = F.cross_entropy(logits, y)
        loss.backward()

        def numpy(tensor):
            return tensor.detach().to("cpu", torch.float64).numpy()

        grads = {}
        for name, layer in layers.items():
            grads[name] = {"weight": numpy(layer.weight.grad)}
            if layer.bias is not None:
                grads[name]["bias"] = numpy(layer.bias.grad)
        return VerifyOutput(float(loss.detach()), numpy(logits), grads)

    def synchronize(self, model: TorchModel) -> None:
        if model.device.type == "cuda":
            import torch

            try:
                torch.cuda.synchronize(model.device)
            except Exception as exc:
                _raise_if_oom(exc)
                raise
        # CPU operators run synchronously: when step() returns, the work is done.

    def peak_memory(self, model: TorchModel) -> tuple[int | None, str]:
        if model.device.type == "cuda":
            import torch

            return torch.cuda.max_memory_allocated(model.device), "CUDA allocator peak (max_memory_allocated)"
        return super().peak_memory(model)

    def actual_threads(self, config) -> int | None:
        import torch

        return torch.get_num_threads()

    def inventory(self, config) -> dict[str, Any]:
        import torch

        info: dict[str, Any] = {"torch": torch.__version__, "memory_format": _memory_format_name(config)}
        config_text = torch.__config__.show()
        blas = re.search(r"BLAS_INFO=(\w+)", config_text)
        info["blas"] = blas.group(1) if blas else None
        onednn = re.search(r"MKL-DNN v([\w.]+)", config_text)
        info["onednn"] = onednn.group(1) if onednn else None
        if config.device_kind == "cuda":
            device = torch.device("cuda", config.device_index)
            props = torch.cuda.get_device_properties(device)
            info.update(
                {
                    "cuda": torch.version.cuda,
                    "cudnn": torch.backends.cudnn.version(),
                    "gpu": props.name,
                    "gpu_compute_capability": f"{props.major}.{props.minor}",
                    "gpu_memory_bytes": props.total_memory,
                    # how the host's NVML meter finds this device: never by index, which
                    # CUDA_VISIBLE_DEVICES and CUDA's device ordering make differ from NVML's
                    "gpu_uuid": str(getattr(props, "uuid", "")) or None,
                    "gpu_pci_bus_id": _pci_bus_id(props),
                }
            )
        return info


def _device(torch, config) -> Any:
    return torch.device("cuda", config.device_index) if config.device_kind == "cuda" else torch.device("cpu")


def _memory_format_name(config) -> str:
    # the host checked the value against MEMORY_FORMATS; a worker asked directly is checked here too
    name = config.option("memory_format", MEMORY_FORMATS[0])
    if name not in MEMORY_FORMATS:
        raise Unsupported(f"unknown memory_format '{name}'; valid choices: {', '.join(MEMORY_FORMATS)}")
    return name


def _memory_format(torch, config) -> Any:
    return {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}[_memory_format_name(config)]


def _autocast(torch, device, precision: str) -> Any:
    """A callable returning the precision's autocast context (a null context for fp32 and tf32)."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext

    def autocast():
        return torch.autocast(device_type=device.type, dtype=dtype)

    return autocast


def _pci_bus_id(props) -> str | None:
    try:
        return f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    except AttributeError:
        return None


def _native_bf16(torch) -> bool:
    """bf16 in hardware (compute capability 8.0+); pre-Ampere GPUs only emulate it."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no emulation flag and reports hardware support only
        return torch.cuda.is_bf16_supported()


def _raise_if_oom(exc: Exception) -> None:
    import torch

    text = str(exc).lower()
    # CUDA says "out of memory"; the CPU allocator "DefaultCPUAllocator: not enough memory" or, when the
    # system refuses (ENOMEM, e.g. under --memory-limit), "DefaultCPUAllocator: can't allocate memory".
    if isinstance(exc, torch.OutOfMemoryError) or any(
            words in text for words in ("out of memory", "not enough memory", "can't allocate memory")):
        raise OutOfMemory(str(exc).splitlines()[0] if str(exc) else "out of memory") from exc
