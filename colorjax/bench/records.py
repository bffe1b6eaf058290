"""Benchmark records: the schema, metadata, timing/FLOP fields, speedups, JSONL and the table."""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from colorjax.bench.threads import xla_cpu_pool_threads
from colorjax.fileio import atomic_write_text
from colorjax.table import fmt_cell, render_table

SCHEMA_VERSION = 2

# Dense peak TFLOP/s per device kind (matched as a lower-case substring of device_kind, first
# match wins, so more specific names come first). Sources: vendor datasheets, dense (no sparsity).
# f32 on NVIDIA is the plain FP32 peak; XLA may run f32 convs/matmuls in TF32 on Ampere+ (see
# benchmarks/README.md), so f32 MFU against this table can look high.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("h100 pcie", {"bf16": 756.0, "f32": 51.0}),
    ("h100", {"bf16": 989.0, "f32": 67.0}),
    ("h200", {"bf16": 989.0, "f32": 67.0}),
    ("h800", {"bf16": 989.0, "f32": 67.0}),
    ("a100", {"bf16": 312.0, "f32": 19.5}),
    ("l4", {"bf16": 121.0, "f32": 30.3}),
    # TPUs have no separate f32 matrix peak; f32 matmuls run as bf16 passes, so the bf16 peak is
    # the meaningful ceiling for both.
    ("tpu v4", {"bf16": 275.0, "f32": 275.0}),
    ("tpu v5 lite", {"bf16": 197.0, "f32": 197.0}),
    ("tpu v5e", {"bf16": 197.0, "f32": 197.0}),
    ("tpu v5p", {"bf16": 459.0, "f32": 459.0}),
    ("tpu v5", {"bf16": 459.0, "f32": 459.0}),
    ("tpu v6", {"bf16": 918.0, "f32": 918.0}),
)

# Every record carries every key (null + a reason in `null_reasons` when not applicable), so
# downstream tables and plots never have to guess whether a field exists.
RECORD_FIELDS: tuple[str, ...] = (
    "schema_version",
    "status",
    "kind",
    "framework",
    "mode",
    "model",
    "params",
    "resolution",
    "batch_size",
    "image_size",
    "dtype",
    "device_count",
    "trials",
    "iters_per_trial",
    "warmup",
    "threads",
    "cpu_per_wall",
    "thread_check",
    "times_s",
    "median_s",
    "q25_s",
    "q75_s",
    "iqr_s",
    "min_s",
    "max_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "images_per_s",
    "images_per_s_best",
    "images_per_s_worst",
    "lower_s",
    "compile_s",
    "flops_per_step_cost_analysis",
    "flops_per_step_analytic",
    "flops_ratio_cost_to_analytic",
    "achieved_tflops",
    "peak_tflops",
    "mfu",
    "peak_memory_bytes",
    "compiled_memory_bytes",
    "loader_images_per_s",
    "speedup_vs_torch_eager",
    "speedup_vs_torch_compile",
    "train_step",
    "note",
    "null_reasons",
    "meta",
)


def lookup_peak_tflops(device_kind: str, dtype: str, override: float | None = None) -> float | None:
    """Dense peak TFLOP/s for a device kind and dtype ('bf16'|'f32'); `override` wins."""
    if override is not None:
        return float(override)
    kind = device_kind.lower()
    for key, peaks in PEAK_TFLOPS:
        if key in kind:
            return peaks.get(dtype)
    return None


def summarize_times(times: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, IQR, min/max (seconds) and p50/p90/p99 (milliseconds) of samples."""
    arr = np.asarray(times, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"need at least one finite timing sample, got {list(times)!r}")
    q25, med, q75 = np.percentile(arr, [25, 50, 75])
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "median_s": float(med),
        "q25_s": float(q25),
        "q75_s": float(q75),
        "iqr_s": float(q75 - q25),
        "min_s": float(arr.min()),
        "max_s": float(arr.max()),
        "p50_ms": float(p50 * 1e3),
        "p90_ms": float(p90 * 1e3),
        "p99_ms": float(p99 * 1e3),
    }


def throughput_fields(times: Sequence[float], images_per_call: int) -> dict[str, Any]:
    """Timing summary plus images/s at the median, best and worst trial."""
    stats = summarize_times(times)
    return {
        "times_s": [float(t) for t in times],
        **stats,
        "images_per_s": images_per_call / stats["median_s"],
        "images_per_s_best": images_per_call / stats["min_s"],
        "images_per_s_worst": images_per_call / stats["max_s"],
    }


def flops_fields(
    analytic: int | None, cost: float | None, median_s: float, peak: float | None
) -> dict[str, Any]:
    """FLOP counts, their ratio, achieved TFLOP/s and MFU (from the analytic count)."""
    reasons: dict[str, str] = {}
    # The analytic conv/matmul count is the model FLOPs; cost analysis also counts elementwise
    # work and is unreliable on backends that lower convs to library calls.
    flops = analytic if analytic else cost
    achieved = flops / median_s / 1e12 if flops else None
    if cost is None:
        reasons["flops_per_step_cost_analysis"] = "compiled.cost_analysis() gave no flops"
    if peak is None:
        reasons["peak_tflops"] = "unknown device peak; pass --peak-tflops"
        reasons["mfu"] = "unknown device peak; pass --peak-tflops"
    return {
        "flops_per_step_analytic": analytic,
        "flops_per_step_cost_analysis": cost,
        "flops_ratio_cost_to_analytic": (cost / analytic) if (cost and analytic) else None,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "mfu": (achieved / peak) if (achieved and peak) else None,
        "null_reasons": reasons,
    }


def make_record(**fields: Any) -> dict[str, Any]:
    """A record with every schema field; missing ones are null with a reason in null_reasons."""
    reasons = dict(fields.pop("null_reasons", {}) or {})
    record = {key: fields.get(key) for key in RECORD_FIELDS}
    record["schema_version"] = SCHEMA_VERSION
    record["status"] = fields.get("status", "ok")
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"unknown record fields {sorted(unknown)}")
    for key in RECORD_FIELDS:
        if record[key] is None and key not in reasons:
            reasons[key] = "not applicable to this kind"
    record["null_reasons"] = {k: v for k, v in reasons.items() if record.get(k) is None}
    return record


# ----------------------------------------------------------------------------- metadata


def _version(module: str) -> str | None:
    """Installed version of a module, or None when it is not importable."""
    try:
        return importlib.import_module(module).__version__
    except Exception:  # noqa: BLE001 - optional packages
        return None


def _git_commit() -> str | None:
    """Commit of the checkout the package runs from (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except Exception:  # noqa: BLE001 - no git, not a checkout
        return None


def collect_metadata(
    devices: Sequence[Any],
    dtype: str,
    with_torch: bool,
    threads: int | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Device, software and host facts attached to every record."""
    dev = devices[0]
    affinity = sorted(os.sched_getaffinity(0))
    return {
        "device_kind": dev.device_kind,
        "device_count": len(devices),
        "devices_available": jax.device_count(),
        "backend": jax.default_backend(),
        "platform": dev.platform,
        "process_count": jax.process_count(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "flax": _version("flax"),
        "optax": _version("optax"),
        "numpy": np.__version__,
        "torch": _version("torch") if with_torch else None,
        "python": platform.python_version(),
        "dtype": dtype,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "xla_preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        # Compute threads per framework = CPUs the process is pinned to (verified per row by
        # cpu_per_wall); torch gets torch.set_num_threads(threads).
        "threads": threads or len(affinity),
        "cpu_affinity": affinity,
        "xla_cpu_pool_threads": xla_cpu_pool_threads(),
        "note": note,
        "git_commit": _git_commit(),
        "hostname": socket.gethostname(),
        "argv": list(sys.argv),
        "cpu_count": os.cpu_count(),
        # Shared hosts skew timings; the load at start says how much to trust them.
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# ----------------------------------------------------------------------------- speedups


def _config_key(rec: dict[str, Any]) -> tuple:
    """Identity of one measured configuration, framework and mode aside."""
    return (rec["kind"], rec["model"], rec["resolution"], rec["batch_size"], rec["dtype"])


def attach_speedups(records: list[dict[str, Any]]) -> None:
    """colorjax/PyTorch images/s per configuration (same run); torch rows get colorjax's FLOPs.

    Both frameworks run the same network and step, so the analytic FLOP count of the colorjax
    step is the model FLOPs of the PyTorch one too; that gives every torch row an MFU.
    """
    ours = {
        _config_key(r): r
        for r in records
        if r["framework"] == "colorjax" and r["status"] == "ok" and r["images_per_s"]
    }
    for rec in records:
        if rec["framework"] != "torch" or rec["status"] != "ok" or not rec["images_per_s"]:
            continue
        mine = ours.get(_config_key(rec))
        if mine is None:
            continue
        if mine["flops_per_step_analytic"]:
            flops = flops_fields(
                mine["flops_per_step_analytic"], None, rec["median_s"], mine["peak_tflops"]
            )
            reasons = flops.pop("null_reasons")
            reasons.pop("flops_per_step_cost_analysis", None)
            del flops["flops_per_step_cost_analysis"], flops["flops_ratio_cost_to_analytic"]
            rec.update(flops)
            for key in list(rec["null_reasons"]):
                if rec.get(key) is not None:
                    del rec["null_reasons"][key]
            rec["null_reasons"].update({k: v for k, v in reasons.items() if rec.get(k) is None})
        field = f"speedup_vs_torch_{rec['mode']}"
        if field not in mine:
            continue
        flagged = [r["thread_check"] for r in (mine, rec) if r.get("thread_check")]
        if flagged:
            # Refused: a ratio between rows that did not get their stated cores is not fair.
            mine[field] = None
            mine["null_reasons"][field] = "thread check failed: " + "; ".join(flagged)
            continue
        mine[field] = mine["images_per_s"] / rec["images_per_s"]
        mine["null_reasons"].pop(field, None)


# ----------------------------------------------------------------------------- files and table


def _json_default(value: Any) -> Any:
    """Make numpy scalars JSON-serialisable."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> None:
    """One JSON object per line, written atomically."""
    text = "".join(json.dumps(r, default=_json_default, sort_keys=True) + "\n" for r in records)
    atomic_write_text(path, text)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records from a results.jsonl file."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


TABLE_HEADER = (
    "kind", "framework", "mode", "model", "res", "batch", "dtype", "threads", "CPU/wall",
    "img/s", "median ms", "IQR ms", "p50/p90/p99 ms", "compile s", "GFLOP/step (analytic)",
    "cost/analytic", "TFLOP/s", "MFU", "mem MiB", "vs torch eager", "vs torch compile",
)  # fmt: skip


def _table_row(r: dict[str, Any]) -> list[Any]:
    """One record's cells for `markdown_table`."""
    pct = (
        f"{r['p50_ms']:.3g}/{r['p90_ms']:.3g}/{r['p99_ms']:.3g}"
        if r["kind"] == "infer_latency"
        else "-"
    )
    mem = r["peak_memory_bytes"] or r["compiled_memory_bytes"]
    flops = r["flops_per_step_analytic"]
    return [
        r["kind"],
        r["framework"],
        r["mode"],
        r["model"],
        r["image_size"] if r["kind"] == "colorize" else r["resolution"],
        r["batch_size"],
        r["dtype"],
        r.get("threads"),
        fmt_cell(r.get("cpu_per_wall"), ".2f") + (" (!)" if r.get("thread_check") else ""),
        fmt_cell(r["images_per_s"], ".4g"),
        r["median_s"] * 1e3 if r["median_s"] else None,
        r["iqr_s"] * 1e3 if r["iqr_s"] is not None else None,
        pct,
        r["compile_s"],
        flops / 1e9 if flops else None,
        r["flops_ratio_cost_to_analytic"],
        r["achieved_tflops"],
        r["mfu"],
        fmt_cell(mem / 2**20 if mem else None, ".4g"),
        r["speedup_vs_torch_eager"],
        r["speedup_vs_torch_compile"],
    ]


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """A Markdown summary: one row per successfully measured configuration."""
    rows = [_table_row(r) for r in records if r["status"] == "ok"]
    return render_table(TABLE_HEADER, rows)
