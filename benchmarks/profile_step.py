"""Profile the production train step: a jax.profiler trace, the top kernels and an HLO layout check.

    python benchmarks/profile_step.py --model colornet-base --resolution 256 --batch 64 \
        --dtype bf16 --steps 5 --out DIR
    python benchmarks/profile_step.py --summarize DIR/trace.json.gz     # re-read a saved trace

Writes to DIR: profile.md (top kernels by total device time, time per category, step wall
time, HLO counts), profile.json (the same numbers) and trace.json.gz (open in Perfetto /
TensorBoard) unless it exceeds --max-trace-mb. The step is colorjax.train's make_train_step
(the one `colorjax bench` times), compiled once, warmed up, then traced for --steps steps.
On a GPU the kernels are the CUDA kernels of the device's stream lines; on CPU they are the
XLA thunks of the executor threads (enough to check the plumbing).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from colorjax.table import render_table

# Kernel-name patterns per category, first match wins (lower-case substrings / regexes).
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("transpose/copy", r"transpose|copy|layout"),
    ("conv", r"conv|cudnn|implicit_gemm|dgrad|wgrad|fprop"),
    ("gemm", r"gemm|matmul|cutlass|xmma|dot"),
    ("reduce", r"reduce|reduction"),
    ("fusion", r"fusion|triton|loop_|input_"),
    ("memset/memcpy", r"memset|memcpy"),
)
# Derived lines in a GPU trace repeat the kernels' time; only the stream lines are counted.
_DERIVED_LINES = ("xla modules", "xla ops", "steps", "framework", "source code", "tensorflow")


def categorize(name: str) -> str:
    """Category of a kernel or op name (see CATEGORIES); 'other' when nothing matches."""
    low = name.lower()
    for cat, pattern in CATEGORIES:
        if re.search(pattern, low):
            return cat
    return "other"


def _names(events: list[dict]) -> tuple[dict[int, str], dict[tuple[int, int], str]]:
    """Process names by pid and thread names by (pid, tid) from the metadata events."""
    procs, threads = {}, {}
    for e in events:
        if e.get("ph") != "M":
            continue
        if e.get("name") == "process_name":
            procs[e["pid"]] = e["args"]["name"]
        elif e.get("name") == "thread_name":
            threads[(e["pid"], e["tid"])] = e["args"]["name"]
    return procs, threads


def kernel_events(trace: dict[str, Any]) -> tuple[list[dict], str]:
    """The device-work events of a Chrome-format trace and where they came from.

    GPU: complete events on the stream lines of '/device:...' processes (one per kernel).
    Otherwise (CPU): events that carry an 'hlo_op' argument (one per XLA thunk).
    """
    events = trace.get("traceEvents", [])
    procs, threads = _names(events)
    complete = [e for e in events if e.get("ph") == "X" and "dur" in e]
    device_pids = {pid for pid, name in procs.items() if name.startswith("/device:")}

    def on_stream(e: dict) -> bool:
        line = threads.get((e["pid"], e.get("tid")), "").lower()
        return not any(line.startswith(d) for d in _DERIVED_LINES)

    gpu = [e for e in complete if e["pid"] in device_pids and on_stream(e)]
    if gpu:
        return gpu, "device stream lines"
    ops = [e for e in complete if "hlo_op" in e.get("args", {})]
    return ops, "XLA ops on host executor threads"


def summarize_trace(trace: dict[str, Any], steps: int, top: int = 20) -> dict[str, Any]:
    """Top kernels by total time, time per category, and step wall times of one trace."""
    kernels, origin = kernel_events(trace)
    by_name: dict[str, list[float]] = defaultdict(list)
    for e in kernels:
        by_name[e["name"]].append(float(e["dur"]))
    total_us = sum(sum(d) for d in by_name.values())
    rows = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))
    top_rows = [
        {
            "name": name,
            "category": categorize(name),
            "count": len(durs),
            "total_ms": sum(durs) / 1e3,
            "mean_us": sum(durs) / len(durs),
            "share": sum(durs) / total_us if total_us else 0.0,
        }
        for name, durs in rows[:top]
    ]
    cats: dict[str, float] = defaultdict(float)
    for name, durs in by_name.items():
        cats[categorize(name)] += sum(durs)
    step_walls = [
        float(e["dur"]) / 1e3
        for e in trace.get("traceEvents", [])
        if e.get("ph") == "X" and "step_num" in e.get("args", {}) and "dur" in e
    ]
    return {
        "origin": origin,
        "steps": steps,
        "kernels": sum(len(d) for d in by_name.values()),
        "distinct_kernels": len(by_name),
        "device_time_ms": total_us / 1e3,
        "device_time_per_step_ms": total_us / 1e3 / steps if steps else None,
        "step_wall_ms": step_walls,
        "categories_ms": {k: v / 1e3 for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
        "top": top_rows,
    }


def hlo_summary(hlo_text: str) -> dict[str, Any]:
    """Counts in optimized HLO text: convolutions by layout, transposes, copies, custom calls.

    A convolution's dim_labels start with 'b01f' when its input is NHWC; transposes or copies
    next to convolutions mean layout changes XLA could not fuse away.
    """
    convs = re.findall(r"dim_labels=([a-z0-9]+)_([a-z0-9]+)->([a-z0-9]+)", hlo_text)
    instr = re.findall(r"=\s*[a-z0-9\[\]{},\s:]*?\b([a-z\-]+)\(", hlo_text)
    counts: dict[str, int] = defaultdict(int)
    for op in instr:
        counts[op] += 1
    return {
        "convolutions": len(convs),
        "conv_input_nhwc": sum(1 for c in convs if c[0] == "b01f"),
        "conv_layouts": sorted({"_".join(c[:2]) + "->" + c[2] for c in convs}),
        "transposes": counts.get("transpose", 0),
        "copies": counts.get("copy", 0),
        "custom_calls": len(re.findall(r"custom_call_target=", hlo_text)),
        "cudnn_convs": len(re.findall(r'custom_call_target="__cudnn\$conv', hlo_text)),
        "fusions": counts.get("fusion", 0),
    }


def markdown(summary: dict[str, Any], hlo: dict[str, Any] | None, meta: dict[str, Any]) -> str:
    """Human-readable report of one profile."""
    lines = ["# train-step profile", ""]
    lines += [f"- {k}: `{v}`" for k, v in meta.items()]
    walls = summary["step_wall_ms"]
    lines += [
        f"- kernels from: {summary['origin']}; {summary['kernels']} launches, "
        f"{summary['distinct_kernels']} distinct",
        f"- device time per step: {summary['device_time_per_step_ms']:.3f} ms; step wall times "
        f"(ms): {', '.join(f'{w:.3f}' for w in walls) or '-'}",
        "",
    ]
    total = summary["device_time_ms"] or 1.0
    shares = summary["categories_ms"].items()
    categories = [[c, f"{ms:.3f}", f"{ms / total:.1%}"] for c, ms in shares]
    lines.append(render_table(("category", "ms", "share"), categories))
    kernels = [
        [
            f"`{r['name'] if len(r['name']) <= 90 else r['name'][:87] + '...'}`",
            r["category"],
            str(r["count"]),
            f"{r['total_ms']:.3f}",
            f"{r['mean_us']:.1f}",
            f"{r['share']:.1%}",
        ]
        for r in summary["top"]
    ]
    header = ("kernel", "category", "count", "total ms", "mean us", "share")
    lines.append(render_table(header, kernels).rstrip("\n"))
    if hlo:
        lines += ["", "Optimized HLO: " + ", ".join(f"{k}={v}" for k, v in hlo.items())]
    return "\n".join(lines) + "\n"


def load_trace(path: Path) -> dict[str, Any]:
    """Read a (gzipped) Chrome-format trace JSON."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return json.load(fh)


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Compile, warm up and trace the train step; return summary, HLO counts and metadata."""
    import jax
    import numpy as np

    from colorjax.bench.measure import random_rgb, real_train_step, shardings
    from colorjax.parallel import make_mesh

    mesh = make_mesh(None)
    batch_sh, repl = shardings(mesh)
    tb = real_train_step(args.model, args.resolution, args.batch, args.dtype, mesh)
    state = jax.device_put(tb.state, repl)
    rgb = random_rgb(np.random.default_rng(0), args.batch, args.resolution)
    data = {"rgb": jax.device_put(rgb, batch_sh)}
    t0 = time.perf_counter()
    compiled = tb.step.lower(state, data).compile()
    compile_s = time.perf_counter() - t0
    hlo = hlo_summary(compiled.as_text())
    for _ in range(args.warmup):
        state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for i in range(args.steps):
                with jax.profiler.StepTraceAnnotation("train", step_num=i):
                    state, metrics = compiled(state, data)
                    jax.block_until_ready(metrics)
        found = sorted(Path(tmp).rglob("*.trace.json.gz"))
        if not found:
            raise RuntimeError(f"jax.profiler wrote no *.trace.json.gz under {tmp}")
        trace = load_trace(found[0])
        args.out.mkdir(parents=True, exist_ok=True)
        if found[0].stat().st_size <= args.max_trace_mb * 2**20:
            shutil.copyfile(found[0], args.out / "trace.json.gz")
    dev = jax.devices()[0]
    meta = {
        "model": args.model,
        "resolution": args.resolution,
        "batch": args.batch,
        "dtype": args.dtype,
        "device": dev.device_kind,
        "jax": jax.__version__,
        "train_step": tb.source,
        "compile_s": round(compile_s, 3),
        "steps_traced": args.steps,
    }
    return {"summary": summarize_trace(trace, args.steps, args.top), "hlo": hlo, "meta": meta}


def main(argv: list[str] | None = None) -> int:
    """Profile the step (or summarize a saved trace) and write profile.md / profile.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="colornet-tiny")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    p.add_argument("--steps", type=int, default=3, help="traced steps")
    p.add_argument("--warmup", type=int, default=2, help="untraced steps after compiling")
    p.add_argument("--top", type=int, default=25, help="kernels listed")
    p.add_argument("--max-trace-mb", type=float, default=12.0, help="copy the trace up to this")
    p.add_argument("--out", type=Path, default=Path("profile_out"))
    p.add_argument("--summarize", type=Path, help="summarize this saved trace instead")
    args = p.parse_args(argv)
    if args.summarize:
        result = {
            "summary": summarize_trace(load_trace(args.summarize), args.steps, args.top),
            "hlo": None,
            "meta": {"trace": str(args.summarize)},
        }
    else:
        result = profile(args)
    from colorjax.fileio import atomic_write_text

    args.out.mkdir(parents=True, exist_ok=True)
    report = markdown(result["summary"], result["hlo"], result["meta"])
    atomic_write_text(args.out / "profile.md", report)
    atomic_write_text(
        args.out / "profile.json", json.dumps(result, indent=1, sort_keys=True) + "\n"
    )
    print(report)
    print(f"wrote {args.out / 'profile.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
