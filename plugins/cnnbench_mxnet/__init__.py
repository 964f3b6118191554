"""The MXNet (Gluon) adapter for cnnbench (``--frameworks mxnet``).

Quickstart. MXNet 1.9.1 is MXNet's last release (the project is in the Apache Attic) and needs
``numpy<1.24``, which other frameworks in the same comparison cannot live with, so it runs in an
environment of its own::

    cnnbench env create mxnet          # a virtual environment: cnnbench + mxnet==1.9.1 + numpy<1.24
    cnnbench compare --frameworks torch,mxnet --network lenet
    cnnbench verify --frameworks caffe,mxnet --network lenet

Once the environment exists, the host runs MXNet's workers with its interpreter; nothing else changes.
MXNet is imported only inside the adapter's worker-side methods, and the host-side availability check
reads package metadata only, so listing and planning work in an interpreter without MXNet.
"""

from __future__ import annotations

from cnnbench import hookimpl


@hookimpl
def cnnbench_register_adapters():
    from cnnbench_mxnet.adapter import MXNetAdapter

    return [MXNetAdapter]
