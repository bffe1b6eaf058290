"""Attach `colorjax eval` summaries to a weights entry of the manifest (the README's numbers).

python benchmarks/record_eval.py NAME eval_out/summary.json [more/summary.json ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from colorjax.fileio import atomic_write_text

MANIFEST = Path(__file__).resolve().parents[1] / "colorjax" / "weights" / "manifest.json"
METRICS = (
    "psnr",
    "ssim",
    "colorfulness_pred",
    "colorfulness_true",
    "auc",
    "saturation_ratio",
    "hue_balanced",
    "hue_green",
    "hue_cyan",
    "hue_blue",
)


def evaluation_record(summary: dict) -> dict:
    """Reduce an eval summary to what the manifest keeps: protocol, counts, model vs baseline."""
    protocol = summary["protocol"]
    return {
        "data": protocol["data"],
        "split": protocol["split"],
        "resolution": protocol["resolution"],
        "count": summary["counts"]["evaluated"],
        "excluded_gray": summary["counts"]["excluded_gray"],
        # Summaries written before the hue metric existed lack its keys: recorded without them.
        "model": {k: round(summary["model"][k], 4) for k in METRICS if k in summary["model"]},
        "baseline": {
            k: round(summary["baseline"][k], 4) for k in METRICS if k in summary["baseline"]
        },
        "versions": summary["versions"],
    }


def main(argv: list[str] | None = None) -> int:
    """Replace the entry's `evaluations` with the given summaries, written atomically."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)
    manifest = json.loads(args.manifest.read_text())
    entries = [e for e in manifest["weights"] if e["name"] == args.name]
    if not entries:
        raise SystemExit(f"no weights named {args.name!r} in {args.manifest}")
    entries[0]["evaluations"] = [
        evaluation_record(json.loads(p.read_text())) for p in args.summaries
    ]
    atomic_write_text(args.manifest, json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
