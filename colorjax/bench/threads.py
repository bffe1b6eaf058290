"""Fair CPU timing: pin threads, time synced calls, check CPU time against wall time per row.

A CPU row is only comparable with another when both got the cores they claim: `--threads N`
pins the process to N CPUs before any backend starts, every row records its CPU/wall ratio,
and a row whose ratio does not fit N is re-timed, then flagged (issue #15 relies on this).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from colorjax.errors import ConfigError

logger = logging.getLogger(__name__)

# A 1-thread row must keep its core busy: CPU/wall below 1 - tol means the process waited for
# the CPU (a shared, overloaded host) and its wall times are inflated; above threads + tol it
# ran more compute threads than claimed.
CPU_WALL_TOLERANCE = 0.1


def time_calls(
    call: Callable[[], Any],
    *,
    warmup: int,
    trials: int,
    iters: int = 1,
    usage: dict[str, float] | None = None,
) -> list[float]:
    """Seconds per call for each trial (mean over `iters` calls), warm-up excluded, synced.

    `usage`, if given, receives the process CPU seconds and wall seconds of the timed trials.
    """
    for _ in range(warmup):
        jax.block_until_ready(call())
    times = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(trials):
        start = time.perf_counter()
        out = None
        for _ in range(iters):
            out = call()
        # Dispatch is async: only the final sync tells us the device really finished.
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / iters)
    if usage is not None:
        usage.update(cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0)
    return times


def pin_threads(threads: int | None) -> list[int]:
    """Pin this process to its first `threads` allowed CPUs (all if None); return the CPU ids.

    Must run before the JAX CPU backend starts: XLA sizes its CPU thread pool from the
    affinity mask at start-up, and threads started later (XLA's, PyTorch's) inherit it.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if threads is None:
        return allowed
    if not 1 <= threads <= len(allowed):
        raise ConfigError(
            f"--threads {threads} but this process may use {len(allowed)} CPUs {allowed}; "
            f"pass 1..{len(allowed)} (or widen the affinity, e.g. taskset)"
        )
    cpus = allowed[:threads]
    os.sched_setaffinity(0, cpus)
    return cpus


def xla_cpu_pool_threads() -> int | None:
    """Threads in XLA's CPU compute pool ('tf_XLAEigen'), read from /proc; None if unknown."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return None
    count = 0
    for task in tasks.iterdir():
        try:
            count += (task / "comm").read_text().strip() == "tf_XLAEigen"
        except OSError:  # a thread that ended while we looked
            continue
    return count or None


def check_cpu_use(cpu_per_wall: float | None, threads: int, backend: str) -> str | None:
    """None when a CPU row's CPU/wall ratio fits its thread count, else why it does not."""
    if backend != "cpu" or cpu_per_wall is None:
        return None
    if cpu_per_wall > threads + CPU_WALL_TOLERANCE:
        return f"CPU/wall {cpu_per_wall:.2f} > {threads} threads: more compute threads than set"
    if cpu_per_wall < 1 - CPU_WALL_TOLERANCE:
        return f"CPU/wall {cpu_per_wall:.2f} < 1: process waited for a CPU (host overloaded)"
    return None


def usage_fields(usage: dict[str, float], threads: int, backend: str) -> dict[str, Any]:
    """threads, cpu_per_wall and thread_check fields of a record from `time_calls` usage."""
    ratio = usage["cpu_s"] / usage["wall_s"] if usage.get("wall_s") else None
    return {
        "threads": threads,
        "cpu_per_wall": ratio,
        "thread_check": check_cpu_use(ratio, threads, backend),
    }


def checked_times(
    call: Callable[[], Any],
    *,
    threads: int,
    backend: str,
    retries: int,
    warmup: int,
    trials: int,
    iters: int,
) -> tuple[list[float], dict[str, Any]]:
    """`time_calls`, re-timed (up to `retries` times) while the CPU/wall check fails.

    Returns the first passing timing, else the one whose CPU/wall is closest to 1.
    """
    best: tuple[list[float], dict[str, Any]] | None = None
    for _ in range(1 + retries):
        usage: dict[str, float] = {}
        times = time_calls(call, warmup=warmup, trials=trials, iters=iters, usage=usage)
        fields = usage_fields(usage, threads, backend)
        if fields["thread_check"] is None:
            return times, fields
        if best is None or abs((fields["cpu_per_wall"] or 0) - 1) < abs(
            (best[1]["cpu_per_wall"] or 0) - 1
        ):
            best = (times, fields)
        logger.warning("re-timing: %s", fields["thread_check"])
    assert best is not None
    return best


def checked_rows(
    measure: Callable[[], Any], *, threads: int, backend: str, retries: int
) -> tuple[Any, int]:
    """Re-run `measure` (one result row or a list of rows, each with 'cpu_per_wall').

    Stops at the first run whose rows all pass the CPU/wall check; otherwise returns the run
    with the fewest failing rows. Returns (result, failing rows). Used for the PyTorch side,
    which times itself.
    """
    best, best_failed = None, None
    for _ in range(1 + retries):
        out = measure()
        rows = out if isinstance(out, list) else [out]
        checks = [check_cpu_use(r.get("cpu_per_wall"), threads, backend) for r in rows]
        failed = sum(c is not None for c in checks)
        if best_failed is None or failed < best_failed:
            best, best_failed = out, failed
        if not failed:
            break
        logger.warning("re-timing: %s", [c for c in checks if c])
    return best, int(best_failed or 0)
