"""The PyTorch adapter for cnnbench (``--frameworks torch``).

Registered through the same hook any third-party adapter uses; PyTorch itself is imported only inside
the adapter's worker-side methods, so listing and planning never pay for ``import torch``.
"""

from __future__ import annotations

from cnnbench import hookimpl


@hookimpl
def cnnbench_register_adapters():
    from cnnbench_torch.adapter import TorchAdapter

    return [TorchAdapter]
