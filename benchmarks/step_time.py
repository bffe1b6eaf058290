"""Time colorjax's real jitted train step for one model, with CPU time beside wall time.

Used for the before/after numbers in docs/TUNING.md. Pin it, e.g.
    taskset -c 1 python benchmarks/step_time.py deepcolorization-small --batch 8 --size 64
so CPU time / wall time shows how many cores the step really used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence

import jax
import numpy as np
from report import load_torch_bench

from colorjax.bench import real_train_step
from colorjax.hostmem import reuse_freed_memory
from colorjax.parallel import data_sharding, make_mesh


def time_step(name: str, batch: int, size: int, steps: int, warmup: int, devices: int = 1) -> dict:
    """Median wall seconds per step and the process CPU/wall ratio over the timed steps."""
    mesh = make_mesh(devices)
    tb = real_train_step(name, size, batch, "f32", mesh)
    rgb = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    data = {"rgb": jax.device_put(rgb, data_sharding(mesh))}
    state = tb.state
    for _ in range(warmup):
        state, metrics = tb.step(state, data)
    jax.block_until_ready(metrics)
    times = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = tb.step(state, data)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "model": name,
        "batch": batch,
        "size": size,
        "devices": devices,
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "cpu_ms_per_step": 1e3 * cpu / steps,
        "cpu_over_wall": cpu / wall,
        "affinity": sorted(os.sched_getaffinity(0)),
    }


def time_torch_step(name: str, batch: int, size: int, steps: int, warmup: int) -> dict:
    """The same for benchmarks/torch_bench.py's eager step, one torch thread per allowed core."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    tb = load_torch_bench()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    rec = tb.bench_train(name, size, batch, "f32", "eager", warmup, steps, 1)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "model": name,
        "batch": batch,
        "size": size,
        "framework": "torch eager",
        "threads": torch.get_num_threads(),
        "median_ms": 1e3 * statistics.median(rec["times_s"]),
        "min_ms": 1e3 * min(rec["times_s"]),
        "cpu_over_wall": cpu / wall,
        "affinity": sorted(os.sched_getaffinity(0)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print one JSON line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--torch", action="store_true", help="time PyTorch eager instead")
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="shard the batch over N devices (on CPU: XLA_FLAGS=--xla_force_host_platform_"
        "device_count=N, e.g. one per pinned core)",
    )
    parser.add_argument(
        "--malloc-reuse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="colorjax.hostmem.reuse_freed_memory first, as `colorjax bench` does (default on)",
    )
    args = parser.parse_args(argv)
    if args.malloc_reuse:
        reuse_freed_memory()
    run = (args.model, args.batch, args.size, args.steps, args.warmup)
    print(json.dumps(time_torch_step(*run) if args.torch else time_step(*run, args.devices)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
