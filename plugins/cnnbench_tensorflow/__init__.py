"""The TensorFlow adapter for cnnbench (``--frameworks tensorflow``).

Quickstart::

    pip install "cnnbench[tensorflow]"
    cnnbench run --framework tensorflow --network alexnet --batch-size 32 --device cpu
    cnnbench compare --frameworks torch,tensorflow --network alexnet --device cpu --kernels vendor,native
    cnnbench compare --frameworks tensorflow --network lenet --precision fp32,bf16 --option xla=on
    cnnbench verify --frameworks caffe,tensorflow --network lenet

The step is one ``tf.function`` (forward, mean softmax cross-entropy, gradients of every variable);
``--option xla=on`` compiles it with XLA. On the CPU ``vendor`` is oneDNN and ``native`` TensorFlow's
Eigen kernels (``TF_ENABLE_ONEDNN_OPTS``, set by the worker before TensorFlow is imported); on CUDA
only ``vendor`` (cuDNN) exists. TensorFlow and PyTorch never share a process: each cell has its own
worker, and a TensorFlow that needs another NumPy can live in its own interpreter
(``cnnbench env create tensorflow``).

In Python, the network without the harness::

    import tensorflow as tf
    from cnnbench.spec.catalog import resolve_network
    from cnnbench_tensorflow.model import SpecNet
    from cnnbench_tensorflow.step import make_train_step

    net = SpecNet(resolve_network("lenet"), layout="NHWC", dtype=tf.float32)
    step = make_train_step(net)
    loss, grads = step(tf.random.normal([8, 28, 28, 1]), tf.zeros([8], tf.int32))

Modules: ``model`` (the spec as TensorFlow ops, layouts, canonical weight conversion), ``step`` (the
compiled training step and verify's forward and backward), ``adapter`` (the contract). TensorFlow is
imported only by ``model`` and ``step`` and inside the adapter's worker-side methods, so listing and
planning never pay for it.
"""

from __future__ import annotations

from cnnbench import hookimpl


@hookimpl
def cnnbench_register_adapters():
    from cnnbench_tensorflow.adapter import TensorFlowAdapter

    return [TensorFlowAdapter]
