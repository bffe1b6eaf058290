"""Render rows as a Markdown or an aligned plain-text table: the one table writer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt_cell(value: Any, spec: str = ".3g") -> str:
    """Table cell text: floats formatted with `spec`, None as a dash, anything else as str."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def render_table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    markdown: bool = True,
    right: Sequence[int] = (),
) -> str:
    """`header` and `rows` as a Markdown table, or as plain columns; `right` aligns right.

    Cells that are not strings go through `fmt_cell`. The text ends with a newline.
    """
    cells = [[c if isinstance(c, str) else fmt_cell(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells, header {len(header)}: {row}")
    if markdown:
        rule = ["---:" if i in right else "---" for i in range(len(header))]
        lines = [header, rule, *cells]
        return "".join("| " + " | ".join(line) + " |\n" for line in lines)
    table = [list(header), *cells]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    out = []
    for line in table:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(padded).rstrip() + "\n")
    return "".join(out)
