"""The Markdown summary of a GPU acceptance run: ``python bench/gpu/summary.py OUT`` writes ``OUT/summary.md``.

It reads only what ``acceptance.sh`` left under OUT (``run.txt``, ``steps/NN-name/{command,stdout,stderr,
exit_code,wall_s,timeout_s,skipped}``, ``reports/``, ``figures/``), so it can be rerun on a copied record.
Standard library only: the lent machine installs nothing, and a summary must come out even when cnnbench
itself is what broke. The links are relative, so the folder can be committed under ``docs/gpu/`` as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: Lines of a step's output shown in the summary; the whole output is in its step folder.
MAX_LINES = 80


def read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def block(text: str | None, limit: int = MAX_LINES) -> str:
    if text is None:
        return "(no output)\n"
    lines = text.rstrip("\n").splitlines() or ["(empty)"]
    cut = len(lines) - limit
    shown = lines[:limit] + ([f"... {cut} more lines in the step folder"] if cut > 0 else [])
    return "```\n" + "\n".join(shown) + "\n```\n"


def demote(markdown: str) -> str:
    """A report's own headings two levels down, so they nest under the summary's, and its links to the
    figures (written from reports/) made relative to the summary."""
    lines = ("##" + line if line.startswith("#") else line for line in markdown.splitlines())
    return "\n".join(lines).replace("](../figures/", "](figures/") + "\n"


class Step:
    def __init__(self, folder: Path):
        self.folder = folder
        self.name = folder.name.split("-", 1)[1]
        self.command = (read(folder / "command") or "").strip()
        self.stdout = read(folder / "stdout")
        self.stderr = read(folder / "stderr")
        self.skipped = (read(folder / "skipped") or "").strip() or None
        code = read(folder / "exit_code")
        self.exit_code = int(code) if code and code.strip().lstrip("-").isdigit() else None
        self.wall_s = (read(folder / "wall_s") or "").strip() or None
        self.timeout_s = (read(folder / "timeout_s") or "").strip() or None

    @property
    def outcome(self) -> str:
        if self.skipped:
            return self.skipped
        if self.exit_code is None:
            return "running (this summary)" if self.name == "summary" else "no exit code: the run was cut short"
        if self.exit_code in (124, 137):
            return f"timed out after {self.timeout_s} s (exit {self.exit_code})"
        return f"exit {self.exit_code}"

    def json(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.stdout or "")
        except ValueError:
            return None


def steps_table(steps: list[Step]) -> str:
    rows = ["| # | step | outcome | wall s | timeout s | command |", "|---|---|---|---|---|---|"]
    for number, step in enumerate(steps, 1):
        command = step.command.replace("|", "\\|")
        rows.append(f"| {number} | {step.name} | {step.outcome} | {step.wall_s or ''} | {step.timeout_s or ''} "
                    f"| `{command}` |")
    return "\n".join(rows) + "\n"


def gpu_table(csv_text: str | None) -> str:
    """nvidia-smi's --query-gpu CSV as a Markdown table, one row per GPU."""
    lines = [line for line in (csv_text or "").splitlines() if line.strip()]
    if len(lines) < 2:
        return block(csv_text)
    cells = [[cell.strip() for cell in line.split(",")] for line in lines]
    out = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    out += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(out) + "\n"


def ecc_lines(text: str | None) -> str:
    """The ECC mode block of ``nvidia-smi -q -d ECC`` (current and pending), not the error counters."""
    lines = (text or "").splitlines()
    keep = []
    for index, line in enumerate(lines):
        if line.startswith("GPU ") or "ECC Mode" in line:
            keep.append(line)
            if "ECC Mode" in line:
                keep += lines[index + 1:index + 3]
    return block("\n".join(keep) if keep else text)


def results_of(step: Step | None) -> list[dict[str, Any]]:
    document = step.json() if step else None
    return list(document.get("results", [])) if isinstance(document, dict) else []


def energy_section(step: Step | None) -> str:
    """Every energy entry of the long window, whole: the counter's figure and the power integral side by side,
    in whatever keys the meter wrote them."""
    results = results_of(step)
    if not results:
        return "No results: see the step's stderr above.\n"
    parts = []
    for result in results:
        parts.append(f"- {result.get('framework')} {result.get('network')} batch {result.get('batch_size')} on "
                     f"{result.get('device')}: status {result.get('status')}"
                     + (f" ({result.get('reason')})" if result.get("reason") else "")
                     + f", {number(result.get('time_per_iter_ms'))} ms/iteration, windows "
                     + ", ".join(f"{w.get('end', 0) - w.get('start', 0):.2f} s ({w.get('iterations')} iterations)"
                                 for w in result.get("windows") or []))
        if result.get("energy_unavailable"):
            parts.append(f"- energy unavailable: {result['energy_unavailable']}")
        for domain, entry in sorted((result.get("energy") or {}).items()):
            parts.append(f"\n`{domain}`:\n\n```json\n{json.dumps(entry, indent=1)}\n```")
            parts.append(cross_check(entry))
        if result.get("energy_total"):
            parts.append(f"\ntotal:\n\n```json\n{json.dumps(result['energy_total'], indent=1)}\n```")
        for warning in result.get("warnings") or []:
            parts.append(f"- warning: {warning}")
        if result.get("conditions"):
            parts.append(f"\nheat and clocks per window:\n\n```json\n{json.dumps(result['conditions'], indent=1)}\n```")
    return "\n".join(parts) + "\n"


def number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "no figure"


def cross_check(entry: dict[str, Any]) -> str:
    """The GPU entry's per-window check (cnnbench.meters.gpucheck): the counter's joules and the power
    integral of each window side by side, and how far apart they are."""
    rows = [w for w in entry.get("windows") or [] if isinstance(w, dict)]
    if not rows:
        if entry.get("method") == "counter":
            return ("\n(this entry carries no per-window power integral beside the counter: the driver gave no "
                    "power samples)\n")
        return ""
    lines = ["", "| window | seconds | counter J | power integral J | disagreement | error |", "|---|---|---|---|---|---|"]
    for w in rows:
        gap = w.get("disagreement")
        lines.append(f"| {w.get('window')} | {number(w.get('seconds'))} | {number(w.get('counter_j'))} | "
                     f"{number(w.get('integrated_j'))} | {'-' if gap is None else f'{gap * 100:.2f} %'} | "
                     f"{w.get('error') or ''} |")
    tolerance = entry.get("cross_check_tolerance")
    if isinstance(tolerance, (int, float)):
        lines.append(f"\ntolerance: {tolerance * 100:g} %; power readings averaged over "
                     f"{entry.get('power_average_s', 0):g} s (0: instantaneous)")
    return "\n".join(lines) + "\n"


def idle_section(step: Step | None) -> str:
    document = step.json() if step else None
    if not isinstance(document, dict):
        return "No JSON from the idle step: see its stderr above.\n"
    meters = document.get("meters")
    text = f"```json\n{json.dumps(meters, indent=1)}\n```\n"
    for result in document.get("results", []):
        idle = (result.get("provenance") or {}).get("meters")
        if idle:
            text += f"\nas the cell records it (`provenance.meters`):\n\n```json\n{json.dumps(idle, indent=1)}\n```\n"
        for warning in result.get("warnings") or []:
            text += f"- warning: {warning}\n"
    return text


def gpu_provenance(steps: dict[str, Step]) -> str:
    """The GPU's record from the first GPU cell that has one (ECC mode, clocks, power limits, driver)."""
    for name in ("fig2", "fig3", "fig3-jax", "nvml-window", "idle"):
        for result in results_of(steps.get(name)):
            provenance = result.get("provenance") or {}
            if provenance.get("gpu"):
                record = {"gpu": provenance["gpu"], "nvml": provenance.get("nvml")}
                return (f"From the `{name}` step's first GPU cell (`provenance.gpu`, `provenance.nvml`):\n\n"
                        f"```json\n{json.dumps(record, indent=1)}\n```\n")
    return "No cell recorded `provenance.gpu` (no GPU cell ran with NVML readable).\n"


def figure(out: Path, name: str, title: str) -> str:
    path = out / "figures" / name
    return f"![{title}](figures/{name})\n" if path.is_file() else f"(no figure: `figures/{name}` was not written)\n"


def report(out: Path, name: str) -> str:
    text = read(out / "reports" / f"{name}.md")
    return demote(text) if text else f"(no report: `reports/{name}.md` was not written)\n"


def summarize(out: Path) -> str:
    steps = [Step(folder) for folder in sorted((out / "steps").glob("[0-9][0-9]-*")) if folder.is_dir()]
    by_name = {step.name: step for step in steps}
    run = read(out / "run.txt") or ""
    parts = ["# cnnbench GPU acceptance run\n", block(run)]
    if "rehearsal" in run:
        parts.append("\n**A rehearsal on the CPU: the command lines were checked, nothing here is a GPU figure.**\n")
    parts += ["\n## The machine\n", block(by_name["gpu-info"].stdout if "gpu-info" in by_name else None),
              gpu_table(by_name["gpu-query"].stdout if "gpu-query" in by_name else None)]
    parts += ["\n## Steps\n", "Each step's command, stdout, stderr, exit code and wall time are in "
              "`steps/NN-name/`; the results databases in `db/`.\n\n", steps_table(steps)]
    failed = [s for s in steps if s.name != "summary" and not (s.skipped or "").startswith("skipped: a rehearsal")
              and (s.skipped or s.exit_code != 0)]
    if failed:
        parts.append("\n## What failed\n")
        for step in failed:
            parts += [f"\n### {step.name}: {step.outcome}\n\n", block(step.stderr, 15) if step.stderr else
                      "(no stderr)\n"]
    parts += ["\n## ECC\n", ecc_lines(by_name["ecc"].stdout if "ecc" in by_name else None),
              "\n", gpu_provenance(by_name)]
    parts += ["\n## Idle baseline (before anything ran on the GPU)\n", idle_section(by_name.get("idle"))]
    for name, title in (("fig2", "Fig. 2: cuDNN against native kernels"), ("fig3", "Fig. 3: frameworks by precision"),
                        ("fig3-jax", "Fig. 3, JAX (the third-party example plugin)")):
        text = report(out, name)
        parts += [f"\n## {title}\n", text]
        if f"](figures/{name}.png)" not in text:
            parts.append(figure(out, f"{name}.png", title.split(":")[0]))
    parts += ["\n## verify\n", block(by_name["verify"].stdout if "verify" in by_name else None)]
    layers_figure = next((p.name for p in sorted((out / "figures").glob("layers-*"))), "layers.png")
    parts += ["\n## layers\n", block(by_name["layers"].stdout if "layers" in by_name else None),
              figure(out, layers_figure, "layers")]
    parts += ["\n## One long window: NVML's counter and its power integral\n",
              energy_section(by_name.get("nvml-window"))]
    parts += ["\n## dvfs (plan only: nothing was changed)\n",
              block(by_name["dvfs-plan"].stdout if "dvfs-plan" in by_name else None)]
    return "".join(parts)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python bench/gpu/summary.py OUT", file=sys.stderr)
        return 2
    out = Path(argv[0])
    if not (out / "steps").is_dir():
        print(f"summary.py: error: {out} has no steps/ folder: not the record of bench/gpu/acceptance.sh",
              file=sys.stderr)
        return 2
    # The record names the output folder $OUT, as the step commands do, not this machine's path to it.
    (out / "summary.md").write_text(summarize(out).replace(str(out.resolve()), "$OUT"))
    print(out / "summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
