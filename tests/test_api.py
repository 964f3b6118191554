"""The Python API: the command line's grid, validation and store, returning Results objects."""

from __future__ import annotations

import math

import pytest

import cnnbench
from cnnbench.api import Results
from cnnbench.config import UsageError
from cnnbench.results.record import Result

FAST = dict(warmup=1, min_time=0.02, repeats=2)


def test_compare_returns_stored_results(fake_site, _own_results_db):
    results = cnnbench.compare(frameworks=["fake", "fake-missing"], networks="lenet", batch_size=[2, 4],
                               device="cpu", **FAST)
    assert isinstance(results, Results) and all(isinstance(r, Result) for r in results)
    assert [(r.framework, r.batch_size, r.status) for r in results] == [
        ("fake", 2, "ok"), ("fake", 4, "ok"), ("fake-missing", 2, "unavailable"), ("fake-missing", 4, "unavailable")]
    assert results.session == 1 and results.db == str(_own_results_db)
    assert repr(results) == "<Results run 1: 4 of 4 cells (2 ok, 2 unavailable)>"
    assert str(results).splitlines()[0].startswith("network: lenet")
    loaded = cnnbench.load("latest")
    assert list(loaded) == list(results) and loaded.session == 1
    [session] = cnnbench.history()
    # the stored command line is what was asked for, not every default
    assert session.argv == ["compare", "--frameworks", "fake,fake-missing", "--networks", "lenet", "--batch-size",
                            "2,4", "--device", "cpu", "--warmup", "1", "--min-time", "0.02", "--repeats", "2"]


def test_to_pandas_has_one_row_per_cell_and_nan_for_unmeasured(fake_site):
    pytest.importorskip("pandas")
    results = cnnbench.compare(frameworks="fake", networks="lenet", batch_size=[2, 4], device="cpu", **FAST)
    frame = results.to_pandas()
    assert list(frame["batch_size"]) == [2, 4] and str(frame["batch_size"].dtype) == "Int64"
    assert list(frame["images_per_s"]) == pytest.approx([r.images_per_s for r in results])
    assert all(math.isnan(v) for v in frame["energy_per_image_j"])  # unavailable here: NaN, never 0
    assert frame["energy_unavailable"].iloc[0] == results[0].energy_unavailable


def test_run_one_cell_without_storing(fake_site, _own_results_db):
    results = cnnbench.run("fake", "lenet", batch_size=2, device="cpu", store=False, **FAST)
    assert len(results) == 1 and results[0].status == "ok" and results.session is None
    assert not _own_results_db.exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(frameworks="nope"), "unknown framework 'nope'"),
    (dict(frameworks="fake", batch_size=0), "--batch-size must be a positive whole number"),
    (dict(frameworks="fake", precision="fp8"), "unknown precision 'fp8'; valid choices: fp32, fp16, bf16, tf32"),
    (dict(frameworks="fake", networks="resnet9000"), "resnet9000"),
])
def test_bad_arguments_raise_the_command_lines_message(fake_site, kwargs, message):
    from cnnbench.spec import SpecError

    with pytest.raises((UsageError, SpecError), match=message.replace("(", r"\(")):
        cnnbench.compare(device="cpu", **FAST, **kwargs)


def test_plot_returns_the_figure(fake_site, tmp_path):
    pytest.importorskip("matplotlib")
    results = cnnbench.compare(frameworks="fake", networks="lenet", batch_size=[2, 4], device="cpu", **FAST)
    figure = results.plot(str(tmp_path / "sweep.svg"))
    assert (tmp_path / "sweep.svg").stat().st_size > 0
    lines = [a for ax in figure.axes for a in ax.get_lines() if (a.get_gid() or "").startswith("images_per_s|")]
    assert [list(line.get_ydata()) for line in lines] == [pytest.approx([r.images_per_s for r in results])]
    assert (tmp_path / "sweep.svg").read_text().lstrip().startswith("<?xml")


def test_the_api_defaults_are_the_requests():
    # The keyword defaults are part of the API's documented signature; they must say what the typed request
    # (where the defaults are declared for every front end) says, or a keyword left out would differ from
    # the same flag left out.
    import inspect

    from cnnbench.api import compare, run
    from cnnbench.planning.requests import GridRequest

    request = GridRequest()
    for function in (compare, run):
        for name, parameter in inspect.signature(function).parameters.items():
            if not hasattr(request, name) or parameter.default in (inspect.Parameter.empty, None):
                continue
            assert str(parameter.default) == str(getattr(request, name)), (function.__name__, name)
