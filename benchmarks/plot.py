"""Write the Markdown report and PNG plots of one or more `colorjax bench` results.jsonl files.

python benchmarks/plot.py benchmarks/results/cpu-2026-11-24/results.jsonl [--out DIR] [--no-plots]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from report import speedup_table, write_markdown, write_plots

from colorjax.bench import read_jsonl


def main(argv: list[str] | None = None) -> int:
    """Read one or more results.jsonl files and write results.md + PNG plots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.jsonl files (concatenated)")
    parser.add_argument("--out", help="output folder (default: folder of the first file)")
    parser.add_argument("--summary", action="store_true", help="print the speedup table")
    parser.add_argument("--no-plots", action="store_true", help="only results.md (no matplotlib)")
    args = parser.parse_args(argv)
    records = [rec for path in args.results for rec in read_jsonl(path)]
    out = Path(args.out or Path(args.results[0]).parent)
    write_markdown(records, out / "results.md")
    plots = [] if args.no_plots else write_plots(records, out)
    for path in [out / "results.md", *plots]:
        print(f"wrote {path}")
    if args.summary:
        print(speedup_table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
