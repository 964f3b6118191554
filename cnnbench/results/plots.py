"""Figures in the paper's style from a list of results: energy per image by domain, and batch-size sweeps.

``build_figure`` returns a matplotlib ``Figure`` on an Agg canvas, made without pyplot, so it holds no global
state and is safe in notebooks and threads; ``save_figure`` writes it as PNG, SVG or PDF by the file's extension.

Kinds of figure:

- ``energy`` (Figs. 2-4): one bar per successful cell, J/image stacked by domain (GPU, CPU package, DRAM), each
  domain split into its idle part (hatched, lighter) and its part above idle; average power per domain as lines on
  the right axis; time per iteration written on each bar. Without any energy reading the bars are time per
  iteration (ms, with the stdev across windows) and the figure says why energy is missing.
- ``batch`` (Fig. 6): images/s against batch size, one line per series, and J/image in a second panel when the
  cells have energy.
- ``auto``: ``batch`` when the successful cells have more than one batch size, else ``energy``.

The layer breakdown of ``cnnbench layers`` (Fig. 5) is drawn from its report, not from results:
``build_layers_figure`` / ``save_layers_figure``, with gids ``share|{part}|{type}`` (part ``forward``,
``backward`` or ``total``; the segment's height is the type's share in %).

Every data artist carries a ``gid``, so tests and users can find what was drawn and compare it with the stored
results (``fig.findobj(lambda a: a.get_gid() == gid)``; SVG output keeps gids as element ids):

- ``energy|{label}|{kind}|{part}``: a bar segment in J/image; kind in ``gpu``, ``cpu_package``, ``dram``; part
  ``idle`` (idle power x time / images), ``dynamic`` (above idle) or ``total`` (no idle power measured).
- ``time|{label}``: a time-per-iteration bar (ms), drawn only when no cell has energy.
- ``ms|{label}``: the time-per-iteration text on a bar.
- ``power|{kind}``: the average-power line (W) of a domain kind across the cells.
- ``images_per_s|{series}``, ``energy|{series}``: the lines of the batch figure.
- ``note|energy-unavailable``, ``note|footnote``: why energy is missing; cells left out or partly measured; every
  cell's warnings (meter, noise, heat, one window).
- ``noisy|{label}``: the mark over a bar the quality gate found noisy (its bars get a dashed red edge);
  ``noisy|{series}|{batch}``: the same on a point of the batch figure.

``label`` is a cell's values of the axes that differ between the results, joined by spaces ("tensorflow bs8");
``series`` is the same without the batch size.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.config import UsageError
from cnnbench.meters.energy import TOTAL_KINDS
from cnnbench.plural import count
from cnnbench.results.report import AXES, axis_value, cell_warnings, is_noisy
from cnnbench.results.record import Result

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = ("png", "svg", "pdf")
KINDS = ("auto", "energy", "batch")
#: Bottom first. Only disjoint kinds are stacked: core and psys lie inside the package, and adding them would
#: count the same joules twice (see cnnbench.meters.energy).
STACK_ORDER = tuple(k for k in ("gpu", "cpu_package", "dram") if k in TOTAL_KINDS)
_NAMES = {"gpu": "GPU", "cpu_package": "CPU package", "dram": "DRAM"}
_COLOURS = {"gpu": "#4d8c1f", "cpu_package": "#2f6db5", "dram": "#d9822b"}
_BAR_WIDTH = 0.6


def _matplotlib() -> tuple[Any, Any]:
    # Imported here, never at module top: the CLI imports this module and must stay instant.
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'cnnbench[plot]'") from None
    return Figure, FigureCanvasAgg


def _resolve(results: list[Result], kind: str) -> tuple[list[Result], str]:
    if kind not in KINDS:
        raise UsageError(f"unknown figure kind '{kind}'; valid choices: {', '.join(KINDS)}")
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        statuses = ", ".join(f"{n} {s}" for s, n in Counter(r.status for r in results).items())
        raise UsageError(f"no successful cells to plot in {count(len(results), 'result')}"
                         + (f" ({statuses})" if statuses else ""))
    if kind == "auto":
        kind = "batch" if len({r.batch_size for r in ok}) > 1 else "energy"
    return ok, kind


def build_figure(results: list[Result], kind: str = "auto", title: str | None = None) -> Figure:
    """The figure of ``results`` (see the module docstring for the kinds and the gids of what is drawn)."""
    return _build(results, kind, title)[0]


def save_figure(results: list[Result], path: str | Path, kind: str = "auto", title: str | None = None) -> str:
    """Write the figure to ``path`` in the format its extension names; return the kind of figure drawn."""
    _format(path)
    fig, used = _build(results, kind, title)
    write_figure(fig, path)
    return used


def _format(path: str | Path) -> str:
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"unknown figure format '{Path(path).suffix or path}'; valid choices: {', '.join(FORMATS)}")
    return fmt


def write_figure(fig: Figure, path: str | Path) -> None:
    """Write a built figure to ``path`` in the format its extension names."""
    fig.savefig(path, format=_format(path), dpi=150)


def _build(results: list[Result], kind: str, title: str | None) -> tuple[Figure, str]:
    ok, kind = _resolve(results, kind)  # usage errors before the (slow) matplotlib import
    figure_class, canvas_class = _matplotlib()
    draw = _energy_figure if kind == "energy" else _batch_figure
    fig = draw(figure_class, results, ok, title)
    canvas_class(fig)  # attaches itself as fig.canvas: Agg, whatever backend pyplot may have chosen
    return fig, kind


# -- labels -------------------------------------------------------------------------------------------------


def _part(result: Result, attr: str) -> str:
    """One axis value as it reads on its own under a bar: "bs8", not "8"."""
    value = axis_value(result, attr)
    if attr == "batch_size":
        return f"bs{value}"
    if attr in ("threads", "kernels"):
        return f"{value} {attr}"
    if attr == "options" and value == "-":
        return "no options"
    return value


def _split_axes(results: list[Result]) -> tuple[list[str], str]:
    """The axes that vary (they label bars and series) and a line of those that do not (for the title)."""
    varying = [attr for attr, _ in AXES if len({axis_value(r, attr) for r in results}) > 1]
    # no-break spaces inside an item, so the title wraps between items, never within "threads: default"
    fixed = [f"{head}:\u00a0{axis_value(results[0], attr)}".replace(" ", "\u00a0") for attr, head in AXES
             if attr not in varying and not (attr == "options" and not results[0].options)]
    return varying, "   ".join(fixed)


def _label(result: Result, attrs: list[str]) -> str:
    # With nothing varying, the framework still names the one bar, as report.py's table does.
    return " ".join(_part(result, a) for a in attrs or ["framework"])


def _head(attr: str) -> str:
    return dict(AXES)[attr].replace("batch", "batch size")


def _title(fig: Figure, title: str, fixed: str) -> None:
    width = int(fig.get_figwidth() * 11)  # about the characters of 10-point text per inch
    fig.suptitle("\n".join([title, *textwrap.wrap(fixed, width)]), fontsize=10)


def _footnote(fig: Figure, results: list[Result], varying: list[str], metered: bool) -> None:
    """Say which cells are missing from the figure or only partly measured, so no gap goes unexplained."""
    notes = []
    left_out = [f"{_label(r, varying)} ({r.status})" for r in results if r.status != "ok"]
    if left_out:
        notes.append("not shown: " + ", ".join(left_out))
    for r in results:
        if r.status != "ok":
            continue
        if metered and not r.energy_total:
            notes.append(f"no energy for {_label(r, varying)}: {r.energy_unavailable or 'no meter reading'}")
        for domain, entry in r.energy.items():
            if entry.get("energy_per_image_j") is None:
                notes.append(f"{domain} not measured for {_label(r, varying)}: {entry.get('error') or 'no reading'}")
        # the warnings travel with the figure, as they do with the table
        warnings = cell_warnings(r)
        if warnings or is_noisy(r):
            said = any(w.startswith("noisy") for w in warnings)  # the gate's own warnings say so already
            head = f"{_label(r, varying) or r.framework}{' (noisy)' if is_noisy(r) and not said else ''}: "
            notes.append(head + "; ".join(warnings or ["marked noisy by the quality gate"]))
    if notes:
        width = int(fig.get_figwidth() * 15)  # about the characters of 7-point text per inch
        text = "\n".join(textwrap.fill(n, width, subsequent_indent="    ") for n in notes)
        fig.supxlabel(text, x=0.01, ha="left", fontsize=7, color="#555555").set_gid("note|footnote")


def short_reason(reason: str) -> str:
    """A meter's reason without its fixes and asides, to fit on a figure: "nvml: nvidia-ml-py is not
    installed (its module is pynvml); fix: pip install ..." -> "nvml: nvidia-ml-py is not installed"."""
    import re

    while True:
        shorter = re.sub(r"\s*\([^()]*\)", "", reason)
        if shorter == reason:
            break
        reason = shorter
    kept: list[str] = []
    in_fix = False
    for part in (p.strip() for p in reason.split("; ")):
        # a fix runs on, over "; ", until the next "name: reason" entry
        if part.startswith("fix:"):
            in_fix = True
        elif re.match(r"^[\w.-]+: ", part):
            in_fix = False
        if part and not in_fix:
            kept.append(part)
    return "; ".join(kept)


def _unavailable(ax: Axes, ok: list[Result]) -> None:
    reason = short_reason(ok[0].energy_unavailable or "no meter reading")
    text = f"energy unavailable: {reason} ('cnnbench list' shows the fixes)"
    ax.text(0.5, 0.97, textwrap.fill(text, 70), transform=ax.transAxes, ha="center",
            va="top", fontsize=8, bbox={"boxstyle": "round", "fc": "#fff3cd", "ec": "#c9a227"},
            gid="note|energy-unavailable")


def _ms(ms: float) -> str:
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.3g} ms"


# -- energy per cell ----------------------------------------------------------------------------------------


def _domains(result: Result) -> dict[str, dict[str, Any]]:
    """Kind -> summed J/image, its idle part (None without an idle baseline), W, and whether any is estimated.

    Domains of one kind are summed: a two-socket machine has two packages, and the bar shows the machine.
    Domains without a reading (an error) are left out here and named in the footnote.
    """
    out = {}
    for kind in STACK_ORDER:
        entries = [e for e in result.energy.values()
                   if e.get("kind") == kind and e.get("energy_per_image_j") is not None]
        if not entries:
            continue
        total = sum(e["energy_per_image_j"] for e in entries)
        idle = None
        if all(e.get("dynamic_energy_per_image_j") is not None for e in entries):
            idle = sum(e["energy_per_image_j"] - e["dynamic_energy_per_image_j"] for e in entries)
        out[kind] = {"total": total, "idle": idle, "power": sum(e.get("power_w") or 0.0 for e in entries),
                     "estimated": any(e.get("method") == "estimated" for e in entries)}
    return out


def _segments(domain: dict[str, Any]) -> dict[str, float]:
    if domain["idle"] is None:
        return {"total": domain["total"]}
    # Noise can put a cell's draw a little below the idle baseline (a negative dynamic part). The bar's height
    # stays the measured total: the idle part is cut at the total rather than drawing a segment downwards.
    idle = min(domain["idle"], domain["total"])
    return {"idle": idle, "dynamic": domain["total"] - idle}


def _energy_figure(figure_class: Any, results: list[Result], ok: list[Result], title: str | None) -> Figure:
    from matplotlib.patches import Patch
    from matplotlib.patheffects import Normal, Stroke

    varying, fixed = _split_axes(results)
    labels, seen = [], Counter()
    for r in ok:  # repeated identical cells would otherwise share a gid
        label = _label(r, varying)
        seen[label] += 1
        labels.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    cells = [_domains(r) for r in ok]
    metered = any(cells)
    n = len(ok)
    # One line per axis (and per option) keeps a label about as wide as its bar; only a line too long for the
    # bar's 0.9 inch makes the labels turn.
    ticks = ["\n".join("\n".join(f"{k}={v}" for k, v in r.options.items()) if a == "options" and r.options
                       else _part(r, a) for a in varying or ["framework"]) for r in ok]
    lines_per_tick = max(t.count("\n") + 1 for t in ticks)
    fig = figure_class(figsize=(max(6.0, 0.9 * n + 3), 4.5 + 0.2 * max(0, lines_per_tick - 2)), layout="constrained")
    ax = fig.add_subplot()
    tops = [0.0] * n
    patches: dict[str, Any] = {}
    lines: dict[str, Any] = {}
    idle_patch = []
    if metered:
        any_idle = False
        for kind in STACK_ORDER:
            present = [i for i, c in enumerate(cells) if kind in c]
            if not present:
                continue
            colour = _COLOURS[kind]
            for part in ("idle", "dynamic", "total"):
                heights = {i: s[part] for i in present if part in (s := _segments(cells[i][kind]))}
                if not heights:
                    continue
                style: dict[str, Any] = {"color": colour}
                if part == "idle":
                    any_idle = True
                    style = {"facecolor": (*_rgb(colour), 0.3), "edgecolor": colour, "hatch": "///", "linewidth": 0}
                bars = ax.bar(list(heights), list(heights.values()), _BAR_WIDTH,
                              bottom=[tops[i] for i in heights], **style)
                for i, rect in zip(heights, bars):
                    rect.set_gid(f"energy|{labels[i]}|{kind}|{part}")
                    tops[i] += heights[i]
            estimated = any(cells[i][kind]["estimated"] for i in present)
            patches[kind] = Patch(color=colour, label=_NAMES[kind] + (" (estimated)" if estimated else ""))
        if any_idle:
            idle_patch = [Patch(facecolor="white", edgecolor="#666666", hatch="///", label="idle part")]
        ax.set_ylabel("energy per image (J)")
        ax2 = ax.twinx()
        peak = 0.0
        for kind in STACK_ORDER:
            present = [i for i, c in enumerate(cells) if kind in c]
            if not present:
                continue
            watts = [cells[i][kind]["power"] for i in present]
            peak = max(peak, *watts)
            estimated = " (estimated)" if any(cells[i][kind]["estimated"] for i in present) else ""
            # A white halo keeps a domain's line visible where it crosses a bar of its own colour.
            (lines[kind],) = ax2.plot(present, watts, marker="o", color=_COLOURS[kind], markerfacecolor="white",
                                      label=f"{_NAMES[kind]} power{estimated}", gid=f"power|{kind}",
                                      path_effects=[Stroke(linewidth=4, foreground="white"), Normal()])
        # Headroom above the highest point so markers do not sit on the time labels at the bars' tops.
        ax2.set_ylim(0, peak * 1.35 or 1)
        ax2.set_ylabel("average power (W)")
        default_title = "Training energy per image by domain"
    else:
        timed = [i for i, r in enumerate(ok) if r.time_per_iter_ms is not None]
        spread = [ok[i].time_per_iter_ms_stdev or 0.0 for i in timed]
        bars = ax.bar(timed, [ok[i].time_per_iter_ms for i in timed], _BAR_WIDTH, yerr=spread, capsize=4,
                      color="#8c8c8c", error_kw={"ecolor": "#333333"})
        for i, s, rect in zip(timed, spread, bars):
            rect.set_gid(f"time|{labels[i]}")
            tops[i] = ok[i].time_per_iter_ms + s
        ax.set_ylabel("time per iteration (ms)")
        _unavailable(ax, ok)
        default_title = "Training time per iteration"
    # On the top axes with a backing, so a power line crossing a bar's top does not hide its time.
    top_ax = ax2 if metered else ax
    for i, r in enumerate(ok):
        if r.time_per_iter_ms is not None:
            top_ax.annotate(_ms(r.time_per_iter_ms), (i, tops[i]), xycoords=ax.transData, xytext=(0, 3),
                            textcoords="offset points", ha="center", va="bottom", fontsize=8,
                            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
                            gid=f"ms|{labels[i]}")
    for i, r in enumerate(ok):
        if is_noisy(r):
            # drawn distinctly, so a noisy bar is not read as a clean one; the reasons are in the footnote
            top_ax.annotate("noisy", (i, tops[i]), xycoords=ax.transData, xytext=(0, 14), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7, color="#b00020", fontweight="bold",
                            gid=f"noisy|{labels[i]}")
            for patch in ax.patches:
                if (patch.get_gid() or "").split("|")[1:2] == [labels[i]]:
                    patch.set_edgecolor("#b00020")
                    patch.set_linestyle("--")
                    patch.set_linewidth(1.2)
    # Room for the time labels (and, without energy, the unavailable note) above the tallest bar.
    ax.set_ylim(0, max(tops) * (1.15 if metered else 1.45) or 1)
    if max(len(line) for t in ticks for line in t.split("\n")) > 14:
        ax.set_xticks(range(n), ticks, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    else:
        ax.set_xticks(range(n), ticks, fontsize=8)
    pad = max(0.0, (3 - n) / 2)  # one or two cells: bars keep a bar's width, not the whole axes
    ax.set_xlim(-0.6 - pad, n - 0.4 + pad)
    ax.set_xlabel(" / ".join(_head(a) for a in varying or ["framework"]))
    if patches:
        # Above the axes, never over the bars; legends fill by column, so this puts each domain's
        # energy patch over its power line.
        handles = [h for kind in patches for h in (patches[kind], lines[kind])] + idle_patch
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.01),
                  ncol=len(patches) + len(idle_patch), fontsize=8, frameon=False)
    _title(fig, title or default_title, fixed)
    _footnote(fig, results, varying, metered)
    return fig


def _rgb(colour: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(colour)


# -- batch-size sweep ---------------------------------------------------------------------------------------


def _batch_figure(figure_class: Any, results: list[Result], ok: list[Result], title: str | None) -> Figure:
    varying, fixed = _split_axes(results)
    series_attrs = [a for a in varying if a != "batch_size"]
    groups: dict[str, list[Result]] = {}
    for r in ok:
        groups.setdefault(_label(r, series_attrs), []).append(r)
    metered = any(r.energy_total for r in ok)
    fig = figure_class(figsize=(11.0 if metered else 6.5, 4.5), layout="constrained")
    axes = fig.subplots(1, 2 if metered else 1, squeeze=False)[0]
    estimated = False
    for series, members in groups.items():
        members = sorted(members, key=lambda r: r.batch_size)
        points = [(r.batch_size, r.images_per_s) for r in members if r.images_per_s is not None]
        (line,) = axes[0].plot([p[0] for p in points], [p[1] for p in points], marker="o", label=series,
                               gid=f"images_per_s|{series}")
        for r in members:
            if is_noisy(r) and r.images_per_s is not None:
                # a ring round a noisy point, so a dip from noise is not read as a real effect of batch size
                axes[0].plot([r.batch_size], [r.images_per_s], marker="o", markersize=12, markerfacecolor="none",
                             markeredgecolor="#b00020", linestyle="none", gid=f"noisy|{series}|{r.batch_size}")
        if metered:
            metered_members = [r for r in members if r.energy_total]
            if metered_members:
                estimated |= any(r.energy_total.get("method") == "estimated" for r in metered_members)
                axes[1].plot([r.batch_size for r in metered_members],
                             [r.energy_total["energy_per_image_j"] for r in metered_members], marker="s",
                             color=line.get_color(), label=series, gid=f"energy|{series}")
    sizes = sorted({r.batch_size for r in ok})
    for ax in axes:
        # Batch sizes are usually powers of two: log2 spaces them evenly, and the ticks are the sizes run.
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("batch size (images per iteration)")
        ax.margins(y=0.1)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("throughput (images/s)")
    axes[0].set_title("Throughput", fontsize=9)
    if metered:
        axes[1].set_ylabel("energy per image (J)" + (", partly estimated" if estimated else ""))
        axes[1].set_title("Energy per image (sum of the measured domains)", fontsize=9)
    else:
        top = axes[0].get_ylim()[1]
        axes[0].set_ylim(0, top * 1.3)  # room for the note above the lines
        _unavailable(axes[0], ok)
    if len(groups) > 1 or series_attrs:
        axes[0].legend(fontsize=8, loc="best")
    default_title = "Throughput and energy against batch size" if metered else "Throughput against batch size"
    _title(fig, title or default_title, fixed)
    _footnote(fig, results, varying, metered)
    return fig


# -- energy by layer type (Fig. 5) --------------------------------------------------------------------------

#: One colour per layer type of ``cnnbench.execution.layer_timing.TYPES``, convolution darkest: it dominates (87 % in the paper).
_TYPE_COLOURS = {"convolution": "#1f4e8c", "pooling": "#6aa84f", "ReLU": "#e69138", "fully connected": "#a64d79",
                 "LRN": "#45b5c4", "concat": "#999999", "other": "#d9d2a6", "batch norm": "#c0504d",
                 "activation": "#f6b26b", "add": "#8e7cc3"}
_PART_NAMES = {"forward": "forward", "backward": "backward", "total": "forward + backward"}


def build_layers_figure(report: dict[str, Any], title: str | None = None) -> Figure:
    """The paper's Fig. 5 from a ``cnnbench layers`` report: one bar per direction (forward, backward, both),
    stacked by layer type, each segment the type's share (%) of that bar's energy, or of its time where no
    meter gave energy. Gids: ``share|{part}|{type}`` (a segment, height in %), ``value|{part}`` (the bar's
    ms/iter and J/image), ``note|footnote`` (the coherence line; why energy is missing)."""
    if report.get("status") != "ok" or not report.get("types"):
        raise UsageError(f"nothing to plot: the layer run ended with status {report.get('status')}"
                         + (f" ({report['reason']})" if report.get("reason") else ""))
    figure_class, canvas_class = _matplotlib()
    from matplotlib.patches import Patch

    totals = report["totals"]
    metered = all(totals[p]["energy_pct"] is not None for p in ("forward", "backward", "total"))
    key, unit = ("energy_pct", "energy") if metered else ("time_pct", "time")
    parts = ("forward", "backward", "total")
    fig = figure_class(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for x, part in enumerate(parts):
        bottom = 0.0
        for entry in report["types"]:
            share = entry[part][key] or 0.0
            colour = _TYPE_COLOURS.get(entry["type"], "#cccccc")
            (rect,) = ax.bar([x], [share], _BAR_WIDTH, bottom=bottom, color=colour, edgecolor="white", linewidth=0.5)
            rect.set_gid(f"share|{part}|{entry['type']}")
            if share >= 4:  # smaller segments would be unreadable; the table has every number
                dark = entry["type"] in ("convolution", "fully connected")
                ax.text(x, bottom + share / 2, f"{share:.0f}%", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
            bottom += share
        value = f"{_ms(totals[part]['time_ms'])}/iter"
        if metered:
            value += f"\n{totals[part]['energy_per_image_j']:.3g} J/image"
        ax.annotate(value, (x, bottom), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                    fontsize=8, gid=f"value|{part}")
    ax.set_xticks(range(len(parts)), [_PART_NAMES[p] for p in parts])
    ax.set_xlim(-0.6, len(parts) - 0.4)
    ax.set_ylim(0, 118)  # room for the values above the 100 % bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel(f"share of {unit} (%)")
    handles = [Patch(color=_TYPE_COLOURS.get(e["type"], "#cccccc"), label=e["type"]) for e in report["types"]]
    ax.legend(handles=handles[::-1], loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False,
              title="layer type (top to bottom)", title_fontsize=8)
    threads = report["threads"] or "default"
    fixed = (f"{report['framework']}   {report['network']}   batch\u00a0size:\u00a0{report['batch_size']}   "
             f"{report['device']}   {report['precision']}   kernels:\u00a0{report['kernels']}   threads:\u00a0{threads}")
    default = "Training energy by layer type" if metered else "Training time by layer type"
    _title(fig, title or default, fixed)
    notes = [f"coherence: {report['coherence']['text']}"] if report.get("coherence") else []
    if (report.get("coherence") or {}).get("warning"):
        notes.append(f"warning: {report['coherence']['warning']}")
    if not metered:
        reason = short_reason(report.get("energy_unavailable") or "a layer has no energy reading")
        notes.append(f"shares of time: energy unavailable ({reason})")
    width = int(fig.get_figwidth() * 15)
    fig.supxlabel("\n".join(textwrap.fill(n, width, subsequent_indent="    ") for n in notes), x=0.01, ha="left",
                  fontsize=7, color="#555555").set_gid("note|footnote")
    canvas_class(fig)
    return fig


def save_layers_figure(report: dict[str, Any], path: str | Path, title: str | None = None) -> None:
    """Write :func:`build_layers_figure` to ``path`` in the format its extension names."""
    _format(path)
    write_figure(build_layers_figure(report, title), path)


def check_figure_path(path: str | Path) -> None:
    """Usage errors of ``--plot PATH`` (format, a folder that is missing or not writable, matplotlib
    missing), before anything is measured."""
    from cnnbench.config import check_output_path

    _format(path)
    check_output_path(str(path), flag="--plot")
    _matplotlib()
