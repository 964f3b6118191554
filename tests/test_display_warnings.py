"""Warnings are part of the number: every warning of a cell, and the quality gate's noisy mark, show where the
user reads the number (the table of compare/show, report md/csv, the figures), not only in --json."""

from __future__ import annotations

import csv
import io

from cnnbench.results.plots import build_figure
from cnnbench.results.report import ONE_WINDOW, results_csv, results_table
from cnnbench.results.record import Result


def cell(framework="torch", windows=(1.0, 1.1), noisy=None, warnings=(), threads=2, used=2, batch=8):
    wins = []
    start = 0.0
    for seconds in windows:
        wins.append({"start": start, "end": start + seconds, "iterations": 10})
        start += seconds + 0.1
    r = Result(framework, "lenet", batch, "cpu", "fp32", "vendor", threads, "ok", windows=wins,
               provenance={"worker": {"threads_used": used}}, warnings=list(warnings),
               energy_unavailable="no meter here")
    if noisy is not None:
        r.quality = {"noisy": noisy, "cv": 0.08 if noisy else 0.01, "reasons": list(warnings)}
    r.fill_timing(wins, 1000)
    return r


def test_a_warning_is_a_footnote_marker_in_the_row_and_its_text_once_under_the_table():
    text = "cpu_package0: counter restarted in window 2"
    table = results_table([cell("torch", warnings=[text]), cell("tensorflow", warnings=[text])])
    rows = [line for line in table.splitlines() if line.startswith(("torch", "tensorflow"))]
    marker = next(line for line in table.splitlines() if line.endswith(text)).split()[0]
    assert all(marker in row for row in rows), (marker, rows)
    assert table.count(text) == 1


def test_a_noisy_cell_says_noisy_in_its_status_with_the_reason_and_a_clean_one_does_not():
    reason = "noise: CV 8.0 % across 3 windows, over the 5 % threshold"
    table = results_table([cell("torch", noisy=False), cell("tensorflow", noisy=True, warnings=[reason])])
    torch_row = next(line for line in table.splitlines() if line.startswith("torch"))
    tf_row = next(line for line in table.splitlines() if line.startswith("tensorflow"))
    assert "noisy" in tf_row and "noisy" not in torch_row
    marker = tf_row.split("noisy")[1].strip()
    assert f"{marker} {reason}" in table


def test_one_window_never_prints_plus_minus_zero_and_says_its_spread_is_unknown():
    table = results_table([cell("torch", windows=(1.0,)), cell("tensorflow")])
    torch_row = next(line for line in table.splitlines() if line.startswith("torch"))
    assert "± ?" in torch_row and "± 0.00" not in table
    assert ONE_WINDOW in table


def test_the_threads_each_cell_used_show_when_they_differ():
    table = results_table([cell("torch", threads=2, used=2), cell("mxnet", threads=None, used=1)])
    assert "threads used" in table
    mxnet_row = next(line for line in table.splitlines() if line.startswith("mxnet"))
    assert mxnet_row.split()[1:3] == ["default", "1"]
    same = results_table([cell("torch"), cell("tensorflow")])
    assert "threads used" not in same and "threads: 2" in same


def test_csv_carries_cv_noisy_and_the_warnings():
    rows = list(csv.DictReader(io.StringIO(results_csv([cell("torch", noisy=True, warnings=["a", "b"]),
                                                         cell("tensorflow")]))))
    assert rows[0]["noisy"] == "yes" and rows[0]["warnings"] == "a | b" and float(rows[0]["cv"]) == 0.08
    # not assessed is unknown, not clean
    assert rows[1]["noisy"] == "" and rows[1]["warnings"] == ""


def test_the_figure_marks_a_noisy_bar_and_carries_every_warning_in_its_footnote():
    fig = build_figure([cell("torch", warnings=["gpu0: window 2 throttled: sw thermal slowdown"]),
                        cell("tensorflow", noisy=True, warnings=["noisy: CV 8.0 %"]),
                        cell("mxnet", noisy=True, warnings=["spread unknown: one window"])])
    marks = fig.findobj(lambda a: (a.get_gid() or "").startswith("noisy|"))
    assert [m.get_gid() for m in marks] == ["noisy|tensorflow", "noisy|mxnet"]
    footnote = " ".join(t.get_text() for t in fig.findobj(lambda a: a.get_gid() == "note|footnote")).replace("\n", " ")
    assert "gpu0: window 2 throttled" in footnote and "tensorflow: noisy: CV 8.0 %" in footnote
    # a noisy cell whose warnings do not say so is still named noisy
    assert "mxnet (noisy): spread unknown: one window" in footnote


def test_the_batch_figure_rings_a_noisy_point():
    fig = build_figure([cell("torch", batch=8), cell("torch", batch=16, noisy=True, warnings=["noise"]),
                        cell("torch", batch=32)], kind="batch")
    assert [m.get_gid() for m in fig.findobj(lambda a: (a.get_gid() or "").startswith("noisy|"))] == ["noisy|torch|16"]


def test_in_markdown_each_note_is_a_list_item_of_its_own():
    # consecutive lines run together into one paragraph in Markdown; a list keeps each note apart
    table = results_table([cell("torch", noisy=True, warnings=["a", "b"])], tablefmt="github")
    assert "\n- [1] no meter here\n- [2] a\n- [3] b\n" in table
    assert "\n[1] no meter here\n[2] a\n[3] b\n" in results_table([cell("torch", noisy=True, warnings=["a", "b"])])


def test_a_domain_without_a_figure_points_to_the_warning_that_says_why_not_a_second_copy():
    why = "counter restart: energy_uj went back from 9627576 to 1517356 µJ in 50 ms"
    r = cell("torch")
    r.energy = {"cpu_package0": {"kind": "cpu_package", "meter": "rapl", "power_w": None, "energy_per_image_j": None,
                                 "method": None, "error": why},
                "dram0": {"kind": "dram", "meter": "rapl", "power_w": 6.0, "energy_per_image_j": 0.01,
                          "method": "counter", "dynamic_energy_per_image_j": None}}
    r.energy_total = {"domains": ["dram0"], "energy_per_image_j": 0.01, "power_w": 6.0, "method": "counter",
                      "dynamic_energy_per_image_j": None, "cpu_share": None, "missing": "cpu_package0 (counter restart)"}
    r.warn(f"cpu_package0: no figure: {why} (window 2 of 3)")
    table = results_table([r])
    assert table.count("went back from 9627576") == 1, table
    row = next(line for line in table.splitlines() if line.startswith("torch"))
    marker = row.split("cpu_package0 error ")[1].split(",")[0]
    assert f"{marker} cpu_package0: no figure: {why} (window 2 of 3)" in table


def test_errors_of_one_kind_in_a_window_are_one_message_with_a_count():
    from cnnbench.meters.integrate import _by_kind

    restarts = ["counter restart: went back from 9627576 to 1517356 µJ", "counter restart: went back from 9574871 to 1544019 µJ"]
    assert _by_kind(restarts + ["read failed: EIO"]) == [restarts[0] + " (and 1 more like it)", "read failed: EIO"]
