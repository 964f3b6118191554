"""cnnbench recommend: the stored configuration with the least energy per image, and its cost in time."""

from __future__ import annotations

import json

from cnnbench.results.record import Result
from cnnbench.results.store import Store


def cell(batch, ms, joules_per_image=None, precision="fp32", framework="torch", reason="rapl: not readable"):
    result = Result(framework, "alexnet", batch, "cuda", precision, "vendor", None, "ok", time_per_iter_ms=ms,
                    images_per_s=batch / ms * 1e3)
    if joules_per_image is None:
        result.energy_unavailable = reason
    else:
        result.energy_total = {"energy_per_image_j": joules_per_image, "power_w": joules_per_image * batch / ms * 1e3,
                               "method": "counter", "domains": ["gpu0"]}
        result.provenance = {"gpu": {"clocks_mhz": {"mem_application": 2619, "sm_application": 1980},
                                     "power_limit_w": 700.0}}
    return result


def store(db, runs):
    with Store(db) as s:
        for cells in runs:
            session = s.begin_session("compare", ["compare"], [{}] * len(cells))
            for position, result in enumerate(cells):
                s.add_result(session, position, result)


def test_least_energy_and_its_cost_against_the_fastest(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    store(db, [
        [cell(32, 100.0, 2.0), cell(64, 150.0, 1.5), cell(128, 400.0, 1.8)],   # ms/image 3.1, 2.3, 3.1
        [cell(64, 140.0, 1.2, precision="fp16"), cell(256, 600.0, 1.7)],
        [cell(32, 200.0, 5.0, framework="tensorflow")],
    ])
    proc = cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db), "--json")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["configurations"] == 5
    best, fastest = answer["least_energy"], answer["fastest"]
    assert (best["batch_size"], best["precision"], best["energy_per_image_j"], best["run"]) == (64, "fp16", 1.2, 2)
    assert best["clocks"] == "2619/1980 MHz, 700 W limit"
    # fastest per image: fp16 bs64 at 140/64 = 2.19 ms/image, which is also the least energy
    assert (fastest["batch_size"], fastest["precision"]) == (64, "fp16")
    assert answer["time_cost_vs_fastest"] == 0 and answer["energy_saved_vs_fastest"] == 0
    text = cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db)).stdout
    assert "the fastest configuration is also the one with the least energy per image" in text


def test_the_newest_measurement_of_a_configuration_counts(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    store(db, [[cell(32, 100.0, 1.0), cell(64, 120.0, 3.0)], [cell(32, 100.0, 4.0)]])
    answer = json.loads(cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db),
                            "--json").stdout)
    best = answer["least_energy"]
    assert (best["batch_size"], best["energy_per_image_j"], best["run"]) == (64, 3.0, 1)
    assert answer["fastest"]["batch_size"] == 64  # 1.875 ms/image against 3.125
    text = cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db)).stdout
    assert "least energy: batch 64" in text and "2 configurations stored (3 measurements" in text


def test_saving_energy_costs_time(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    store(db, [[cell(64, 128.0, 2.0), cell(16, 64.0, 1.5)]])  # 2 ms/image at 2 J; 4 ms/image at 1.5 J
    answer = json.loads(cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db),
                            "--json").stdout)
    assert answer["least_energy"]["batch_size"] == 16 and answer["fastest"]["batch_size"] == 64
    assert abs(answer["energy_saved_vs_fastest"] - 0.25) < 1e-12
    assert abs(answer["time_cost_vs_fastest"] - 1.0) < 1e-12
    text = cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db)).stdout
    assert "cost: 25% less energy per image than the fastest, at +100% time per image" in text


def test_without_energy_it_says_unavailable_and_why_never_zero(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    store(db, [[cell(32, 100.0), cell(64, 150.0)]])
    proc = cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db))
    assert proc.returncode == 0
    assert "least energy: unavailable: no stored configuration has an energy figure (rapl: not readable)" in proc.stdout
    assert "fastest:      batch 64" in proc.stdout


def test_nothing_stored_for_that_pair_names_what_is(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    store(db, [[cell(32, 100.0)]])
    proc = cli("recommend", "--framework", "mxnet", "--network", "alexnet", "--db", str(db))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("cnnbench: error: no successful stored cell of mxnet on alexnet; stored "
                                   "frameworks: torch; networks: alexnet")


def noisy(result, reason="time varies across windows: CV 31.0% > 5%"):
    result.quality = {"cv": 0.31, "noisy": True, "reasons": [reason]}
    result.warn(f"noisy: {reason}")
    return result


def test_a_noisy_cell_is_never_picked_without_saying_so(cli, tmp_path):
    """A noisy cell with the best figures on both counts is left out, named, with its reason."""
    db = tmp_path / "r.sqlite"
    store(db, [[cell(32, 100.0, 2.0), noisy(cell(64, 20.0, 0.5)), cell(128, 500.0, 1.8)]])
    answer = json.loads(cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db),
                            "--json").stdout)
    assert (answer["fastest"]["batch_size"], answer["least_energy"]["batch_size"]) == (32, 128)
    assert answer["fastest"]["noisy"] is False and answer["noisy_only"] is False
    (ignored,) = answer["noisy_ignored"]
    assert ignored["batch_size"] == 64 and ignored["noisy_reasons"] == ["time varies across windows: CV 31.0% > 5%"]
    text = cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db)).stdout
    assert ("left out, noisy: batch 64, cuda, fp32, vendor kernels, threads default, 2619/1980 MHz, 700 W limit "
            "(noisy), run 1: time varies across windows: CV 31.0% > 5%") in text
    assert "fastest:      batch 32" in text


def test_when_every_cell_is_noisy_each_answer_says_so(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    store(db, [[noisy(cell(32, 100.0, 2.0)), noisy(cell(64, 300.0, 1.5))]])
    answer = json.loads(cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db),
                            "--json").stdout)
    assert answer["noisy_only"] is True and answer["noisy_ignored"] == []
    assert answer["fastest"]["noisy"] is True and answer["least_energy"]["noisy"] is True
    text = cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db)).stdout
    assert "every stored configuration is noisy" in text
    assert "fastest:      batch 32, cuda, fp32, vendor kernels, threads default, 2619/1980 MHz, 700 W limit (noisy)" in text


def test_energy_only_on_noisy_cells_is_not_recommended(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    store(db, [[cell(32, 100.0), noisy(cell(64, 150.0, 1.5))]])
    answer = json.loads(cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db),
                            "--json").stdout)
    assert answer["least_energy"] is None
    assert answer["energy_unavailable"] == "rapl: not readable; only noisy configurations, left out, have one"


def test_one_configuration_is_counted_in_the_singular(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    store(db, [[cell(32, 100.0, 1.0)]])
    text = cli("recommend", "--framework", "torch", "--network", "alexnet", "--db", str(db)).stdout
    assert "1 configuration stored (1 measurement;" in text, text
