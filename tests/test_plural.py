"""Counts in messages take the noun in the right number (issue 21: "1 configurations", "1 cell(s)")."""

from __future__ import annotations

from cnnbench.api import Results
from cnnbench.plural import count


def test_count():
    assert count(0, "cell") == "0 cells"
    assert count(1, "cell") == "1 cell"
    assert count(2, "configuration") == "2 configurations"
    assert count(1, "entry", "entries") == "1 entry" and count(3, "entry", "entries") == "3 entries"


def test_results_repr_of_one_planned_cell():
    assert "0 of 1 cell (none)" in repr(Results([], cells_planned=1))
    assert "0 of 2 cells (none)" in repr(Results([], cells_planned=2))
