"""The array module under the engine: NumPy on the CPU, CuPy on CUDA.

The layers are written once against ``xp`` (the NumPy API that CuPy mirrors); everything that differs
between the two libraries — strided views, random numbers, synchronisation, memory, copying back to
the host — lives here. On CUDA, CuPy's GEMM is cuBLAS and its element-wise kernels are its own, which is
exactly Caffe's "native" GPU path (im2col + cuBLAS, the paper's Fig. 2), with no cuDNN anywhere.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy

from cnnbench.adapter import OutOfMemory, Unsupported

CUPY_INSTALL_HINT = "pip install cupy-cuda12x"


class Backend:
    """One device and its array module; ``xp`` is ``numpy`` or ``cupy``."""

    def __init__(self, device: str = "cpu"):
        kind, _, index = device.partition(":")
        self.device = device
        self.is_gpu = kind == "cuda"
        if not self.is_gpu:
            from numpy.lib.stride_tricks import as_strided

            self.xp: Any = numpy
            self._as_strided = as_strided
            return
        try:
            import cupy
            from cupy.lib.stride_tricks import as_strided
        except ImportError as exc:
            raise Unsupported(
                f"the Caffe-style engine runs on CUDA through CuPy, which cannot be imported in "
                f"{sys.executable} ({exc}); install it with: {CUPY_INSTALL_HINT}"
            ) from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError without a driver or a GPU
            raise Unsupported(f"CuPy {cupy.__version__} finds no usable CUDA device: {exc}") from None
        number = int(index) if index else 0
        if number >= count:
            raise Unsupported(f"{device} does not exist: this machine has {count} CUDA device(s)")
        self.cuda_device = cupy.cuda.Device(number)
        self.cuda_device.use()
        self.xp = cupy
        self._as_strided = as_strided

    def as_strided(self, x: Any, shape: tuple[int, ...], strides: tuple[int, ...]) -> Any:
        """A view of ``x`` (from its first element) with the given shape and byte strides."""
        return self._as_strided(x, shape=shape, strides=strides)

    def asarray(self, value: Any, dtype: Any) -> Any:
        return self.xp.asarray(numpy.asarray(value), dtype=dtype)

    def to_numpy(self, value: Any) -> numpy.ndarray:
        return value.get() if self.is_gpu else numpy.asarray(value)

    def synchronize(self) -> None:
        if self.is_gpu:
            self.cuda_device.synchronize()

    def random(self, seed: int) -> Random:
        return Random(self, seed)

    def memory_bytes(self) -> int | None:
        """Bytes held by CuPy's memory pool (which keeps every block it ever allocated)."""
        if not self.is_gpu:
            return None
        return int(self.xp.get_default_memory_pool().total_bytes())

    def raise_if_oom(self, exc: BaseException) -> None:
        """Turn the device's out-of-memory errors (CuPy's, cuBLAS's) into :class:`OutOfMemory`."""
        text = str(exc)
        if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "ALLOC_FAILED" in text:
            raise OutOfMemory(text.splitlines()[0] if text else type(exc).__name__) from exc


class Random:
    """Random numbers made on the device (dropout masks), from a seed."""

    def __init__(self, backend: Backend, seed: int):
        self.backend = backend
        if backend.is_gpu:
            self._state = backend.xp.random.RandomState(seed)
        else:
            self._state = numpy.random.default_rng(seed)

    def uniform_(self, out: Any) -> None:
        """Fill ``out`` with U[0, 1) in its own dtype."""
        if self.backend.is_gpu:
            out[...] = self._state.random_sample(out.shape, dtype=out.dtype)
        else:
            self._state.random(out=out, dtype=out.dtype)
