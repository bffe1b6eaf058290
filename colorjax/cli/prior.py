"""`colorjax prior --from DIR`: compute the empirical ab-bin prior of a folder of photos."""

from __future__ import annotations

import argparse
from pathlib import Path

from colorjax import gamut


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the prior command's arguments."""
    parser.add_argument(
        "--from", dest="prior_from", required=True, help="folder of photos (searched recursively)"
    )
    parser.add_argument("--limit", type=int, default=5000, help="number of photos (evenly spaced)")
    parser.add_argument("--max-side", type=int, default=128, help="downscale larger photos to this")
    parser.add_argument("--grid", type=float, default=10.0, help="ab bin size")
    parser.add_argument("--source", default=None, help="source name stored in the JSON")
    parser.add_argument("--out", default=str(gamut.DEFAULT_PRIOR_PATH), help="output JSON path")


def run(args: argparse.Namespace) -> int:
    """Count the photos' ab bins and write the prior JSON atomically."""
    counts, n_images, n_pixels = gamut.compute_prior_from_folder(
        args.prior_from, args.limit, args.max_side, args.grid
    )
    root = Path(args.prior_from).resolve()
    source = args.source or f"{root.parent.name}/{root.name}"
    gamut.write_prior_json(args.out, counts, source, n_images, n_pixels, args.grid)
    print(
        f"wrote {args.out}: Q={len(counts)} bins from {n_images} images ({n_pixels} pixels), "
        f"{int((counts == 0).sum())} empty bins"
    )
    return 0
