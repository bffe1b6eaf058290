"""Benchmark reports from bench records: the Markdown report, the speedup table, PNG plots.

Also the one way the benchmark scripts load the PyTorch side (`load_torch_bench`). Imported by
plot.py, device_report.py, update_readme.py and step_time.py, all run from this folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from colorjax.bench import load_module, markdown_table
from colorjax.errors import ConfigError
from colorjax.fileio import atomic_write_text
from colorjax.table import render_table

HERE = Path(__file__).resolve().parent


def load_torch_bench(path: str | os.PathLike | None = None) -> ModuleType:
    """benchmarks/torch_bench.py (or `path`) as a module; ConfigError without PyTorch."""
    return load_module(path or HERE / "torch_bench.py")


def speedup_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: colorjax vs PyTorch eager / torch.compile images/s per configuration."""
    header = (
        "kind", "model", "res", "batch", "dtype", "colorjax img/s", "torch eager",
        "torch.compile", "x eager", "x compile", "MFU",
    )  # fmt: skip
    ok = [r for r in records if r["status"] == "ok"]
    by_mode = {
        (r["kind"], r["model"], r["resolution"], r["batch_size"], r["dtype"], r["mode"]): r
        for r in ok
        if r["framework"] == "torch"
    }
    rows = []
    for r in ok:
        if r["framework"] != "colorjax" or r["speedup_vs_torch_eager"] is None:
            continue
        key = (r["kind"], r["model"], r["resolution"], r["batch_size"], r["dtype"])
        eager, comp = by_mode.get((*key, "eager")), by_mode.get((*key, "compile"))
        rows.append(
            [
                *map(str, key),
                f"{r['images_per_s']:.4g}",
                f"{eager['images_per_s']:.4g}" if eager else "-",
                f"{comp['images_per_s']:.4g}" if comp else "-",
                f"{r['speedup_vs_torch_eager']:.2f}",
                f"{r['speedup_vs_torch_compile']:.2f}" if r["speedup_vs_torch_compile"] else "-",
                f"{r['mfu']:.3g}" if r["mfu"] is not None else "n/a",
            ]
        )
    return render_table(header, rows)


def write_markdown(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Markdown report: metadata header, results table, rows that failed the thread check."""
    meta = next((r["meta"] for r in records if r.get("meta")), {})
    keys = ("device_kind", "device_count", "backend", "jax", "jaxlib", "flax", "torch", "dtype")
    keys += ("threads", "cpu_affinity", "xla_cpu_pool_threads", "torch_threads", "xla_flags")
    keys += ("omp_num_threads", "load_average_1m", "note", "git_commit", "hostname", "date")
    header = "\n".join(f"- {k}: `{meta.get(k)}`" for k in keys)
    flagged = [
        f"- {r['framework']}/{r['mode']} {r['kind']} {r['model']} {r['resolution']}px "
        f"batch {r['batch_size']}: {r['thread_check']}"
        for r in records
        if r["status"] == "ok" and r.get("thread_check")
    ]
    legend = (
        "CPU/wall = process CPU time / wall time over the timed calls; (!) = thread check "
        "failed (listed below), its speedups are withheld.\n"
    )
    flags = "\n## Thread check failures\n\n" + "\n".join(flagged) + "\n" if flagged else ""
    body = f"# colorjax benchmark\n\n{header}\n\n{legend}\n{markdown_table(records)}{flags}"
    atomic_write_text(path, body)


def write_plots(records: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """PNG plots: train throughput vs batch size, batch-1 latency distribution."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ConfigError(
            "plots need matplotlib: pip install 'colorjax[plots]' (or pass --no-plots)"
        ) from err
    written = []
    ok = [r for r in records if r["status"] == "ok"]
    train = [r for r in ok if r["kind"] == "train"]
    if train:
        fig, ax = plt.subplots(figsize=(8, 5))
        series: dict[tuple, list[tuple[int, float]]] = {}
        for r in train:
            key = (r["framework"], r["mode"], r["model"], r["resolution"], r["dtype"])
            series.setdefault(key, []).append((r["batch_size"], r["images_per_s"]))
        for key, pts in sorted(series.items()):
            pts.sort()
            style = "-" if key[0] == "colorjax" else ("--" if key[1] == "compile" else ":")
            label = f"{key[2]} {key[3]}px {key[0]}/{key[1]} {key[4]}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("training images/s")
        ax.set_title(f"train throughput ({ok[0]['meta']['device_kind']})")
        ax.legend(fontsize=6)
        fig.tight_layout()
        written.append(_save_fig(fig, out_dir / "throughput_vs_batch.png"))
        plt.close(fig)
    lat = [r for r in ok if r["kind"] == "infer_latency"]
    if lat:
        fig, ax = plt.subplots(figsize=(max(6, len(lat) * 0.6), 5))
        labels = [f"{r['model']}\n{r['resolution']}px {r['framework']}/{r['mode']}" for r in lat]
        ax.boxplot([np.asarray(r["times_s"]) * 1e3 for r in lat], whis=(1, 99))
        ax.set_xticks(range(1, len(lat) + 1), labels, rotation=60, fontsize=6, ha="right")
        ax.set_ylabel("batch-1 latency (ms)")
        ax.set_yscale("log")
        ax.set_title("inference latency distribution (whiskers p1-p99)")
        fig.tight_layout()
        written.append(_save_fig(fig, out_dir / "latency.png"))
        plt.close(fig)
    return written


def _save_fig(fig: Any, path: Path) -> Path:
    """Save a figure atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    return path
