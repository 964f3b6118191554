from __future__ import annotations

import json
import math
import random

import pytest

from cnnbench.results.baseline import Delta, cell_key, changes_json, changes_table, compare_results, delta, t_quantile
from cnnbench.results.record import Result


def make(per_iter_s: list[float], *, energy: list[float] | None = None, status: str = "ok", network: str = "lenet",
         options: dict[str, str] | None = None, **kw) -> Result:
    """A cell whose windows take ``per_iter_s`` seconds per iteration (10 iterations each)."""
    windows, t = [], 0.0
    for i, s in enumerate(per_iter_s):
        windows.append({"index": i, "start": t, "end": t + 10 * s, "iterations": 10})
        t += 10 * s
    median_ms = sorted(per_iter_s)[len(per_iter_s) // 2] * 1e3 if per_iter_s else None
    return Result("torch", network, 8, "cpu", "fp32", "vendor", None, status, options=options or {},
                  windows=windows, time_per_iter_ms=median_ms, energy_per_image_j_windows=energy, **kw)


def noisy(center: float, spread: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


@pytest.mark.parametrize("df, expected", [(1, 12.706), (4, 2.776), (10, 2.228), (30, 2.042), (1e9, 1.960),
                                          (2.5, 3.5747), (7.3, 2.3451)])
def test_t_quantile_matches_tables(df, expected):
    # Non-integer values from scipy.stats.t.ppf(0.975, df).
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=6e-4)


def test_t_quantile_other_levels_and_symmetry():
    assert t_quantile(0.95, 3.7) == pytest.approx(2.18249, abs=1e-5)  # scipy.stats.t.ppf(0.95, 3.7)
    assert t_quantile(0.025, 10) == pytest.approx(-2.228, abs=1e-3)
    assert t_quantile(0.5, 3) == 0.0
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_cell_key_ignores_option_order():
    a = make([0.01], options={"xla": "on", "amp": "off"})
    b = make([0.01], options={"amp": "off", "xla": "on"})
    assert cell_key(a) == cell_key(b)
    assert cell_key(a) != cell_key(make([0.01], options={"xla": "off", "amp": "off"}))
    [change] = compare_results([a], [b])
    assert change.status == "compared"


def test_identical_runs_not_significant():
    times = noisy(0.02, 0.05, 8, seed=1)
    [change] = compare_results([make(times)], [make(times)])
    d = change.time
    assert d.ratio == 1.0 and d.low < 1.0 < d.high and not d.significant
    assert (d.n_new, d.n_base) == (8, 8)


def test_clearly_slower_run_is_significant():
    base, new = make(noisy(0.02, 0.02, 10, seed=2)), make(noisy(0.04, 0.02, 10, seed=3))
    d = compare_results([new], [base])[0].time
    assert d.ratio == pytest.approx(2.0, rel=0.03)
    assert 1.0 < d.low <= 2.0 <= d.high
    assert d.low <= d.ratio <= d.high and d.significant
    assert d.change_pct == pytest.approx(100.0, abs=3.0)


def test_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    # Guards the method: an interval around the median ratio with the mean's standard error covered only
    # ~80% with uniform noise; the geometric-mean interval should be near 95%.
    rng = random.Random(8)
    trials, covered = 300, 0
    for _ in range(trials):
        new = [1.5 * (1 + rng.uniform(-0.3, 0.3)) for _ in range(10)]
        base = [1 + rng.uniform(-0.3, 0.3) for _ in range(10)]
        d = delta(new, base)
        assert d.low <= d.ratio <= d.high
        covered += d.low <= 1.5 <= d.high
    assert 0.9 <= covered / trials <= 0.99


def test_small_change_in_noisy_runs_not_significant():
    # +2 % with +-20 % window noise: the windows overlap, so the interval must include no change.
    base = make([0.016, 0.024, 0.019, 0.021, 0.020])
    new = make([v * 1.02 for v in (0.023, 0.017, 0.020, 0.022, 0.018)])
    d = compare_results([new], [base])[0].time
    assert not d.significant and d.low < 1.0 < d.high


def test_single_window_has_no_interval():
    d = delta([2.0], [1.0, 1.0, 1.0])
    assert d.ratio == 2.0 and d.low is None and d.high is None and not d.significant
    table = changes_table(compare_results([make([0.02])], [make([0.01, 0.011])]))
    assert "n/a (1 window)" in table


def test_zero_spread_collapses_interval():
    assert delta([2.0, 2.0], [1.0, 1.0, 1.0]) == Delta(2.0, 2.0, 2.0, True, 2, 3)
    assert delta([1.0, 1.0], [1.0, 1.0]).significant is False


def test_energy_delta_from_windows():
    base = make([0.02] * 4, energy=[1.0, 1.02, 0.98, 1.0])
    new = make([0.02] * 4, energy=[0.8, 0.81, 0.79, 0.8])
    change = compare_results([new], [base])[0]
    assert change.energy.ratio == pytest.approx(0.8, rel=1e-3)
    assert change.energy.significant and change.energy.high < 1.0
    assert change.energy_reason is None
    assert "less" in changes_table([change])


def test_energy_none_when_a_side_lacks_it():
    old = make([0.02] * 3, energy_total={"energy_per_image_j": 1.0, "power_w": 50.0, "method": "counter"})
    unavailable = make([0.02] * 3, energy_unavailable="no RAPL access")
    new = make([0.02] * 3, energy=[1.0, 1.0, 1.0])
    change = compare_results([new], [old])[0]
    assert change.energy is None and "baseline" in change.energy_reason and "older record" in change.energy_reason
    assert change.time is not None
    change = compare_results([unavailable], [new])[0]
    assert change.energy is None and "no RAPL access" in change.energy_reason
    assert "no RAPL access" in changes_table([change])
    neither = compare_results([make([0.02] * 3)], [make([0.02] * 3)])[0]
    assert neither.energy is None and neither.energy_reason == "both runs: no energy figures"


def test_new_missing_and_not_comparable():
    results = [make([0.02] * 3, network="alexnet"), make([0.02] * 3, status="oom", reason="CUDA out of memory")]
    baseline = [make([0.02] * 3), make([0.02] * 3, network="vgg")]
    changes = compare_results(results, baseline)
    assert [(c.key[1], c.status) for c in changes] == [("alexnet", "new"), ("lenet", "not comparable"),
                                                        ("vgg", "missing")]
    assert "oom" in changes[1].reason and "ok" in changes[1].reason
    assert all(c.time is None and c.energy is None for c in changes)
    assert changes[2].result is None and changes[2].baseline is baseline[1]


def test_table_renders():
    base = make(noisy(0.02, 0.02, 10, seed=6), energy=[1.0, 1.01, 0.99] * 3 + [1.0])
    new = make(noisy(0.03, 0.02, 10, seed=7), energy=[1.0, 1.01, 0.99] * 3 + [1.0])
    changes = compare_results([new, make([0.01] * 3, network="vgg")], [base, make([0.01] * 3, network="alexnet")])
    table = changes_table(changes)
    assert "framework: torch" in table and "batch: 8" in table  # fixed axes in the header line
    assert "network" in table.splitlines()[1]  # the varying axis is a column
    d = changes[0].time
    assert f"+{d.change_pct:.1f} % [+{(d.low - 1) * 100:.1f}, +{(d.high - 1) * 100:.1f}]" in table
    assert "slower" in table and "+0.0 %" in table and "no significant change" in table
    assert "new [" in table and "missing [" in table and "no baseline cell" in table
    assert "10/10" in table
    assert "window-to-window" in table and "run-to-run" in table
    assert changes_table([]) == "no cells to compare"


def test_json_dumps():
    changes = compare_results([make([0.02, 0.021], energy=[1.0, 1.1], options={"xla": "on"}), make([0.02])],
                              [make([0.02, 0.02], energy=[1.0, 1.0], options={"xla": "on"})])
    document = changes_json(changes)
    text = json.dumps(document)
    assert json.loads(text)[0]["options"] == {"xla": "on"}
    first = document[0]
    assert first["status"] == "compared" and first["network"] == "lenet" and first["threads"] is None
    assert math.isclose(first["time"]["ratio"], math.sqrt(1.05)) and first["time"]["verdict"] == "no significant change"
    assert first["energy"]["n_new"] == 2
    assert [c["status"] for c in document] == ["compared", "new"]


def gated(result: Result, reason: str = "other processes kept 45% of the 2 CPUs cnnbench may use busy during "
                                        "the cell (> 10%)") -> Result:
    result.quality = {"cv": 0.01, "noisy": True, "reasons": [reason]}
    return result


def test_a_change_against_a_noisy_cell_is_marked_and_never_significant():
    """Clearly 50 % slower by its windows, but the baseline was measured on a busy machine: not judged."""
    base = gated(make(noisy(0.020, 0.01, 10, seed=1), energy=[1.0, 1.01, 0.99] * 3 + [1.0]))
    new = make(noisy(0.030, 0.01, 10, seed=2), energy=[1.5, 1.51, 1.49] * 3 + [1.5])
    (change,) = compare_results([new], [base])
    assert change.time.significant  # the statistics alone would call it
    assert change.noisy == ["baseline noisy: other processes kept 45% of the 2 CPUs cnnbench may use busy during "
                            "the cell (> 10%)"]
    table = changes_table([change])
    assert "slower" not in table and "more" not in table.split("\n[")[0]
    assert table.count("noisy: not judged [1]") == 2
    assert "[1] baseline noisy: other processes kept 45%" in table
    (row,) = changes_json([change])
    assert row["time"]["significant"] is False and row["time"]["verdict"] == "noisy: not judged"
    assert row["energy"]["significant"] is False and row["noisy"] == change.noisy


def test_clean_pairs_are_judged_as_before():
    base = make(noisy(0.020, 0.01, 10, seed=1))
    new = make(noisy(0.030, 0.01, 10, seed=2))
    (change,) = compare_results([new], [base])
    assert change.noisy == []
    assert changes_json([change])[0]["time"]["verdict"] == "slower"


def test_every_column_has_a_heading():
    """The verdict columns had empty headings (issue 21); each column says what it holds."""
    changes = compare_results([make([0.02, 0.021, 0.019])], [make([0.01, 0.011, 0.012])])
    for fmt in ("simple", "github"):
        table = changes_table(changes, tablefmt=fmt)
        header = next(line for line in table.splitlines() if "windows new/base" in line)
        if fmt == "github":
            assert all(cell.strip() for cell in header.strip("|").split("|")), header
        assert "time verdict" in header and "energy verdict" in header, header
