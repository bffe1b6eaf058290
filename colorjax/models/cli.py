"""`colorjax models`: table of every registered model with parameter counts and forward GFLOPs."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from colorjax.models.registry import (
    create_model,
    forward_flops,
    get_spec,
    list_models,
    param_breakdown,
)

logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `models` subcommand's arguments."""
    parser.add_argument(
        "names",
        nargs="*",
        metavar="MODEL",
        help="only these models (default: every registered one)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print a Markdown table (as in the README)"
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=256,
        help="square input size in pixels for the GFLOPs column (default 256)",
    )


def _format_params(counts: dict[str, int]) -> str:
    """Exact parameter count, with the generator/discriminator split for GANs."""
    text = f"{counts['total']:,}"
    if "generator" in counts:
        text += f" (G {counts['generator']:,} + D {counts['discriminator']:,})"
    return text


def model_rows(names: list[str] | None = None, resolution: int = 256) -> list[dict[str, Any]]:
    """One row per model: name, family, head, parameter counts and forward GFLOPs (or None)."""
    rows = []
    for name in names or list_models():
        spec = get_spec(name)
        model = create_model(name)
        counts = param_breakdown(model)
        gflops = None
        if resolution > 0 and resolution % model.stride == 0:
            logger.debug("compiling %s at %dx%d for cost analysis", name, resolution, resolution)
            gflops = forward_flops(model, resolution) / 1e9
        rows.append(
            {
                "model": name,
                "family": spec.family,
                "head": spec.head,
                "params": counts,
                "gflops": gflops,
            }
        )
    return rows


def _cells(row: dict[str, Any]) -> list[str]:
    """Row values as display strings."""
    gflops = "-" if row["gflops"] is None else f"{row['gflops']:.3g}"
    return [row["model"], row["family"], row["head"], _format_params(row["params"]), gflops]


def _header(resolution: int) -> list[str]:
    """Column titles, naming the resolution of the FLOPs column."""
    return ["model", "family", "head", "parameters", f"GFLOPs @ {resolution}x{resolution}"]


def _footnote(resolution: int) -> str:
    """How the columns were computed."""
    return (
        f"GFLOPs: XLA cost analysis of one forward pass on one {resolution}x{resolution} image "
        "(GANs: generator only; '-' where the size is not a multiple of the model's stride). "
        "Parameters for GANs: total (G generator + D discriminator)."
    )


def render_markdown(rows: list[dict[str, Any]], resolution: int = 256) -> str:
    """Markdown table of `rows` followed by a one-line note on how it was computed."""
    lines = [
        "| " + " | ".join(_header(resolution)) + " |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + _footnote(resolution) + "\n"


def render_text(rows: list[dict[str, Any]], resolution: int = 256) -> str:
    """Plain aligned-column table of `rows`."""
    table = [_header(resolution)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    right = {3, 4}
    out = []
    for line in table:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n\n" + _footnote(resolution) + "\n"


def run(args: argparse.Namespace) -> int:
    """Print the model table (plain or Markdown)."""
    rows = model_rows(args.names or None, args.resolution)
    render = render_markdown if args.markdown else render_text
    print(render(rows, args.resolution), end="")
    return 0


if __name__ == "__main__":
    import sys

    _parser = argparse.ArgumentParser(prog="colorjax models")
    configure_parser(_parser)
    sys.exit(run(_parser.parse_args()))
