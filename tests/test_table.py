"""Tests for colorjax.table, the one table writer (bench, models, reports)."""

from __future__ import annotations

import pytest

from colorjax.table import fmt_cell, render_table


def test_markdown_and_plain_tables() -> None:
    rows = [["colornet-tiny", 890242, 2.4321], ["gan", None, 0.5]]
    md = render_table(("model", "params", "GFLOPs"), rows, right=(1, 2))
    assert md.splitlines() == [
        "| model | params | GFLOPs |",
        "| --- | ---: | ---: |",
        "| colornet-tiny | 890242 | 2.43 |",
        "| gan | - | 0.5 |",
    ]
    plain = render_table(("model", "params", "GFLOPs"), rows, markdown=False, right=(1, 2))
    assert plain.splitlines() == [
        "model          params  GFLOPs",
        "colornet-tiny  890242    2.43",
        "gan                 -     0.5",
    ]
    assert fmt_cell(1234.5678, ".4g") == "1235" and fmt_cell(None) == "-" and fmt_cell("a") == "a"
    with pytest.raises(ValueError, match="2 cells, header 3"):
        render_table(("a", "b", "c"), [["x", "y"]])
