"""Regenerate the README's generated sections (models, weights, benchmarks) from the code."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def replace_section(text: str, name: str, body: str) -> str:
    """Replace what lies between <!-- NAME:start --> and <!-- NAME:end --> with body."""
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README has no {name} markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def section(text: str, name: str) -> str:
    """Return what lies between the markers of a generated section."""
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, re.DOTALL)
    return match.group(1) if match else ""


def models_markdown() -> str:
    """The registered-models table, as `colorjax models --markdown` prints it."""
    from colorjax.cli.models import model_rows, render_markdown

    return render_markdown(model_rows())


def weights_markdown(manifest_path: Path) -> str:
    """A table of the manifest's weights with their `colorjax eval` numbers vs the baseline."""
    from colorjax.table import render_table

    manifest = json.loads(manifest_path.read_text())
    header = ("weights", "eval photos", "PSNR (gray)", "SSIM (gray)", "colourfulness (truth)")
    rows = []
    for entry in manifest.get("weights", []):
        for ev in entry.get("evaluations") or []:
            m, b = ev["model"], ev["baseline"]
            rows.append(
                [
                    f"{entry['name']} ({entry['model']}, {entry['size'] / 1e6:.1f} MB)",
                    f"{ev['data']}: {ev['count']} at {ev['resolution']} px",
                    f"{m['psnr']:.2f} ({b['psnr']:.2f})",
                    f"{m['ssim']:.3f} ({b['ssim']:.3f})",
                    f"{m['colorfulness_pred']:.1f} ({m['colorfulness_true']:.1f})",
                    f"{m['auc']:.3f} ({b['auc']:.3f})",
                    f"{m['hue_balanced']:.3f}" if "hue_balanced" in m else "-",
                ]
            )
    header = (*header, "AuC (gray)", "hue balanced")
    return render_table(header, rows, right=(2, 3, 4, 5, 6))


def main(argv: list[str] | None = None) -> int:
    """Rewrite README.md in place (or check it with --check)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if README is out of date")
    parser.add_argument("--bench", type=Path, help="results.jsonl for the benchmark summary")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = replace_section(text, "models-table", models_markdown())
    new = replace_section(
        new, "weights-table", weights_markdown(ROOT / "colorjax/weights/manifest.json")
    )
    if args.bench:
        from report import speedup_table  # a sibling: this script runs from benchmarks/

        records = [json.loads(line) for line in args.bench.read_text().splitlines() if line]
        new = replace_section(new, "bench-summary", speedup_table(records))
    if args.check:
        return 0 if new == text else 1
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
