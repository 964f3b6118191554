"""Figures: what is drawn is the stored data (read back through the artists' gids), and files are real images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.config import UsageError
from cnnbench.meters.energy import _totals
from cnnbench.results.plots import FORMATS, build_figure, save_figure
from cnnbench.results.record import Result

pytest.importorskip("matplotlib")

ITERATIONS = 40
SECONDS = 2.0
KINDS = {"gpu": "nvml", "cpu_package": "rapl", "core": "rapl", "dram": "rapl"}


def entry(kind, watts, images, idle_w=None, method="counter", seconds=SECONDS):
    """One domain as cnnbench.meters.energy.attach_energy writes it."""
    joules = watts * seconds
    return {"kind": kind, "meter": KINDS[kind], "power_w": watts, "energy_per_image_j": joules / images,
            "method": method, "joules": joules, "seconds": seconds, "idle_power_w": idle_w,
            "dynamic_energy_per_image_j": None if idle_w is None else (joules - idle_w * seconds) / images,
            "warnings": []}


def cell(framework="torch", batch=8, ms=412.3, domains=None, idle=None, method="counter", **fields):
    """An ok cell; ``domains``: domain -> (kind, watts); ``idle``: domain -> idle watts."""
    r = Result(framework, "lenet", batch, "cuda", "fp32", "vendor", None, "ok", time_per_iter_ms=ms,
               time_per_iter_ms_stdev=ms * 0.02, images_per_s=batch / ms * 1e3, **fields)
    images = ITERATIONS * batch
    r.energy = {d: entry(kind, w, images, (idle or {}).get(d), method if kind == "dram" else "counter")
                for d, (kind, w) in (domains or {}).items()}
    r.energy_total = _totals(r.energy) if r.energy else None
    if not r.energy:
        r.energy_unavailable = r.energy_unavailable or "no meter readable: RAPL permission denied"
    return r


GPU_RUN = {"gpu0": ("gpu", 200.0), "cpu_package0": ("cpu_package", 40.0), "cpu_core0": ("core", 25.0),
           "dram0": ("dram", 6.0)}
IDLE = {"gpu0": 50.0, "cpu_package0": 20.0, "cpu_core0": 10.0, "dram0": 4.0}


def drawn(fig, prefix):
    return {a.get_gid(): a for a in fig.findobj(lambda a: (a.get_gid() or "").startswith(prefix))}


def test_energy_bars_are_the_stored_idle_and_dynamic_parts_stacked_gpu_cpu_dram():
    results = [cell("torch", domains=GPU_RUN, idle=IDLE),
               cell("tensorflow", ms=380.0, domains={**GPU_RUN, "gpu0": ("gpu", 230.0)}, idle=IDLE)]
    fig = build_figure(results, "energy")
    bars = drawn(fig, "energy|")
    # core lies inside the package: never stacked; every other domain has an idle and a dynamic part
    assert {gid.split("|")[2] for gid in bars} == {"gpu", "cpu_package", "dram"}
    assert len(bars) == 2 * 3 * 2
    for x, r in enumerate(results):
        bottom = 0.0
        for domain, kind in (("gpu0", "gpu"), ("cpu_package0", "cpu_package"), ("dram0", "dram")):
            e = r.energy[domain]
            for part, value in (("idle", e["energy_per_image_j"] - e["dynamic_energy_per_image_j"]),
                                ("dynamic", e["dynamic_energy_per_image_j"])):
                rect = bars[f"energy|{r.framework}|{kind}|{part}"]
                assert rect.get_height() == pytest.approx(value)
                assert rect.get_y() == pytest.approx(bottom)
                assert rect.get_x() + rect.get_width() / 2 == pytest.approx(x)
                bottom += value
        assert bottom == pytest.approx(r.energy_total["energy_per_image_j"])
    # idle is told apart from dynamic: lighter and hatched
    idle, dynamic = bars["energy|torch|gpu|idle"], bars["energy|torch|gpu|dynamic"]
    assert idle.get_hatch() and not dynamic.get_hatch()
    assert idle.get_facecolor()[3] < dynamic.get_facecolor()[3]
    assert not drawn(fig, "time|")


def test_without_idle_each_domain_is_one_total_segment():
    r = cell(domains=GPU_RUN)
    bars = drawn(build_figure([r]), "energy|")
    assert set(bars) == {"energy|torch|gpu|total", "energy|torch|cpu_package|total", "energy|torch|dram|total"}
    assert bars["energy|torch|cpu_package|total"].get_height() == pytest.approx(
        r.energy["cpu_package0"]["energy_per_image_j"])
    assert bars["energy|torch|dram|total"].get_y() == pytest.approx(
        r.energy["gpu0"]["energy_per_image_j"] + r.energy["cpu_package0"]["energy_per_image_j"])


def test_domains_of_one_kind_are_summed_and_unreadable_ones_named():
    two_sockets = {"cpu_package0": ("cpu_package", 40.0), "cpu_package1": ("cpu_package", 30.0),
                   "dram0": ("dram", 6.0)}
    r = cell(domains=two_sockets)
    r.energy["gpu0"] = {"kind": "gpu", "meter": "nvml", "power_w": None, "energy_per_image_j": None,
                        "method": None, "error": "GPU is lost"}
    fig = build_figure([r])
    bars = drawn(fig, "energy|")
    assert bars["energy|torch|cpu_package|total"].get_height() == pytest.approx(
        r.energy["cpu_package0"]["energy_per_image_j"] + r.energy["cpu_package1"]["energy_per_image_j"])
    assert not any("|gpu|" in gid for gid in bars)
    assert drawn(fig, "power|cpu_package")["power|cpu_package"].get_ydata()[0] == pytest.approx(70.0)
    assert "gpu0 not measured for torch: GPU is lost" in drawn(fig, "note|footnote")["note|footnote"].get_text()


def test_draw_below_idle_keeps_the_bar_at_the_measured_total():
    r = cell(domains={"cpu_package0": ("cpu_package", 40.0)}, idle={"cpu_package0": 41.0})
    assert r.energy["cpu_package0"]["dynamic_energy_per_image_j"] < 0
    bars = drawn(build_figure([r]), "energy|")
    assert bars["energy|torch|cpu_package|idle"].get_height() == pytest.approx(
        r.energy["cpu_package0"]["energy_per_image_j"])
    assert bars["energy|torch|cpu_package|dynamic"].get_height() == 0


def test_power_lines_and_time_text_are_the_stored_values():
    results = [cell("torch", ms=412.3, domains=GPU_RUN),
               cell("mxnet", ms=3.521, domains={"cpu_package0": ("cpu_package", 50.0), "dram0": ("dram", 7.0)})]
    fig = build_figure(results)
    lines = drawn(fig, "power|")
    assert set(lines) == {"power|gpu", "power|cpu_package", "power|dram"}
    assert list(lines["power|gpu"].get_xdata()) == [0]  # only the cell that has a GPU
    assert list(lines["power|gpu"].get_ydata()) == pytest.approx([200.0])
    assert list(lines["power|cpu_package"].get_xdata()) == [0, 1]
    assert list(lines["power|cpu_package"].get_ydata()) == pytest.approx([40.0, 50.0])
    assert list(lines["power|dram"].get_ydata()) == pytest.approx([6.0, 7.0])
    texts = drawn(fig, "ms|")
    assert texts["ms|torch"].get_text() == "412 ms"
    assert texts["ms|mxnet"].get_text() == "3.52 ms"
    ax = fig.axes[0]
    assert ax.get_ylabel() == "energy per image (J)"
    assert fig.axes[1].get_ylabel() == "average power (W)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["torch", "mxnet"]


def test_estimated_domains_say_so_in_the_legend():
    fig = build_figure([cell(domains=GPU_RUN, method="estimated")])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "DRAM (estimated)" in legend and "DRAM power (estimated)" in legend
    assert "GPU" in legend  # measured domains are not tarred with the estimate


def test_without_energy_the_bars_are_time_and_the_figure_says_why():
    results = [cell("torch", ms=12.5), cell("tensorflow", ms=9.25)]
    fig = build_figure(results)
    assert not drawn(fig, "energy|") and not drawn(fig, "power|")
    bars = drawn(fig, "time|")
    for r in results:
        assert bars[f"time|{r.framework}"].get_height() == pytest.approx(r.time_per_iter_ms)
    # the error bars span ± the stdev across windows
    bar_container = next(c for c in fig.axes[0].containers if getattr(c, "errorbar", None))
    caps = bar_container.errorbar.lines[2][0].get_segments()
    assert [seg[1][1] - seg[0][1] for seg in caps] == pytest.approx([2 * r.time_per_iter_ms_stdev for r in results])
    note = drawn(fig, "note|energy-unavailable")["note|energy-unavailable"].get_text()
    assert note.replace("\n", " ").startswith("energy unavailable: no meter readable: RAPL permission denied")
    assert fig.axes[0].get_ylabel() == "time per iteration (ms)"
    assert drawn(fig, "ms|")["ms|torch"].get_text() == "12.5 ms"


def test_cells_that_did_not_run_are_left_out_and_listed():
    failed = Result("tensorflow", "lenet", 8, "cuda", "fp32", "vendor", None, "unsupported", reason="no fp32")
    fig = build_figure([cell("torch", domains=GPU_RUN), failed])
    assert {gid.split("|")[1] for gid in drawn(fig, "energy|")} == {"torch"}
    assert drawn(fig, "note|footnote")["note|footnote"].get_text() == "not shown: tensorflow (unsupported)"
    assert not drawn(build_figure([cell(domains=GPU_RUN)]), "note|footnote")


def test_labels_name_the_varying_axes_and_the_title_the_fixed_ones():
    results = [cell("torch", batch=8, domains=GPU_RUN), cell("torch", batch=8, domains=GPU_RUN)]
    results[1].precision = "fp16"
    fig = build_figure(results, "energy", title="Fig. 3")
    assert {gid.split("|")[1] for gid in drawn(fig, "energy|")} == {"fp32", "fp16"}
    assert fig.get_suptitle().replace("\xa0", " ").startswith("Fig. 3\nframework: torch")
    assert "batch: 8" in fig.get_suptitle().replace("\xa0", " ")
    # the same cell twice still gets two bars that can be told apart
    twice = drawn(build_figure([cell(domains=GPU_RUN), cell(domains=GPU_RUN)]), "ms|")
    assert set(twice) == {"ms|torch", "ms|torch #2"}


def test_batch_figure_lines_are_images_per_s_and_energy_per_image():
    results = [cell(fw, batch=b, ms=(10 + b) * k, domains=GPU_RUN)
               for fw, k in (("torch", 1.0), ("tensorflow", 1.5)) for b in (32, 8, 16)]
    fig = build_figure(results)  # auto: several batch sizes
    assert len(fig.axes) == 2
    lines = drawn(fig, "")
    for fw in ("torch", "tensorflow"):
        mine = sorted((r for r in results if r.framework == fw), key=lambda r: r.batch_size)
        speed, energy = lines[f"images_per_s|{fw}"], lines[f"energy|{fw}"]
        assert list(speed.get_xdata()) == [8, 16, 32]
        assert list(speed.get_ydata()) == pytest.approx([r.images_per_s for r in mine])
        assert list(energy.get_xdata()) == [8, 16, 32]
        assert list(energy.get_ydata()) == pytest.approx([r.energy_total["energy_per_image_j"] for r in mine])
        assert speed.axes is fig.axes[0] and energy.axes is fig.axes[1]
    assert fig.axes[0].get_xscale() == "log"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["8", "16", "32"]
    assert fig.axes[1].get_ylabel() == "energy per image (J)"


def test_batch_figure_without_energy_has_one_panel_and_says_why():
    fig = build_figure([cell(batch=b, ms=b * 1.5) for b in (8, 16)])
    assert len(fig.axes) == 1
    assert list(drawn(fig, "images_per_s|")["images_per_s|torch"].get_ydata()) == pytest.approx(
        [8 / 12 * 1e3, 16 / 24 * 1e3])
    assert "energy unavailable: no meter readable" in drawn(fig, "note|")["note|energy-unavailable"].get_text()


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("svg", b"<svg"), ("pdf", b"%PDF")])
def test_save_writes_each_format(tmp_path, fmt, magic):
    assert fmt in FORMATS
    path = tmp_path / f"fig.{fmt.upper()}"  # the extension's case does not matter
    assert save_figure([cell(domains=GPU_RUN, idle=IDLE)], path) == "energy"
    data = path.read_bytes()
    assert data.startswith(magic) if fmt != "svg" else magic in data
    batch = tmp_path / f"batch.{fmt}"
    assert save_figure([cell(batch=8), cell(batch=16)], batch) == "batch"
    assert batch.stat().st_size > 0


def test_usage_errors_name_the_valid_choices(tmp_path):
    ok = [cell(domains=GPU_RUN)]
    with pytest.raises(UsageError, match="png, svg, pdf"):
        save_figure(ok, tmp_path / "fig.jpg")
    with pytest.raises(UsageError, match="png, svg, pdf"):
        save_figure(ok, tmp_path / "fig")
    assert not (tmp_path / "fig.jpg").exists()
    with pytest.raises(UsageError, match="unknown figure kind 'pie'; valid choices: auto, energy, batch"):
        build_figure(ok, "pie")
    failed = Result("torch", "lenet", 8, "cuda", "fp32", "vendor", None, "oom")
    with pytest.raises(UsageError, match=r"no successful cells to plot in 1 result \(1 oom\)"):
        save_figure([failed], tmp_path / "fig.png")
    with pytest.raises(UsageError, match="no successful cells to plot"):
        build_figure([])


def test_missing_matplotlib_is_a_usage_error_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(UsageError, match=r"--plot needs matplotlib: pip install 'cnnbench\[plot\]'"):
        build_figure([cell()])


def test_import_is_instant_and_figures_leave_pyplot_alone():
    code = ("import sys, cnnbench.results.plots as p; from cnnbench.results.record import Result\n"
            "assert 'matplotlib' not in sys.modules\n"
            "r = Result('torch', 'lenet', 8, 'cpu', 'fp32', 'vendor', None, 'ok', time_per_iter_ms=1.0)\n"
            "fig = p.build_figure([r]); fig.canvas.draw()\n"
            "assert type(fig.canvas).__name__ == 'FigureCanvasAgg'\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr


def test_the_unavailable_note_keeps_the_reasons_and_leaves_out_the_fixes():
    from cnnbench.results.plots import short_reason

    reason = ("nvml: nvidia-ml-py is not installed (its module is pynvml); fix: pip install 'cnnbench[nvml]'  "
              "(the nvidia-ml-py distribution; not the deprecated 'pynvml' one); rapl: no powercap tree at "
              "/sys/class/powercap (this is a virtual machine, and hypervisors rarely pass RAPL through); fix: on "
              "bare metal: sudo modprobe intel_rapl_msr; elsewhere set $CNNBENCH_POWERCAP_ROOT; pyrapl: not installed")
    assert short_reason(reason) == ("nvml: nvidia-ml-py is not installed; rapl: no powercap tree at "
                                    "/sys/class/powercap; pyrapl: not installed")
