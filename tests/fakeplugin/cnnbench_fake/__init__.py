"""A third-party adapter plugin used by the tests, installed through a real entry point (see conftest).

Its behaviour is chosen by the environment variable CNNBENCH_FAKE_MODE, which the host passes on to
workers: ``sleep`` (default; each step sleeps CNNBENCH_FAKE_STEP_S), ``print`` (prints to stdout
inside the step), ``stderr`` (floods stderr with undecodable bytes), ``raise``, ``unsupported``,
``oom``, ``segfault``, ``hang``, ``exit``, ``wrong`` (verify returns wrong numbers), ``alloc`` (one
allocation of CNNBENCH_FAKE_BYTES, default 4 GiB, as a framework's allocator makes it), ``shared`` (touches
shared memory, which no data-segment limit counts, 32 MiB a step up to CNNBENCH_FAKE_BYTES), ``spawn``
(starts a child process, writes its pid to CNNBENCH_FAKE_PIDFILE, then hangs).
"""

from __future__ import annotations

import os
import time

from cnnbench import hookimpl
from cnnbench.adapter import Capabilities, FrameworkAdapter, OutOfMemory, Unsupported


class FakeAdapter(FrameworkAdapter):
    name = "fake"
    package = "cnnbench_fake"
    module = "cnnbench_fake"
    install_hint = "pip install cnnbench-fake"

    @classmethod
    def availability(cls):
        from cnnbench.adapter import Availability

        return Availability(True, "0.1", None, cls.install_hint)

    @classmethod
    def capabilities(cls, device_kind):
        return Capabilities(precisions=("fp32",), kernels=("vendor",), threads=False,
                            unsupported={"bf16": "the fake framework computes in fp32 only"})

    def prepare(self, config):
        self.mode = os.environ.get("CNNBENCH_FAKE_MODE", "sleep")
        self.step_s = float(os.environ.get("CNNBENCH_FAKE_STEP_S", "0.002"))
        if self.mode == "unsupported":
            raise Unsupported("the fake framework refuses this configuration")

    def build(self, spec, config):
        return {"steps": 0}

    def step(self, model):
        model["steps"] += 1
        mode = self.mode
        if mode == "print":
            print("noise on stdout that must not break the protocol")
        elif mode == "raise":
            raise RuntimeError("fake step failed")
        elif mode == "oom":
            raise OutOfMemory("fake device is full")
        elif mode == "segfault":
            import ctypes

            ctypes.string_at(0)
        elif mode == "hang":
            time.sleep(3600)
        elif mode == "exit":
            os._exit(3)
        elif mode == "spawn":
            import subprocess
            import sys

            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            with open(os.environ["CNNBENCH_FAKE_PIDFILE"], "w") as f:
                f.write(f"{os.getpid()} {child.pid}")
            time.sleep(3600)
        elif mode == "alloc":
            model["hold"] = bytearray(int(os.environ.get("CNNBENCH_FAKE_BYTES", 4 << 30)))
        elif mode == "shared":
            import mmap

            chunk = 32 << 20
            if len(model.setdefault("shared", [])) * chunk < int(os.environ.get("CNNBENCH_FAKE_BYTES", 4 << 30)):
                block = mmap.mmap(-1, chunk, flags=mmap.MAP_SHARED)
                block.write(b"\1" * chunk)  # touched, so resident
                model["shared"].append(block)
        elif mode == "stderr" and model["steps"] == 1:
            # undecodable bytes, and more than a pipe buffer of them
            os.write(2, b"\xff\xfe not utf-8 \x80\n" * 20000)
        time.sleep(self.step_s)

    def synchronize(self, model):
        pass

    def verify(self, spec, config, weights, data, labels):
        """Mode ``wrong``: plausible shapes, wrong numbers (what verify must catch); else unsupported."""
        if os.environ.get("CNNBENCH_FAKE_MODE") != "wrong":
            return super().verify(spec, config, weights, data, labels)
        import numpy as np

        from cnnbench.adapter import VerifyOutput

        grads = {layer: {kind: np.zeros_like(array) for kind, array in kinds.items()} for layer, kinds in weights.items()}
        return VerifyOutput(0.0, np.zeros((len(labels), spec.num_classes)), grads)


class UnavailableAdapter(FakeAdapter):
    name = "fake-missing"
    package = "cnnbench_fake_framework_that_is_not_installed"
    module = None
    install_hint = "pip install cnnbench-fake-framework"

    availability = classmethod(FrameworkAdapter.availability.__func__)


def _transposed_torch():
    """PyTorch with one classic bug: conv2's kernel loaded with its spatial axes swapped (kw, kh)."""
    from cnnbench_torch.adapter import TorchAdapter

    class TransposedTorch(TorchAdapter):
        name = "torch-transposed"

        def verify(self, spec, config, weights, data, labels):
            weights = {layer: dict(kinds) for layer, kinds in weights.items()}
            weights["conv2"]["weight"] = weights["conv2"]["weight"].transpose(0, 1, 3, 2).copy()
            return super().verify(spec, config, weights, data, labels)

    return TransposedTorch


@hookimpl
def cnnbench_register_adapters():
    return [FakeAdapter, UnavailableAdapter, _transposed_torch()]
