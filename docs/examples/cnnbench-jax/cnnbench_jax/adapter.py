"""The JAX adapter: the training step as one ``jax.jit``-compiled function, the way JAX trains.

Kernel families: ``vendor`` only — XLA compiles every convolution itself (its own CPU emitter or
oneDNN's, cuDNN's on CUDA); JAX has no switch for a framework-owned im2col + GEMM path, so ``native``
is unsupported with that reason.

Precisions: ``fp32`` (``Precision.HIGHEST``, so a GPU's tensor cores cannot round the inputs to TF32);
``tf32`` on CUDA (``Precision.DEFAULT``, which lets XLA use TF32 there); ``fp16`` and ``bf16`` as mixed
precision (float32 parameters cast inside the step, the loss in float32). On a CPU without half-precision
instructions XLA may compute such operations in float32 between conversions: the time is what XLA makes of
half precision on this machine, not a measure of half-precision arithmetic.

Timing: ``step()`` only dispatches the compiled step (JAX is asynchronous, on the CPU too) and
``synchronize()`` waits for its outputs with ``block_until_ready``; the first step compiles, which the
worker's warm-up excludes.

Threads: XLA sizes its CPU thread pool when the backend starts and offers no setting for it, so
``--threads`` is unsupported (the table says so instead of timing a thread count that was not applied).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Any

from cnnbench.adapter import Availability, Capabilities, FrameworkAdapter, OutOfMemory, Unsupported, VerifyOutput

_NATIVE = ("XLA compiles every convolution itself (cuDNN on CUDA, its own or oneDNN's kernels on the CPU); "
           "JAX has no framework-owned im2col + GEMM path to select")
_TF32_CPU = "TF32 is a format of NVIDIA tensor cores; the CPU has none"
_NO_CUDA = "pip install -U \"jax[cuda12]\" for NVIDIA GPUs"


@dataclass
class JaxModel:
    params: Any
    x: Any
    y: Any
    #: Threaded from each step to the next (see build()): dropout's PRNG key, or a step counter.
    state: Any
    step: Any  # the compiled training step
    device: Any
    velocity: Any = None  # SGD momentum buffers, when RunConfig.optimizer is set
    #: What the last step returned; what synchronize() waits for.
    outputs: Any = None


class JaxAdapter(FrameworkAdapter):
    name = "jax"
    package = "jax"
    install_hint = "pip install \"jax[cpu]\" (NVIDIA GPUs: pip install \"jax[cuda12]\")"
    #: The JAX device of the run, chosen by prepare() (None: JAX's default device).
    device: Any = None

    @classmethod
    def availability(cls) -> Availability:
        # JAX imports only with jaxlib (its compiled half) beside it; a lone jax would pass the default check.
        found = super().availability()
        if found.available and importlib.util.find_spec("jaxlib") is None:
            return Availability(False, found.version, "jax is installed but jaxlib is not", cls.install_hint)
        return found

    @classmethod
    def capabilities(cls, device_kind: str) -> Capabilities:
        if device_kind == "cuda":
            return Capabilities(precisions=("fp32", "tf32", "fp16", "bf16"), kernels=("vendor",), threads=False,
                                unsupported={"native": _NATIVE})
        return Capabilities(precisions=("fp32", "fp16", "bf16"), kernels=("vendor",), threads=False,
                            unsupported={"native": _NATIVE, "tf32": _TF32_CPU})

    # -- worker side ------------------------------------------------------------------------------

    def prepare(self, config) -> None:
        # The host checks capabilities before it starts a worker; anything that calls the adapter directly
        # (a test, another tool) gets the same answer here.
        caps = self.capabilities(config.device_kind)
        for value, allowed in ((config.kernels, caps.kernels), (config.precision, caps.precisions)):
            if value not in allowed:
                raise Unsupported(caps.unsupported.get(value, f"the jax adapter has no '{value}'"))
        import jax

        if config.device_kind == "cpu":
            try:
                # Before the first backend starts: a GPU build would otherwise initialise CUDA (and reserve
                # most of the GPU's memory) for a CPU run.
                jax.config.update("jax_platforms", "cpu")
            except Exception:
                pass  # a backend is already up (the adapter used in process); the device is chosen below
            self.device = jax.devices("cpu")[0]
            return
        try:
            gpus = jax.devices("cuda")
        except Exception as exc:  # "Unknown backend" on a CPU-only jaxlib, or a driver that fails to load
            raise Unsupported(f"CUDA is not available to jax {jax.__version__} ({exc}); {_NO_CUDA}") from None
        if config.device_index >= len(gpus):
            raise Unsupported(f"{config.device} does not exist: jax sees {len(gpus)} CUDA device(s)")
        self.device = gpus[config.device_index]

    def _compute(self, config) -> tuple[Any, Any]:
        import jax.numpy as jnp
        from jax import lax

        dtype = {"fp16": jnp.float16, "bf16": jnp.bfloat16}.get(config.precision, jnp.float32)
        precision = lax.Precision.HIGHEST if config.precision == "fp32" else lax.Precision.DEFAULT
        return dtype, precision

    def build(self, spec, config) -> JaxModel:
        import jax

        from cnnbench_jax.model import has_dropout, init_params, loss_function

        dtype, precision = self._compute(config)
        grad = jax.value_and_grad(loss_function(spec, dtype, precision, train=True), has_aux=True)
        dropout = has_dropout(spec)

        def advance(state):
            """(the next step's state, this step's dropout key). Every step reads the state the previous
            one wrote, so the runtime can neither overlap two steps nor reorder them, whatever its
            scheduling: when synchronize() finds the last step done, the whole window is."""
            if dropout:
                return jax.random.split(state)
            return state + 1, None

        if config.optimizer:
            def train(params, velocity, x, y, state):
                state, key = advance(state)
                (loss, _), grads = grad(params, x, y, key)
                # PyTorch's SGD with momentum, as the other adapters update: v = 0.9 v + g, p -= 0.01 v.
                velocity = jax.tree_util.tree_map(lambda v, g: 0.9 * v + g, velocity, grads)
                params = jax.tree_util.tree_map(lambda p, v: p - 0.01 * v, params, velocity)
                return loss, params, velocity, state

            # Donated: the update reuses the old buffers instead of holding two copies of the weights.
            step = jax.jit(train, donate_argnums=(0, 1))
        else:
            def train(params, x, y, state):
                state, key = advance(state)
                (loss, _), grads = grad(params, x, y, key)
                return loss, grads, state

            step = jax.jit(train)
        seed = jax.random.PRNGKey(config.seed)
        k_params, k_x, k_y, k_dropout = jax.random.split(seed, 4)
        try:
            with jax.default_device(self.device):
                params = init_params(spec, k_params)
                x = jax.random.normal(k_x, (config.batch_size, *spec.input_shape))
                y = jax.random.randint(k_y, (config.batch_size,), 0, spec.num_classes)
                velocity = jax.tree_util.tree_map(jax.numpy.zeros_like, params) if config.optimizer else None
                state = k_dropout if dropout else jax.numpy.zeros((), jax.numpy.int32)
            jax.block_until_ready((params, x, y, state))
        except Exception as exc:
            _raise_if_oom(exc)
            raise
        return JaxModel(params, x, y, state, step, self.device, velocity)

    def step(self, model: JaxModel) -> None:
        try:
            if model.velocity is None:
                loss, grads, model.state = model.step(model.params, model.x, model.y, model.state)
                model.outputs = (loss, grads)
            else:
                loss, model.params, model.velocity, model.state = model.step(
                    model.params, model.velocity, model.x, model.y, model.state)
                model.outputs = (loss, model.params)
        except Exception as exc:
            _raise_if_oom(exc)
            raise

    def synchronize(self, model: JaxModel) -> None:
        import jax

        try:
            # Errors of asynchronously dispatched steps surface here.
            jax.block_until_ready(model.outputs)
        except Exception as exc:
            _raise_if_oom(exc)
            raise

    def peak_memory(self, model: JaxModel) -> tuple[int | None, str]:
        if model.device is not None and model.device.platform == "gpu":
            stats = model.device.memory_stats() or {}
            return stats.get("peak_bytes_in_use"), "XLA allocator peak (peak_bytes_in_use)"
        return super().peak_memory(model)

    def actual_threads(self, config) -> int | None:
        return None  # XLA does not say how many threads its CPU pool has

    def verify(self, spec, config, weights, data, labels) -> VerifyOutput:
        import jax
        import numpy as np

        from cnnbench_jax.model import loss_function

        if self.device is None:  # called without prepare(), as a test may
            self.prepare(config)
        dtype, precision = self._compute(config)
        # The canonical layout is this adapter's own (see model.py): the weights load as they are.
        params = {layer: {kind: jax.device_put(np.asarray(array, np.float32), self.device)
                          for kind, array in kinds.items()} for layer, kinds in weights.items()}
        x = jax.device_put(np.asarray(data, np.float32), self.device)
        # int32: JAX keeps 64-bit types off unless asked (jax_enable_x64).
        y = jax.device_put(np.asarray(labels, np.int32), self.device)
        grad = jax.jit(jax.value_and_grad(loss_function(spec, dtype, precision, train=False), has_aux=True))
        (loss, logits), grads = grad(params, x, y, None)

        def numpy(array):
            return np.asarray(array, dtype=np.float64)

        return VerifyOutput(float(loss), numpy(logits),
                            {layer: {kind: numpy(g) for kind, g in kinds.items()} for layer, kinds in grads.items()})

    def inventory(self, config) -> dict[str, Any]:
        import os

        import jax

        info: dict[str, Any] = {"jax": jax.__version__, "jax_backend": jax.default_backend()}
        try:
            info["jaxlib"] = importlib.metadata.version("jaxlib")
        except importlib.metadata.PackageNotFoundError:
            info["jaxlib"] = None
        if self.device is not None:
            info["device"] = self.device.device_kind
        if os.environ.get("XLA_FLAGS"):
            info["xla_flags"] = os.environ["XLA_FLAGS"]
        return info


def _raise_if_oom(exc: Exception) -> None:
    # XLA reports an exhausted allocator as a RESOURCE_EXHAUSTED status, whatever the device.
    text = str(exc)
    if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
        raise OutOfMemory(text.splitlines()[0] if text else "out of memory") from exc
