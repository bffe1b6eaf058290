"""`colorjax export NAME --out model.jaxexport`: a model and its weights as one jax.export file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from colorjax.errors import ConfigError

logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `export` subcommand's arguments."""
    parser.add_argument(
        "weights",
        metavar="NAME",
        help="weights name (arch.tag), .safetensors file, or training run folder",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="the file to write (FILE.jaxexport)"
    )
    parser.add_argument(
        "--platforms",
        nargs="+",
        default=["cpu", "cuda"],
        choices=["cpu", "cuda", "rocm", "tpu"],
        help="platforms the artefact runs on (default: cpu cuda)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="annealed-mean temperature baked in (default: the weights' tuned value)",
    )
    parser.add_argument(
        "--working-size",
        type=int,
        default=None,
        help="working size recorded for serving (default: the weights')",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    """Export the model, write the file atomically, print what it holds."""
    from colorjax.exported import SUFFIX, export_model, save_exported
    from colorjax.fileio import ensure_output_dir
    from colorjax.inference import check_temperature, default_temperature
    from colorjax.inference.pretrained import load_pretrained

    out = args.out
    if out.suffix != SUFFIX:
        raise ConfigError(f"--out must end in {SUFFIX}, got {out}; e.g. --out model{SUFFIX}")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it, or another --out")
    ensure_output_dir(out.parent if str(out.parent) else ".", "--out")
    model, variables, meta = load_pretrained(args.weights)
    temperature = check_temperature(
        args.temperature if args.temperature is not None else default_temperature(meta)
    )
    if args.working_size is not None:
        meta = {**meta, "working_size": args.working_size}
    payload, header = export_model(
        model, variables, meta, temperature=temperature, platforms=tuple(args.platforms)
    )
    save_exported(out, payload, header)
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {header['model']} for "
        f"{', '.join(header['platforms'])}, input (N, H, W, 1) with H, W multiples of "
        f"{header['stride']}, working size {header['working_size']}, T {header['temperature']}"
    )
    return 0
