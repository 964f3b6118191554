"""The Caffe-style native engine for cnnbench (``--framework caffe``): no framework, just arrays.

Caffe's own training path, layer by layer — convolution as im2col + GEMM (col2im backward, groups),
max/average pooling with Caffe's rounding and divisor, LRN across channels, concat, InnerProduct,
ReLU, dropout, softmax cross-entropy — on NumPy (the CPU's BLAS) or, with CuPy installed, on CUDA
(cuBLAS: Caffe's "native" GPU path of the paper's Fig. 2). It needs nothing beyond ``pip install .``,
so a bare install can benchmark, and it is the float64 reference of ``cnnbench verify``.

Quickstart::

    cnnbench run --framework caffe --kernels native --network alexnet --batch-size 32 --device cpu
    cnnbench run --framework caffe --kernels native --network alexnet --device cuda   # pip install cupy-cuda12x
    cnnbench compare --frameworks caffe,torch --kernels native --network lenet
    cnnbench verify --frameworks caffe,torch --network lenet    # this engine in float64 is the reference

``native`` is its only kernel family (the default, ``vendor``, is cuDNN/oneDNN: a row marked unsupported).

In Python, the engine without the harness::

    from cnnbench.spec.catalog import resolve_network
    from cnnbench_caffe.backend import Backend
    from cnnbench_caffe.engine import Net

    net = Net(resolve_network("lenet"), batch=8, backend=Backend("cpu"), dtype="float64", train=False)
    net.init_weights(seed=0)
    net.synthetic_input(seed=1)
    net.forward(); net.backward()
    net.loss, net.gradients()["conv1"]["weight"].shape      # (..., (20, 1, 5, 5))

Modules: ``backend`` (NumPy or CuPy as ``xp``), ``im2col`` (window geometry, im2col/col2im),
``layers`` (one class per layer type), ``engine`` (the net and its step), ``adapter`` (the contract).
"""

from __future__ import annotations

from cnnbench import hookimpl


@hookimpl
def cnnbench_register_adapters():
    from cnnbench_caffe.adapter import CaffeAdapter

    return [CaffeAdapter]
