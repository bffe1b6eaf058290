"""`colorjax data SPEC`: count a source's images and list the unreadable or near-gray ones."""

from __future__ import annotations

import argparse
import json

from colorjax.data.decode import decode_pil, thumbnail_max_chroma
from colorjax.data.sources import ACCEPTED_FORMS, make_source
from colorjax.errors import ColorjaxError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `colorjax data`."""
    parser.add_argument("source", help=f"data source: {ACCEPTED_FORMS}")
    parser.add_argument("--split", default="train", help="train | validation | all (or TFDS split)")
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir")
    parser.add_argument("--val-fraction", type=float, default=0.0, help="held-out share")
    parser.add_argument("--limit", type=int, default=None, help="check only the first N records")
    parser.add_argument(
        "--gray-threshold", type=float, default=None, help="also count near-gray images"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def check_source(source, limit: int | None, gray_threshold: float | None) -> dict:
    """Decode every record (or the first `limit`) and report counts and bad records."""
    n = len(source) if limit is None else min(limit, len(source))
    bad: list[str] = []
    gray: list[str] = []
    for i in range(n):
        try:
            img = decode_pil(source[i])
        except (ColorjaxError, OSError) as err:
            bad.append(f"{source.describe(i)}: {err}")
            continue
        if gray_threshold is not None and thumbnail_max_chroma(img) <= gray_threshold:
            gray.append(source.describe(i))
    return {
        "source": source.name,
        "records": len(source),
        "checked": n,
        "unreadable": bad,
        "near_gray": gray,
    }


def run(args: argparse.Namespace) -> int:
    """Open the source, check its records, print a summary; exit 1 if any is unreadable."""
    source = make_source(
        args.source, split=args.split, data_dir=args.data_dir, val_fraction=args.val_fraction
    )
    report = check_source(source, args.limit, args.gray_threshold)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['source']}: {report['records']} records, checked {report['checked']}")
        print(f"unreadable: {len(report['unreadable'])}")
        for line in report["unreadable"]:
            print(f"  {line}")
        if args.gray_threshold is not None:
            print(f"near-gray (max chroma <= {args.gray_threshold}): {len(report['near_gray'])}")
    return 1 if report["unreadable"] else 0
