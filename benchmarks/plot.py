"""Redraw the Markdown table and PNG plots from a results.jsonl (e.g. merged from several runs).

python benchmarks/plot.py benchmarks/results/cpu-2026-11-24/results.jsonl [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from colorjax import bench


def speedup_table(records: list[dict]) -> str:
    """Markdown: colorjax vs PyTorch eager / torch.compile images/s per configuration."""
    rows = [
        "| kind | model | res | batch | dtype | colorjax img/s | torch eager | torch.compile "
        "| x eager | x compile | MFU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ok = [r for r in records if r["status"] == "ok"]
    by_mode = {
        (r["kind"], r["model"], r["resolution"], r["batch_size"], r["dtype"], r["mode"]): r
        for r in ok
        if r["framework"] == "torch"
    }
    for r in ok:
        if r["framework"] != "colorjax" or r["speedup_vs_torch_eager"] is None:
            continue
        key = (r["kind"], r["model"], r["resolution"], r["batch_size"], r["dtype"])
        eager, comp = by_mode.get((*key, "eager")), by_mode.get((*key, "compile"))
        cells = [
            *map(str, key),
            f"{r['images_per_s']:.4g}",
            f"{eager['images_per_s']:.4g}" if eager else "-",
            f"{comp['images_per_s']:.4g}" if comp else "-",
            f"{r['speedup_vs_torch_eager']:.2f}",
            f"{r['speedup_vs_torch_compile']:.2f}" if r["speedup_vs_torch_compile"] else "-",
            f"{r['mfu']:.3g}" if r["mfu"] is not None else "n/a",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Read one or more results.jsonl files and write results.md + PNG plots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.jsonl files (concatenated)")
    parser.add_argument("--out", help="output folder (default: folder of the first file)")
    parser.add_argument("--summary", action="store_true", help="print the speedup table")
    args = parser.parse_args(argv)
    records = [rec for path in args.results for rec in bench.read_jsonl(path)]
    out = Path(args.out or Path(args.results[0]).parent)
    bench.write_markdown(records, out / "results.md")
    for path in [out / "results.md", *bench.write_plots(records, out)]:
        print(f"wrote {path}")
    if args.summary:
        print(speedup_table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
