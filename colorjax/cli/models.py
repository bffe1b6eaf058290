"""`colorjax models`: every registered model; `--cost` adds parameter counts and forward GFLOPs."""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)

HEADER = ("model", "family", "task", "parameters")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `models` subcommand's arguments."""
    parser.add_argument(
        "names",
        nargs="*",
        metavar="MODEL",
        help="only these models (default: every registered one)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the Markdown table of the README (implies --cost)",
    )
    parser.add_argument(
        "--cost",
        action="store_true",
        help="add parameter counts and forward GFLOPs (traces and compiles every model: slow)",
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
    """One row per model: name, family, task, parameter counts and forward GFLOPs (or None)."""
    from colorjax.models import build_model, get_spec, list_models
    from colorjax.models.cost import forward_flops, param_breakdown

    rows = []
    for name in names or list_models():
        spec = get_spec(name)
        model = build_model(name)
        flops = None
        if resolution > 0 and resolution % model.stride == 0:
            logger.debug("compiling %s at %dx%d for cost analysis", name, resolution, resolution)
            flops = forward_flops(model, resolution)
        rows.append(
            {
                "model": name,
                "family": spec.family,
                "task": spec.task,
                "params": param_breakdown(model),
                "gflops": None if flops is None else flops / 1e9,
            }
        )
    return rows


def render(rows: list[dict[str, Any]], resolution: int = 256, markdown: bool = False) -> str:
    """The table of `rows` (Markdown or plain) followed by a note on how it was computed."""
    from colorjax.table import render_table

    header = (*HEADER, f"GFLOPs @ {resolution}x{resolution}")
    cells = [
        [r["model"], r["family"], r["task"], _format_params(r["params"]), r["gflops"]] for r in rows
    ]
    note = (
        f"GFLOPs: convolution and matmul FLOPs (2 per multiply-add) of one forward pass on one "
        f"{resolution}x{resolution} image, counted from the traced program, so the same on every "
        "backend (GANs: generator only; '-' where the size is not a multiple of the model's "
        "stride). Parameters for GANs: total (G generator + D discriminator)."
    )
    return render_table(header, cells, markdown=markdown, right=(3, 4)) + "\n" + note + "\n"


def render_markdown(rows: list[dict[str, Any]], resolution: int = 256) -> str:
    """Markdown table of `rows` (as in the README) with its note."""
    return render(rows, resolution, markdown=True)


def quick_rows(names: list[str] | None = None) -> list[list[str]]:
    """Name, family, task and description of each model, from the registry alone (fast)."""
    from colorjax.models import get_spec, list_models

    return [
        [name, get_spec(name).family, get_spec(name).task, get_spec(name).description]
        for name in names or list_models()
    ]


def run(args: argparse.Namespace) -> int:
    """Print the model table: names from the registry, or with --cost/--markdown their costs."""
    if not (args.cost or args.markdown):
        from colorjax.table import render_table

        header = ("model", "family", "task", "description")
        print(render_table(header, quick_rows(args.names or None)))
        print("parameters and GFLOPs: colorjax models --cost")
        return 0
    rows = model_rows(args.names or None, args.resolution)
    print(render(rows, args.resolution, markdown=args.markdown), end="")
    return 0
