"""Counts in messages: "1 cell", "2 cells", never "1 cells" or "cell(s)"."""

from __future__ import annotations


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number it takes: ``count(1, "cell")`` is "1 cell", ``count(3, "cell")``
    "3 cells"; ``plural`` where adding an s is wrong (``count(2, "entry", "entries")``)."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
