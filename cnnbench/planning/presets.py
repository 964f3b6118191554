"""Presets: the experiments of the paper (../shared/paper.md, Figs. 2-8 and the ECC section) as settings of
one command, scaled to the machine they run on.

The paper ran AlexNet, OverFeat, VGG-A and GoogLeNet at batch 128 on a 16-core Xeon and K20m / Titan X
GPUs, and Sections V-VI on Caffe. On a GPU the presets use those settings; on a CPU they keep AlexNet and
smaller batches where a machine has few cores, so each finishes in minutes rather than hours. A flag the
user gives always wins over the preset's value for it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable

from cnnbench.config import UsageError

PAPER_NETWORKS = "alexnet,overfeat,vgg_a,googlenet"


@dataclass(frozen=True)
class Machine:
    gpu: bool
    logical_cpus: int

    @property
    def cpu_batch(self) -> str:
        # The paper's 128 on a 16-core CPU; a few cores would take minutes per iteration of AlexNet at 128.
        return "128" if self.logical_cpus >= 16 else "32"


@dataclass(frozen=True)
class Preset:
    name: str
    figure: str
    question: str
    command: str
    settings: Callable[[Machine], dict[str, str]]
    #: Why it cannot run without an NVIDIA GPU (None: it can).
    needs_gpu: str | None = None


def _kernels(m: Machine) -> dict[str, str]:
    if m.gpu:
        return {"networks": PAPER_NETWORKS, "batch_size": "128", "device": "cuda", "kernels": "vendor,native"}
    return {"networks": "alexnet", "batch_size": m.cpu_batch, "device": "cpu", "kernels": "vendor,native"}


def _frameworks(m: Machine) -> dict[str, str]:
    if m.gpu:
        return {"networks": PAPER_NETWORKS, "batch_size": "128", "device": "cuda", "precision": "fp32,fp16"}
    # no GPU: bf16 is the CPU's half precision (fp16 training on CPUs is rarely supported, and slow)
    return {"networks": "alexnet", "batch_size": m.cpu_batch, "device": "cpu", "precision": "fp32,bf16"}


def _cpu_libraries(m: Machine) -> dict[str, str]:
    return {"networks": "alexnet", "batch_size": m.cpu_batch, "device": "cpu", "kernels": "vendor,native"}


def _layers(m: Machine) -> dict[str, str]:
    return {"framework": "caffe", "network": "alexnet", "batch_size": "128" if m.gpu else m.cpu_batch,
            "device": "cuda" if m.gpu else "cpu"}


def _batch(m: Machine) -> dict[str, str]:
    if m.gpu:
        return {"frameworks": "caffe", "networks": "alexnet", "batch_size": "8,16,32,64,128,256", "device": "cuda"}
    sizes = "8,16,32,64,128,256" if m.logical_cpus >= 16 else "8,16,32,64"
    return {"frameworks": "caffe", "networks": "alexnet", "batch_size": sizes, "device": "cpu"}


def _hyperthreading(m: Machine) -> dict[str, str]:
    # Caffe-style native kernels (im2col + BLAS) and a vendor library (oneDNN in torch), as the paper
    # compared OpenBLAS and MKL builds of Caffe.
    return {"frameworks": "caffe,torch", "networks": "alexnet", "batch_size": m.cpu_batch, "device": "cpu",
            "threads": "physical,logical"}


def _modern(m: Machine) -> dict[str, str]:
    # Issue 17: the networks that training benchmarks use today (ResNet-50 is MLPerf Training's) next to a
    # mobile one built from depthwise convolutions; every installed framework, as the frameworks preset.
    if m.gpu:
        return {"networks": "resnet50,mobilenet_v2", "batch_size": "128", "device": "cuda", "precision": "fp32,fp16"}
    return {"networks": "resnet50,mobilenet_v2", "batch_size": "32" if m.logical_cpus >= 16 else "8",
            "device": "cpu", "precision": "fp32"}


def _ecc(m: Machine) -> dict[str, str]:
    return {"networks": "alexnet", "batch_size": "128", "device": "cuda"}


def _dvfs(m: Machine) -> dict[str, str]:
    return {"framework": "caffe", "network": "alexnet", "batch_size": "128", "device": "cuda"}


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("kernels", "Fig. 2", "Native kernels (im2col + GEMM) or the vendor library (cuDNN on a GPU, oneDNN on a "
           "CPU): which trains faster, and with less energy per image?", "compare", _kernels),
    Preset("frameworks", "Fig. 3", "Which framework trains fastest and with the least energy per image, in single "
           "and in half precision?", "compare", _frameworks),
    Preset("cpu-libraries", "Fig. 4", "On the CPU, which framework and kernel library (oneDNN or im2col + BLAS) "
           "trains fastest and with the least energy per image?", "compare", _cpu_libraries),
    Preset("layers", "Fig. 5", "Which layer types take the time and the energy of a training iteration?", "layers",
           _layers),
    Preset("batch", "Fig. 6", "How do power and energy per image change with the batch size, and where does a "
           "larger batch stop paying?", "compare", _batch),
    Preset("hyperthreading", "Fig. 7", "Does one thread per hardware thread (hyper-threading) beat one per core, "
           "in time and in energy?", "compare", _hyperthreading),
    Preset("ecc", "Sec. VI.B", "Does ECC on the GPU's memory cost time, energy or memory? Run once with ECC on and "
           "once off (nvidia-smi -e 0|1 as root, then a reboot), then: cnnbench report RUN --baseline OTHER",
           "compare", _ecc, needs_gpu="ECC is a setting of the GPU's memory"),
    Preset("modern", "beyond the paper", "How do the frameworks compare on the CNNs trained today, ResNet-50 and "
           "MobileNetV2 (batch norm, residual additions, depthwise convolutions)?", "compare", _modern),
    Preset("dvfs", "Fig. 8", "Which memory / graphics clock pair trains with the least energy per image (the "
           "energy valley)?", "dvfs", _dvfs, needs_gpu="it sweeps the GPU's clocks (the CPU side: cnnbench dvfs --cpu)"),
)}


def machine() -> Machine:
    from cnnbench.planning.cells import default_device

    return Machine(gpu=default_device() == "cuda", logical_cpus=len(os.sched_getaffinity(0))
                   if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def preset_lines() -> list[str]:
    """One line per preset, for ``cnnbench list``."""
    return [f"{p.name} ({p.figure}, cnnbench {p.command}): {p.question}" for p in PRESETS.values()]


def apply_preset(args, command: str, given: set[str] | frozenset[str],
                 here: Machine | None = None) -> Preset | None:
    """Fill ``args`` (a request, or anything with its attributes) with the preset's settings where the user
    gave no value (``given``: the names of the values given); say what it answers."""
    name = getattr(args, "preset", None)
    if not name:
        return None
    preset = PRESETS.get(name)
    if preset is None:
        raise UsageError(f"unknown preset '{name}'; valid choices: {', '.join(PRESETS)}")
    if preset.command != command:
        raise UsageError(f"preset '{name}' is for 'cnnbench {preset.command}': cnnbench {preset.command} --preset {name}")
    here = here or machine()
    if preset.needs_gpu and not here.gpu:
        raise UsageError(f"preset '{name}' needs an NVIDIA GPU ({preset.needs_gpu}); none here")
    flags = []
    for attr, value in preset.settings(here).items():
        if attr not in given:
            setattr(args, attr, value)
        flags.append(f"--{attr.replace('_', '-')} {getattr(args, attr)}")
    source = preset.figure if preset.figure.startswith("beyond") else f"{preset.figure} of the paper"
    print(f"cnnbench: preset {name} ({source}): {preset.question}", file=sys.stderr)
    print(f"cnnbench: that is: cnnbench {command} {' '.join(flags)}", file=sys.stderr)
    return preset
