"""``cnnbench verify``: every adapter against the float64 Caffe-style reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnbench.spec.catalog import resolve_network
from cnnbench.execution.verify import make_inputs, relative_error


def test_inputs_are_seeded_and_in_the_canonical_layout():
    spec = resolve_network("lenet")
    a, b = make_inputs(spec, 3, seed=1), make_inputs(spec, 3, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["data"].shape == (3, 1, 28, 28) and a["data"].dtype == np.float64
    assert a["conv2/weight"].shape == (50, 20, 5, 5) and a["fc1/weight"].shape == (500, 800)
    assert a["labels"].max() < 10
    assert not np.array_equal(a["data"], make_inputs(spec, 3, seed=2)["data"])


def test_relative_error_is_normwise():
    ref = np.array([0.0, 3.0, -4.0])
    assert relative_error(ref + [1e-6, 0, 0], ref) == pytest.approx(2e-7)
    assert relative_error(np.zeros(2), np.zeros(3)) == float("inf")
    assert relative_error(np.array([np.nan, 1.0, 1.0]), ref) == float("inf")


def onednn_bf16() -> bool:
    torch = pytest.importorskip("torch")
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_torch_matches_the_reference_in_fp32_and_bf16(cli):
    for precision, tolerance in (("fp32", 1e-2), ("bf16", 2.5e-1)):
        proc = cli("verify", "--frameworks", "caffe,torch", "--network", "lenet", "--precision", precision, "--json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        caffe, torch = doc["results"]
        if precision == "bf16" and not onednn_bf16():
            # verify runs each framework's first kernel family; oneDNN's bf16 needs AVX-512 BF16 or AMX
            assert caffe["status"] == "ok" and torch["status"] == "unsupported", torch
            assert "oneDNN has no bf16 kernels" in torch["reason"]
            continue
        assert caffe["status"] == torch["status"] == "ok"
        assert torch["tolerance"] == tolerance
        assert set(torch["errors"]) == {"loss", "logits", "conv1/weight", "conv1/bias", "conv2/weight",
                                        "conv2/bias", "fc1/weight", "fc1/bias", "fc2/weight", "fc2/bias"}
        assert 0 < max(torch["errors"].values()) <= tolerance
        assert all(v == 0 for v in caffe["errors"].values())


def test_one_transposed_weight_is_caught(cli, fake_site):
    proc = cli("verify", "--frameworks", "torch,torch-transposed", "--network", "lenet", "--json")
    assert proc.returncode == 1, proc.stderr
    torch, transposed = json.loads(proc.stdout)["results"]
    assert torch["status"] == "ok"
    assert transposed["status"] == "mismatch"
    # conv2's own gradient, the logits and the loss all move far past the fp32 tolerance
    for name in ("loss", "logits", "conv2/weight", "fc1/weight"):
        assert transposed["errors"][name] > 10 * transposed["tolerance"], name
    assert torch["errors"]["conv2/weight"] < transposed["tolerance"]


def test_a_wrong_adapter_fails_and_an_unsupported_one_is_a_status(cli, fake_site):
    proc = cli("verify", "--frameworks", "torch,fake", "--network", "lenet", env={"CNNBENCH_FAKE_MODE": "wrong"})
    assert proc.returncode == 1, proc.stderr
    assert "fake: mismatch:" in proc.stdout and "  !" in proc.stdout
    proc = cli("verify", "--frameworks", "fake", "--network", "lenet", "--json")
    assert proc.returncode == 0, proc.stderr
    (fake,) = json.loads(proc.stdout)["results"]
    assert fake["status"] == "unsupported" and "does not implement verify" in fake["reason"]
