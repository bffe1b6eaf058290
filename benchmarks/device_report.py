"""Merge the pieces of one device_run.sh call into at most 8 files (the device tool's limit).

    python benchmarks/device_report.py SCRATCH OUT

SCRATCH holds one folder per step: bench runs (results.jsonl, or results.partial.jsonl when a
run was stopped at the deadline), profile runs (profile.md, profile.json, trace.json.gz) and
loader runs (loader.jsonl). OUT gets results.jsonl (every bench record), results.md (metadata,
the speedup table, the full table, profile and loader summaries), throughput_vs_batch.png,
latency.png, the first profile's profile.json and trace.json.gz, and loader.jsonl; log.txt is
written there by device_run.sh itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from report import speedup_table, write_plots  # a sibling: this script runs from benchmarks/

from colorjax.table import render_table

MAX_FILES = 8


def bench_records(scratch: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Records of every bench step (finished or partial), speedups paired within each run."""
    from colorjax import bench

    records, notes = [], []
    for folder in sorted(p for p in scratch.iterdir() if p.is_dir()):
        done, partial = folder / "results.jsonl", folder / "results.partial.jsonl"
        if done.is_file():
            records += bench.read_jsonl(done)
        elif partial.is_file():
            part = bench.read_jsonl(partial)
            # A stopped run never reached attach_speedups; pair its rows now (same run only).
            bench.attach_speedups(part)
            records += part
            notes.append(f"{folder.name}: stopped early, {len(part)} finished records kept")
    return records, notes


def loader_records(scratch: Path) -> list[dict[str, Any]]:
    """Every loader_bench record of the call."""
    out = []
    for path in sorted(scratch.glob("*/loader.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def loader_table(records: list[dict[str, Any]]) -> str:
    """Markdown: loader images/s against the train-step rate per worker setting."""
    header = ("config", "model", "size", "batch", "workers", "loader img/s", "step img/s")
    keys = ("config", "model", "image_size", "batch_size", None, "loader_images_per_s")
    keys += ("train_step_images_per_s", "loader_to_step_ratio")
    # Numbers as loader_bench wrote them (already rounded), not re-formatted.
    rows = [
        [str(r[k]) if k else f"{r['worker_type']} x{r['num_workers']}" for k in keys]
        for r in records
    ]
    return render_table((*header, "loader/step"), rows)


def write_report(scratch: Path, out: Path, plots: bool = True) -> list[Path]:
    """Write the merged files into out; returns their paths."""
    from colorjax import bench
    from colorjax.fileio import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    records, notes = bench_records(scratch) if scratch.is_dir() else ([], [])
    parts = ["# colorjax device run", ""]
    if records:
        bench.write_jsonl(records, out / "results.jsonl")
        written.append(out / "results.jsonl")
        meta = next((r["meta"] for r in records if r.get("meta")), {})
        keys = ("device_kind", "backend", "jax", "jaxlib", "flax", "torch", "xla_flags")
        parts += [f"- {k}: `{meta.get(k)}`" for k in (*keys, "git_commit", "date")]
        parts += ["", "## colorjax vs PyTorch (same run)", "", speedup_table(records)]
        parts += ["## every record", "", bench.markdown_table(records)]
        errors = [r for r in records if r["status"] == "error"]
        parts += [
            f"- error: {r['model']} {r['kind']} {r['batch_size']}: {r['note']}" for r in errors
        ]
        if plots:
            written += write_plots(records, out)
    parts += [f"- note: {n}" for n in notes]
    profiles = sorted(scratch.glob("*/profile.md")) if scratch.is_dir() else []
    for i, path in enumerate(profiles):
        parts += [
            "",
            path.read_text().replace("# train-step profile", f"## profile {path.parent.name}"),
        ]
        if i == 0:
            # Raw profile data of the first profile only: the file limit leaves room for one.
            for name in ("profile.json", "trace.json.gz"):
                if (path.parent / name).is_file():
                    shutil.copyfile(path.parent / name, out / name)
                    written.append(out / name)
    loaders = loader_records(scratch) if scratch.is_dir() else []
    if loaders:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in loaders)
        atomic_write_text(out / "loader.jsonl", text)
        written.append(out / "loader.jsonl")
        parts += ["", "## loader vs train step", "", loader_table(loaders)]
    atomic_write_text(out / "results.md", "\n".join(parts) + "\n")
    written.append(out / "results.md")
    return written


def main(argv: list[str] | None = None) -> int:
    """Merge SCRATCH into OUT and check the device tool's file limit."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scratch", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    written = write_report(args.scratch, args.out, plots=not args.no_plots)
    files = [f for f in args.out.rglob("*") if f.is_file()]
    for path in written:
        print(f"wrote {path}")
    if len(files) > MAX_FILES:
        print(f"warning: {len(files)} files in {args.out}; the device tool returns {MAX_FILES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
