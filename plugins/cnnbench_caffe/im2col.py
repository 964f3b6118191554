"""Sliding-window geometry, im2col and col2im (Caffe's ``util/im2col.cpp``).

Layouts: images are ``[N, C, H, W]``; the column matrix is ``[C, kh, kw, N, oh, ow]``, i.e. a
``[C*kh*kw, N*oh*ow]`` matrix whose rows are ordered like the weights' ``[C, kh, kw]`` axes. Caffe
lowers one image at a time; here the whole batch goes into one matrix, so that a convolution is one
large GEMM (per-image GEMMs measured 2-4x slower through NumPy's BLAS on alexnet's layers).

im2col is a single strided copy: a view of the zero-padded input with the shape of the column matrix.
col2im, its adjoint, must add overlapping windows, so it loops over the kernel offsets — kh*kw adds,
each vectorised over the whole batch, all channels and all output positions — clipped to the image as
Caffe's bounds checks do, so no padded gradient buffer is needed. Pooling walks the same offsets.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from cnnbench_caffe.backend import Backend


def conv_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of a convolution along one axis (Caffe: always rounded down)."""
    return (size + 2 * pad - kernel) // stride + 1


def pool_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """Output length of a pooling along one axis, Caffe's way (``pooling_layer.cpp``)."""
    span = size + 2 * pad - kernel
    if not ceil or span < 0:
        return span // stride + 1
    n = -(-span // stride) + 1
    # Caffe: with padding, the last window must start inside the image (or the top/left pad).
    if pad > 0 and (n - 1) * stride >= size + pad:
        n -= 1
    return n


class Offset(NamedTuple):
    """One kernel offset (i, j) and where it lands: output positions ``out`` read input ``image``."""

    index: int  # i * kw + j: Caffe's order, which decides which of equal maxima wins
    out: tuple[slice, slice]
    image: tuple[slice, slice]


def _axis_range(i: int, stride: int, pad: int, size: int, out: int) -> tuple[slice, slice] | None:
    """Output positions y with input position i + stride*y - pad inside [0, size), and those inputs."""
    first = max(0, -(-(pad - i) // stride))
    stop = min(out, (size - 1 + pad - i) // stride + 1)
    if stop <= first:
        return None
    start = i + stride * first - pad
    return slice(first, stop), slice(start, start + stride * (stop - first - 1) + 1, stride)


def offsets(kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int], in_hw: tuple[int, int],
            out_hw: tuple[int, int]) -> list[Offset]:
    """Every kernel offset that touches the image, with its clipped output and input slices."""
    found = []
    for i in range(kernel[0]):
        rows = _axis_range(i, stride[0], pad[0], in_hw[0], out_hw[0])
        for j in range(kernel[1]):
            cols = _axis_range(j, stride[1], pad[1], in_hw[1], out_hw[1])
            if rows and cols:
                found.append(Offset(i * kernel[1] + j, (rows[0], cols[0]), (rows[1], cols[1])))
    return found


class Padded:
    """A batch of images inside a zero border, allocated once (the border is never written again);
    without padding it is the image itself and loading costs nothing."""

    def __init__(self, backend: Backend, image: Any, pad: tuple[int, int]):
        n, c, h, w = image.shape
        self.xp = backend.xp
        self.image = image
        if pad == (0, 0):
            self.buffer = image
            return
        self.buffer = self.xp.zeros((n, c, h + 2 * pad[0], w + 2 * pad[1]), image.dtype)
        self.interior = self.buffer[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + w]

    def load(self) -> Any:
        if self.buffer is not self.image:
            self.xp.copyto(self.interior, self.image)
        return self.buffer


def im2col(backend: Backend, padded: Any, col: Any, kernel: tuple[int, int], stride: tuple[int, int],
           out_hw: tuple[int, int]) -> None:
    """``col[c, i, j, n, y, x] = padded[n, c, i + sh*y, j + sw*x]``, in one strided copy."""
    n, c = padded.shape[:2]
    sn, sc, sy, sx = padded.strides
    view = backend.as_strided(
        padded, (c, kernel[0], kernel[1], n, out_hw[0], out_hw[1]),
        (sc, sy, sx, sn, sy * stride[0], sx * stride[1]),
    )
    backend.xp.copyto(col.reshape(view.shape), view)


def col2im(backend: Backend, col: Any, image: Any, kernel: tuple[int, int], where: list[Offset],
           out_hw: tuple[int, int]) -> None:
    """The adjoint of :func:`im2col` into the unpadded ``image`` (zeroed here): every column entry
    whose window position lies inside the image is added to it; the padding's share is dropped."""
    xp = backend.xp
    n, c = image.shape[:2]
    image.fill(0)
    cols = col.reshape(c, kernel[0] * kernel[1], n, out_hw[0], out_hw[1])
    # [C, N, H, W]: the column matrix's order of image axes, so each add is a plain 4-D add.
    target = image.transpose(1, 0, 2, 3)
    for offset in where:
        window = target[(slice(None), slice(None), *offset.image)]
        xp.add(window, cols[(slice(None), offset.index, slice(None), *offset.out)], out=window)
