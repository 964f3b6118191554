"""bench/gpu/acceptance.sh, the GPU acceptance run: its plan fits the device budget, it refuses to start
without a GPU or with a step that would change the machine, and every command line it runs is valid
(its CPU rehearsal runs them all here)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu" / "acceptance.sh"
BUDGET_S = 540
STEPS = ["gpu-info", "gpu-query", "ecc", "list", "idle", "fig2", "fig3", "fig3-jax", "verify", "layers",
         "nvml-window", "dvfs-plan", "report-fig2", "report-fig3", "report-fig3-jax", "csv-fig2", "csv-fig3",
         "csv-fig3-jax", "report-nvml-window", "summary"]
#: nvidia-smi options that set something (nvidia-smi -h, "DEVICE MODIFICATION OPTIONS" and the sub-commands).
NVSMI_SETTERS = {"-pm", "--persistence-mode", "-e", "--ecc-config", "-p", "--reset-ecc-errors", "-c",
                 "--compute-mode", "-r", "--gpu-reset", "-vm", "--virt-mode", "-ac", "--applications-clocks",
                 "-rac", "--reset-applications-clocks", "-acp", "--applications-clocks-permission", "-pl",
                 "--power-limit", "-cc", "--cuda-clocks", "-am", "--accounting-mode", "-caa",
                 "--clear-accounting-apps", "--auto-boost-default", "--auto-boost-permission", "-lgc",
                 "--lock-gpu-clocks", "-rgc", "--reset-gpu-clocks", "-lmc", "--lock-memory-clocks", "-rmc",
                 "--reset-memory-clocks", "-mig", "--multi-instance-gpu", "-gtt", "--gpu-target-temperature",
                 "-dm", "--driver-model", "-fdm", "--force-driver-model", "mig", "clocks", "drain", "nvlink",
                 "conf-compute", "vgpu", "topo"}
NVSMI_READ_ONLY = {"-L", "-q", "-d", "--query-gpu", "--format", "-i"}


def run_script(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
               script: Path = SCRIPT, timeout: float = 120) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if key != "OUT"}
    base["PYTHON"] = sys.executable
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})}, cwd=cwd)


def plan_rows(stdout: str) -> list[tuple[str, int, int, str]]:
    rows = []
    for line in stdout.splitlines()[1:]:
        match = re.match(r"^(\S+)\s+(\d+)\s+(\d+)\s+(.*)$", line)
        if match:
            rows.append((match[1], int(match[2]), int(match[3]), match[4]))
    return rows


def script_lines() -> list[str]:
    """The script's logical lines (continuations joined), comments and blank lines left out."""
    joined = SCRIPT.read_text().replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_plan_lists_every_step_and_a_total_within_the_budget(tmp_path):
    proc = run_script("--plan", env={"OUT": str(tmp_path / "out")}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = plan_rows(proc.stdout)
    assert [row[0] for row in rows] == STEPS
    total = int(re.search(r"^total: (\d+) s$", proc.stdout, re.M)[1])
    assert total == sum(row[1] for row in rows)
    assert total <= BUDGET_S
    assert all(limit >= estimate for _, estimate, limit, _ in rows)
    commands = {name: command for name, _, _, command in rows}
    assert "compare --frameworks torch,caffe --kernels vendor,native" in commands["fig2"]
    assert "compare --frameworks torch,caffe --precision fp32,fp16,bf16,tf32" in commands["fig3"]
    assert "compare --frameworks jax --precision fp32,fp16,bf16,tf32" in commands["fig3-jax"]
    for name in ("fig2", "fig3", "fig3-jax", "layers", "nvml-window"):
        assert "--network alexnet" in commands[name] or "--networks alexnet" in commands[name]
        assert "--batch-size 128" in commands[name] and "--device cuda" in commands[name]
    assert "verify --frameworks caffe,torch" in commands["verify"] and "--device cuda" in commands["verify"]
    assert re.search(r"--min-time (\d+)", commands["nvml-window"])[1] >= "30"
    assert "--repeats 1 --meters nvml" in commands["nvml-window"]
    assert commands["ecc"] == "nvidia-smi -q -d ECC"
    # a plan runs and writes nothing
    assert list(tmp_path.iterdir()) == []


def test_no_gpu_exits_3_in_one_line_and_writes_nothing(tmp_path):
    if shutil.which("nvidia-smi", path="/usr/bin:/bin"):
        pytest.skip("this machine has nvidia-smi")
    out = tmp_path / "out"
    proc = run_script("--out", str(out), env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "no GPU here" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def fake_nvidia_smi(folder: Path, output: str, code: int) -> str:
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '%s\\n' {shlex.quote(output)}\nexit {code}\n")
    tool.chmod(0o755)
    return f"{folder}:/usr/bin:/bin"


@pytest.mark.parametrize("listing, code, said", [
    ("No devices were found", 6, "nvidia-smi -L lists none (No devices were found)"),
    # a driver that lists a GPU, but a PyTorch without CUDA (this machine's): still no GPU to measure
    ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)", 0, "sees no CUDA device"),
])
def test_a_gpu_that_nothing_can_use_exits_3_and_writes_nothing(tmp_path, listing, code, said):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this PyTorch sees a CUDA device")
    path = fake_nvidia_smi(tmp_path / "bin", listing, code)
    out = tmp_path / "out"
    proc = run_script("--out", str(out), env={"PATH": path}, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and said in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, said", [
    (["--bogus"], "unknown option '--bogus'; valid options: --plan, --rehearse, --out DIR, -h"),
    (["--out"], "--out needs a folder"),
    ([], "no output folder: give --out DIR or set OUT"),
])
def test_bad_options_are_one_line_naming_the_valid_ones_exit_2(tmp_path, args, said):
    proc = run_script(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("acceptance.sh: error: ") and said in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_folder_with_a_record_in_it_is_never_written_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.md").write_text("an earlier run")
    # a rehearsal, so that no missing GPU stops it first
    proc = run_script("--rehearse", "--out", str(out), cwd=tmp_path, timeout=900)
    assert proc.returncode == 2 and "is not an empty folder" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["summary.md"]


# -- it never changes the machine ---------------------------------------------------------------------------

#: Words after which a word is a command: the start of a line, a step's "--", a command substitution.
COMMAND_POSITION = {None, "--", "$(", "!", ";", "&&", "||", "|", "then", "do", "else", "timeout"}


def nvidia_smi_calls(words: list[str]) -> list[list[str]]:
    """Each nvidia-smi run among shell words (not a lookup such as ``command -v nvidia-smi`` or a
    comparison): its arguments up to the end of the command or a redirection."""
    calls = []
    for index, word in enumerate(words):
        if word == "nvidia-smi" and (words[index - 1] if index else None) in COMMAND_POSITION:
            args = []
            for arg in words[index + 1:]:
                if arg in {"&&", "||", "|", ")"} or arg.endswith(";") or re.match(r"^[0-9&]*[<>]", arg):
                    break
                args.append(arg)
            calls.append(args)
    return calls


def shell_words(text: str) -> list[str]:
    """Shell words, with the commands of each ``$(...)`` inside a word as words of their own."""
    words = []
    for word in shlex.split(text, comments=True):
        for inner in re.findall(r"\$\(([^()]*)\)", word):
            words += ["$(", *shell_words(inner), ")"]
        words.append(word)
    return words


def check_read_only(args: list[str]) -> None:
    previous = ""
    for arg in args:
        option = arg.split("=", 1)[0]
        assert option not in NVSMI_SETTERS, f"nvidia-smi {arg} sets something"
        if not arg.startswith("-"):
            assert previous in ("-d", "-i"), f"nvidia-smi {arg}: a sub-command or stray word"
        else:
            assert option in NVSMI_READ_ONLY, f"nvidia-smi {arg} is not a read-only query option"
        previous = arg


def test_the_script_never_changes_clocks_limits_ecc_or_persistence():
    lines = script_lines()
    guard = [line for line in lines if line.startswith("readonly FORBIDDEN_CNNBENCH=")]
    assert guard == ["readonly FORBIDDEN_CNNBENCH=(--allow-clock-changes --restore)"]
    for line in lines:
        if line not in guard:
            assert "--allow-clock-changes" not in line and "--restore" not in line, line
        if "nvidia-smi" in line:
            for call in nvidia_smi_calls(shell_words(line)):
                check_read_only(call)
    # and what the plan says will run: every step, as it is executed
    rows = plan_rows(run_script("--plan").stdout)
    assert rows
    for _, _, _, command in rows:
        words = shlex.split(command)
        assert "--allow-clock-changes" not in words and "--restore" not in words
        if words[0] == "nvidia-smi":
            check_read_only(words[1:])


@pytest.mark.parametrize("injected, said", [
    ('step evil 1 10 -- "${CNNBENCH[@]}" dvfs --device cuda --allow-clock-changes', "--allow-clock-changes would change"),
    ('step evil 1 10 -- "${CNNBENCH[@]}" dvfs --restore', "--restore would change"),
    ("step evil 1 10 -- nvidia-smi -pl 300", "nvidia-smi -pl is not one of the read-only options"),
    ("step evil 1 10 -- nvidia-smi -lgc 1000,1000", "nvidia-smi -lgc is not one"),
    ("step evil 1 10 -- nvidia-smi -i 0 -pm 1", "nvidia-smi -pm is not one"),
    ("step evil 1 10 -- nvidia-smi mig -cgi 9", "nvidia-smi mig is not one"),
])
def test_a_step_that_would_change_a_setting_stops_the_script_before_anything_runs(tmp_path, injected, said):
    copy = tmp_path / "bench" / "gpu" / "acceptance.sh"
    copy.parent.mkdir(parents=True)
    text = SCRIPT.read_text()
    anchor = "    step dvfs-plan "
    assert anchor in text
    copy.write_text(text.replace(anchor, f"    {injected}\n{anchor}", 1))
    for args in (["--plan"], ["--rehearse", "--out", str(tmp_path / "out")]):
        proc = run_script(*args, script=copy, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert proc.stderr.startswith("acceptance.sh: error: refusing to run: step evil: ") and said in proc.stderr
        assert not (tmp_path / "out").exists()


# -- time: a hung step is cut, the budget holds, and every step still runs ------------------------------------

def test_a_hung_step_is_cut_and_the_steps_after_it_keep_their_time(tmp_path):
    """The real steps, swapped for a failing one, two that hang and two after them, in a 20 s budget."""
    copy = tmp_path / "bench" / "gpu" / "acceptance.sh"
    copy.parent.mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "gpu" / "summary.py", copy.parent)
    text = SCRIPT.read_text()
    start, end = text.index("steps() {\n"), text.index("\n}\n", text.index("steps() {\n"))
    synthetic = """steps() {
    step fails 1 30 -- false
    step hangs-past-its-timeout 1 6 -- sleep 100
    step hangs-past-the-budget 2 100 -- sleep 100
    step after 2 30 -- true
    step summary 1 60 -- "$PYTHON" bench/gpu/summary.py "$O"
"""
    assert "readonly BUDGET_S=540\n" in text
    copy.write_text((text[:start] + synthetic + text[end + 1:]).replace("readonly BUDGET_S=540\n", "readonly BUDGET_S=20\n"))
    out = tmp_path / "out"
    proc = run_script("--rehearse", "--out", str(out), script=copy, cwd=tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stderr
    steps = {folder.name.split("-", 1)[1]: folder for folder in sorted((out / "steps").iterdir())}
    assert list(steps) == ["fails", "hangs-past-its-timeout", "hangs-past-the-budget", "after", "summary"]
    code = {name: int((folder / "exit_code").read_text()) for name, folder in steps.items()}
    assert code["fails"] == 1 and code["after"] == 0 and code["summary"] == 0
    assert code["hangs-past-its-timeout"] == code["hangs-past-the-budget"] == 124
    assert int((steps["hangs-past-its-timeout"] / "timeout_s").read_text()) == 6
    # cut to what the budget leaves once the later steps' estimates (2 + 1 s) are kept
    assert int((steps["hangs-past-the-budget"] / "timeout_s").read_text()) <= 20 - 6 - 3
    summary = (out / "summary.md").read_text()
    assert "| hangs-past-the-budget | timed out after" in summary and "### fails: exit 1" in summary


# -- every command line is valid: the rehearsal runs them all on the CPU -------------------------------------

def test_the_rehearsal_runs_every_command_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    proc = run_script("--rehearse", "--out", str(out), cwd=tmp_path, timeout=900)
    steps = {folder.name.split("-", 1)[1]: folder for folder in sorted((out / "steps").iterdir())}
    assert list(steps) == STEPS
    for name, folder in steps.items():
        if name in ("gpu-info", "gpu-query", "ecc"):
            assert (folder / "skipped").read_text().startswith("skipped: a rehearsal has no GPU")
            continue
        stderr = (folder / "stderr").read_text()
        assert "unrecognized arguments" not in stderr and "invalid choice" not in stderr, (name, stderr)
        code = int((folder / "exit_code").read_text())
        if name == "dvfs-plan" and code == 2:
            # the lent machine's path: dvfs reads NVML, which this machine lacks
            assert "no GPU clocks to read here" in stderr
            continue
        assert code == 0, (name, stderr)
        assert float((folder / "wall_s").read_text()) >= 0
        assert (folder / "command").read_text().split()[1:3] in (["-m", "cnnbench"], ["bench/gpu/summary.py", "\"$OUT\""])
    assert proc.returncode in (0, 1)  # 1: dvfs cannot plan without NVML here
    for name in ("idle", "fig2", "fig3", "fig3-jax", "nvml-window"):
        results = json.loads((steps[name] / "stdout").read_text())["results"]
        assert results and all(r["device"] == "cpu" and r["network"] == "lenet" for r in results)
    fig3 = json.loads((steps["fig3"] / "stdout").read_text())["results"]
    assert {(r["framework"], r["precision"]) for r in fig3} >= {("torch", p) for p in ("fp32", "fp16", "bf16", "tf32")}
    # the example plugin is registered without an install: its cells are jax's, whatever their status here
    fig3_jax = json.loads((steps["fig3-jax"] / "stdout").read_text())["results"]
    assert {r["framework"] for r in fig3_jax} == {"jax"} and len(fig3_jax) == 4
    for path in ("figures/fig2.png", "figures/fig3.png", "figures/fig3-jax.png", "figures/layers-torch-lenet.png",
                 "reports/fig2.md", "reports/fig3.md", "reports/fig3-jax.md", "reports/fig2.csv", "reports/fig3.csv",
                 "reports/fig3-jax.csv", "reports/nvml-window.md",
                 "db/fig2.sqlite", "steps.tsv", "run.txt"):
        assert (out / path).is_file(), path
    summary = (out / "summary.md").read_text()
    assert "A rehearsal on the CPU" in summary
    assert str(out) not in summary and "$OUT" in summary
    assert "](figures/fig2.png)" in summary and "../figures" not in summary
    assert "## verify" in summary and "status" in summary


def test_the_summary_puts_the_counter_and_the_power_integral_side_by_side(tmp_path):
    folder = tmp_path / "steps" / "10-nvml-window"
    folder.mkdir(parents=True)
    (folder / "command").write_text("python -m cnnbench run ...\n")
    (folder / "exit_code").write_text("0\n")
    # the shape cnnbench.meters.gpucheck gives a GPU entry: each window's counter and power integral
    entry = {"kind": "gpu", "meter": "nvml", "method": "counter", "joules": 9000.0, "seconds": 30.0, "power_w": 300.0,
             "warnings": [], "cross_check_tolerance": 0.05, "power_average_s": 0.0,
             "windows": [{"window": 1, "seconds": 30.0, "counter_j": 9000.0, "integrated_j": 9090.0,
                          "disagreement": 0.01, "error": None}]}
    result = {"framework": "torch", "network": "alexnet", "batch_size": 128, "device": "cuda", "status": "ok",
              "time_per_iter_ms": 20.0, "windows": [{"start": 1.0, "end": 31.5, "iterations": 1500}],
              "energy": {"gpu0": entry}, "warnings": ["gpu0: a warning"]}
    (folder / "stdout").write_text(json.dumps({"results": [result]}))
    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu" / "summary.py"), str(tmp_path)], check=True,
                   capture_output=True)
    summary = (tmp_path / "summary.md").read_text()
    assert "| 1 | 30.00 | 9000.00 | 9090.00 | 1.00 % |  |" in summary and "tolerance: 5 %" in summary
    assert "windows 30.50 s (1500 iterations)" in summary and "- warning: gpu0: a warning" in summary
