"""Presets: the paper's experiments as one command each, scaled to the machine, saying what they answer."""

from __future__ import annotations

import argparse
import json

import pytest

from cnnbench.cli import build_parser, given_dests
from cnnbench.config import UsageError
from cnnbench.planning.presets import PRESETS, Machine, apply_preset

from conftest import FAST

CPU2 = Machine(gpu=False, logical_cpus=2)
GPU = Machine(gpu=True, logical_cpus=32)


def compare_args(*argv: str) -> tuple[argparse.Namespace, set[str]]:
    """The parsed arguments and the options given explicitly."""
    return build_parser().parse_args(["compare", *argv]), given_dests(["compare", *argv])


def test_every_figure_of_the_paper_has_a_preset():
    figures = {p.figure for p in PRESETS.values()}
    assert figures == {"Fig. 2", "Fig. 3", "Fig. 4", "Fig. 5", "Fig. 6", "Fig. 7", "Fig. 8", "Sec. VI.B",
                       "beyond the paper"}
    assert set(PRESETS) == {"kernels", "frameworks", "cpu-libraries", "layers", "batch", "hyperthreading", "ecc",
                            "modern", "dvfs"}


def test_the_modern_preset_compares_frameworks_on_resnet50_and_mobilenet_v2(capsys):
    args, defaults = compare_args("--preset", "modern")
    apply_preset(args, "compare", defaults, CPU2)
    assert (args.networks, args.batch_size, args.device, args.precision) == ("resnet50,mobilenet_v2", "8", "cpu", "fp32")
    args, defaults = compare_args("--preset", "modern")
    apply_preset(args, "compare", defaults, GPU)
    assert (args.batch_size, args.device, args.precision) == ("128", "cuda", "fp32,fp16")
    assert "preset modern (beyond the paper): How do the frameworks compare on the CNNs trained today" in \
        capsys.readouterr().err


def test_the_paper_settings_on_a_gpu_and_scaled_down_on_a_small_cpu(capsys):
    args, defaults = compare_args("--preset", "batch")
    apply_preset(args, "compare", defaults, GPU)
    assert (args.frameworks, args.networks, args.batch_size, args.device) == ("caffe", "alexnet",
                                                                              "8,16,32,64,128,256", "cuda")
    args, defaults = compare_args("--preset", "batch")
    apply_preset(args, "compare", defaults, CPU2)
    assert (args.batch_size, args.device) == ("8,16,32,64", "cpu")
    err = capsys.readouterr().err
    assert "preset batch (Fig. 6 of the paper): How do power and energy per image change with the batch size" in err
    assert "that is: cnnbench compare --frameworks caffe --networks alexnet --batch-size 8,16,32,64 --device cpu" in err
    args, defaults = compare_args("--preset", "frameworks")
    apply_preset(args, "compare", defaults, GPU)
    assert (args.networks, args.precision, args.batch_size) == ("alexnet,overfeat,vgg_a,googlenet", "fp32,fp16", "128")
    args, defaults = compare_args("--preset", "frameworks")
    apply_preset(args, "compare", defaults, CPU2)
    assert (args.networks, args.precision, args.batch_size) == ("alexnet", "fp32,bf16", "32")
    args, defaults = compare_args("--preset", "hyperthreading")
    apply_preset(args, "compare", defaults, CPU2)
    assert args.threads == "physical,logical" and args.device == "cpu"


def test_flags_given_override_the_preset():
    args, defaults = compare_args("--preset", "batch", "--frameworks", "torch", "--batch-size", "2,4")
    apply_preset(args, "compare", defaults, CPU2)
    assert (args.frameworks, args.batch_size, args.networks) == ("torch", "2,4", "alexnet")
    # a flag given with its default value is still given: the preset's four networks do not replace it
    args, given = compare_args("--preset", "frameworks", "--network", "alexnet", "--precision", "fp32")
    apply_preset(args, "compare", given, GPU)
    assert (args.networks, args.precision, args.batch_size) == ("alexnet", "fp32", "128")


def test_given_dests_tell_a_default_from_a_flag():
    assert given_dests(["compare", "--network", "alexnet", "--json"]) == {"networks", "json"}
    assert given_dests(["compare"]) == set()
    assert given_dests(["layers", "--framework", "torch", "--warmup", "2"]) == {"framework", "warmup"}


@pytest.mark.parametrize("name, here, message", [
    ("nope", CPU2, "unknown preset 'nope'; valid choices: kernels, frameworks, cpu-libraries, layers, batch, "
                   "hyperthreading, ecc, modern, dvfs"),
    ("ecc", CPU2, "preset 'ecc' needs an NVIDIA GPU (ECC is a setting of the GPU's memory); none here"),
    ("layers", CPU2, "preset 'layers' is for 'cnnbench layers': cnnbench layers --preset layers"),
    ("dvfs", GPU, "preset 'dvfs' is for 'cnnbench dvfs'"),
])
def test_bad_presets(name, here, message):
    args, defaults = compare_args("--preset", name)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_preset(args, "compare", defaults, here)


def test_a_preset_runs_end_to_end_and_is_listed(cli, fake_site):
    proc = cli("compare", "--preset", "batch", "--frameworks", "fake", "--network", "lenet", "--batch-size", "1,2",
               "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "preset batch (Fig. 6 of the paper)" in proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [(r["framework"], r["network"], r["batch_size"], r["device"]) for r in results] == [
        ("fake", "lenet", 1, "cpu"), ("fake", "lenet", 2, "cpu")]
    listed = json.loads(cli("list", "--json").stdout)["presets"]
    assert [p["name"] for p in listed] == list(PRESETS)
    assert "batch (Fig. 6, cnnbench compare): How do power" in cli("list").stdout
    bad = cli("compare", "--preset", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("cnnbench: error: unknown preset 'nope'")


def test_layers_preset_and_framework_required_without_it(cli):
    missing = cli("layers", "--network", "lenet")
    assert missing.returncode == 2 and "--framework is required (or --preset layers)" in missing.stderr
    wrong = cli("layers", "--preset", "batch")
    assert wrong.returncode == 2 and "preset 'batch' is for 'cnnbench compare'" in wrong.stderr
    proc = cli("layers", "--preset", "layers", "--network", "lenet", "--batch-size", "2", "--json", "--meters", "none",
               *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "preset layers (Fig. 5 of the paper)" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["framework"] == "caffe" and report["network"] == "lenet"
