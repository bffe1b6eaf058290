"""Benchmark harness: throughput, latency, compile time, memory, FLOPs, MFU (`colorjax bench`)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib
import importlib.util
import json
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.errors import ConfigError, MissingDependencyError
from colorjax.fileio import atomic_write_text, ensure_output_dir

log = logging.getLogger(__name__)

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

DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16}
QUICK_MODELS = ("colornet-tiny", "deepcolorization-small")

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


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Everything one harness invocation needs; built from CLI args, never read from globals."""

    models: tuple[str, ...]
    resolutions: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    dtype: str = "f32"
    device_count: int | None = None
    trials: int = 5
    warmup: int = 2
    iters_per_trial: int = 5
    latency_samples: int = 50
    infer_batch: int | None = None
    photo_sizes: tuple[tuple[int, int], ...] = ((1024, 1024), (4000, 3000))
    loader_batches: int = 5
    kinds: tuple[str, ...] = ("train", "train_e2e", "infer", "colorize", "loader")
    torch: bool = False
    torch_modes: tuple[str, ...] = ("eager", "compile")
    torch_module: str | None = None
    peak_tflops: float | None = None
    out_dir: str = "bench_out"
    plots: bool = True
    data_source: str = "embedded"
    # Compute threads per framework (CPU cores the process is pinned to); None = all allowed.
    threads: int | None = None
    # Re-time a CPU row whose CPU/wall ratio fails the thread check up to this many times.
    thread_retries: int = 2
    note: str | None = None


# ----------------------------------------------------------------------------- statistics


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


# ----------------------------------------------------------------------------- threads

# A 1-thread row must keep its core busy: CPU/wall below 1 - tol means the process waited for
# the CPU (a shared, overloaded host) and its wall times are inflated; above threads + tol it
# ran more compute threads than claimed.
CPU_WALL_TOLERANCE = 0.1


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


def _usage_fields(ctx: Ctx, usage: dict[str, float]) -> dict[str, Any]:
    """threads, cpu_per_wall and thread_check fields for a record."""
    ratio = usage["cpu_s"] / usage["wall_s"] if usage.get("wall_s") else None
    threads = ctx.meta["threads"]
    return {
        "threads": threads,
        "cpu_per_wall": ratio,
        "thread_check": check_cpu_use(ratio, threads, ctx.meta["backend"]),
    }


def _checked_times(
    ctx: Ctx, call: Callable[[], Any], *, warmup: int, trials: int, iters: int
) -> tuple[list[float], dict[str, Any]]:
    """time_calls, re-timed (up to cfg.thread_retries) while the CPU/wall check fails."""
    best: tuple[list[float], dict[str, Any]] | None = None
    for _ in range(1 + ctx.cfg.thread_retries):
        usage: dict[str, float] = {}
        times = time_calls(call, warmup=warmup, trials=trials, iters=iters, usage=usage)
        fields = _usage_fields(ctx, usage)
        if fields["thread_check"] is None:
            return times, fields
        if best is None or abs((fields["cpu_per_wall"] or 0) - 1) < abs(
            (best[1]["cpu_per_wall"] or 0) - 1
        ):
            best = (times, fields)
        log.warning("re-timing: %s", fields["thread_check"])
    assert best is not None
    return best


# ----------------------------------------------------------------------------- FLOP counting


def _valid_pairs(
    in_size: int,
    out_size: int,
    kernel: int,
    stride: int,
    pad_lo: int,
    lhs_dil: int,
    rhs_dil: int,
) -> int:
    """Number of (output, kernel tap) pairs along one spatial dim that hit a real input pixel."""
    dilated = (in_size - 1) * lhs_dil + 1 if in_size > 0 else 0
    count = 0
    for j in range(kernel):
        # Input coordinate in the dilated, padded frame for every output position at once.
        pos = np.arange(out_size) * stride + j * rhs_dil - pad_lo
        ok = (pos >= 0) & (pos < dilated) & (pos % lhs_dil == 0)
        count += int(ok.sum())
    return count


def conv_flops(eqn: Any) -> int:
    """FLOPs (2 per multiply-add) of one conv_general_dilated, skipping padding/dilation holes."""
    params = eqn.params
    lhs_shape = eqn.invars[0].aval.shape
    rhs_shape = eqn.invars[1].aval.shape
    out_shape = eqn.outvars[0].aval.shape
    dn = params["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    out_batch = out_shape[out_spec[0]]
    out_feat = rhs_shape[rhs_spec[0]]
    in_feat_per_group = rhs_shape[rhs_spec[1]]
    pairs = 1
    for d in range(len(lhs_spec) - 2):
        pad_lo = params["padding"][d][0]
        pairs *= _valid_pairs(
            in_size=lhs_shape[lhs_spec[2 + d]],
            out_size=out_shape[out_spec[2 + d]],
            kernel=rhs_shape[rhs_spec[2 + d]],
            stride=params["window_strides"][d],
            pad_lo=pad_lo,
            lhs_dil=params["lhs_dilation"][d],
            rhs_dil=params["rhs_dilation"][d],
        )
    return 2 * out_batch * out_feat * in_feat_per_group * pairs


def dot_flops(eqn: Any) -> int:
    """FLOPs of one dot_general: 2 x output elements x contracted size."""
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs_shape = eqn.invars[0].aval.shape
    contract = math.prod(lhs_shape[d] for d in lhs_contract)
    return 2 * math.prod(eqn.outvars[0].aval.shape) * contract


def _sub_jaxprs(value: Any) -> Iterable[Any]:
    """Jaxprs nested in an equation parameter (pjit, custom_vjp, remat, cond branches...)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)


def jaxpr_flops(jaxpr: Any) -> int:
    """Analytic conv + matmul FLOPs of a (closed) jaxpr, recursing into sub-jaxprs."""
    jaxpr = jaxpr.jaxpr if hasattr(jaxpr, "jaxpr") and hasattr(jaxpr.jaxpr, "eqns") else jaxpr
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            total += conv_flops(eqn)
        elif name == "dot_general":
            total += dot_flops(eqn)
        # A scan body runs `length` times; cond counts its most expensive branch; while loops
        # have unknown trip counts and are counted once (none in our models).
        mult = int(eqn.params.get("length", 1)) if name == "scan" else 1
        if name == "cond":
            branch = [jaxpr_flops(b) for b in eqn.params["branches"]]
            total += max(branch, default=0)
            continue
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                total += mult * jaxpr_flops(sub)
    return total


def analytic_flops(fn: Callable[..., Any], *args: Any) -> int:
    """Trace `fn(*args)` and count its conv/matmul FLOPs (independent of XLA's cost analysis)."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args))


def cost_analysis_flops(compiled: Any) -> float | None:
    """FLOPs reported by a compiled executable (dict or list-of-dicts by JAX version), or None."""
    try:
        cost = compiled.cost_analysis()
    except Exception as err:  # noqa: BLE001 - backends may not implement it at all
        log.debug("cost_analysis unavailable: %s", err)
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    flops = float(cost["flops"])
    return flops if flops > 0 and math.isfinite(flops) else None


def compiled_memory_bytes(compiled: Any) -> int | None:
    """Static device memory an executable needs (arguments + outputs + temporaries - aliases)."""
    try:
        mem = compiled.memory_analysis()
    except Exception as err:  # noqa: BLE001 - optional backend feature
        log.debug("memory_analysis unavailable: %s", err)
        return None
    if mem is None:
        return None
    total = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )
    return int(total) if total > 0 else None


def peak_memory_bytes(devices: Sequence[Any]) -> tuple[int | None, str | None]:
    """Largest `peak_bytes_in_use` over devices, or (None, reason) when the backend has none."""
    peaks = []
    for dev in devices:
        try:
            stats = dev.memory_stats()
        except Exception:  # noqa: BLE001 - not implemented on some backends
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    if not peaks:
        return None, f"{devices[0].platform} backend has no memory_stats()"
    return max(peaks), None


def lookup_peak_tflops(device_kind: str, dtype: str, override: float | None = None) -> float | None:
    """Dense peak TFLOP/s for a device kind and dtype ('bf16'|'f32'); `override` wins."""
    if override is not None:
        return float(override)
    kind = device_kind.lower()
    for key, peaks in PEAK_TFLOPS:
        if key in kind:
            return peaks.get(dtype)
    return None


# ----------------------------------------------------------------------------- metadata


def _version(module: str) -> str | None:
    """Installed version of a module, or None when it is not importable."""
    try:
        return importlib.import_module(module).__version__
    except Exception:  # noqa: BLE001 - optional packages
        return None


def _git_commit() -> str | None:
    """Commit of the checkout the package runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).resolve().parent,
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
    meta = {
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
    return meta


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


def _throughput_fields(times: Sequence[float], images_per_call: int) -> dict[str, Any]:
    """Timing summary plus images/s at the median, best and worst trial."""
    stats = summarize_times(times)
    return {
        "times_s": [float(t) for t in times],
        **stats,
        "images_per_s": images_per_call / stats["median_s"],
        "images_per_s_best": images_per_call / stats["min_s"],
        "images_per_s_worst": images_per_call / stats["max_s"],
    }


def _flops_fields(
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


# ----------------------------------------------------------------------------- model plumbing


def _models_api() -> Any:
    """The colorjax.models module (imported lazily so `colorjax bench --help` stays cheap)."""
    return importlib.import_module("colorjax.models")


def _mesh(device_count: int | None) -> Any:
    """Mesh over the first `device_count` devices with axis 'data' (colorjax.parallel)."""
    try:
        parallel = importlib.import_module("colorjax.parallel")
    except ModuleNotFoundError:
        # Only while colorjax.parallel is not in the checkout yet: the same 1-axis mesh.
        from jax.sharding import Mesh

        devices = jax.devices()[: device_count or jax.device_count()]
        return Mesh(np.asarray(devices), ("data",))
    return parallel.make_mesh(device_count)


def _shardings(mesh: Any) -> tuple[Any, Any]:
    """(batch-sharded, replicated) NamedShardings over the mesh's 'data' axis."""
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())


def _stride(model: Any) -> int:
    """Required divisor of H and W for a model (1 if it does not say)."""
    return int(getattr(model, "stride", 1) or 1)


def _random_rgb(rng: np.random.Generator, batch: int, size: int) -> np.ndarray:
    """Smooth random uint8 RGB images: gradients + noise, so colour conversion is non-trivial."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    base = np.stack([xx, yy, 1 - xx * yy], axis=-1)[None]
    noise = rng.random((batch, size, size, 3), dtype=np.float32) * 0.3
    return np.clip((base * 0.7 + noise) * 255, 0, 255).astype(np.uint8)


def _init_variables(model: Any, size: int, seed: int = 0) -> Any:
    """Random-init variables for a model at a given input size."""
    l_norm = jnp.zeros((1, size, size, 1), jnp.float32)
    return jax.jit(model.init)(jax.random.PRNGKey(seed), l_norm)


def _lab_inputs(rgb_u8: jax.Array) -> tuple[jax.Array, jax.Array]:
    """uint8 RGB -> (l_norm, ab_norm), on device (colorjax.color)."""
    color = importlib.import_module("colorjax.color")
    return color.rgb_uint8_to_lab_inputs(rgb_u8)


# Train steps: the real one from colorjax.train (the production jitted step, state donated,
# batch sharded on 'data'). The fallback below times the same work (Lab conversion, forward,
# loss, backward, Adam; GAN = D update then G update) and is used only where colorjax.train is
# not importable (e.g. a partial checkout); records say which one ran in `train_step`.


@dataclasses.dataclass
class TrainBench:
    """A `step(state, batch) -> (state, metrics)` (jitted or not) and its initial state."""

    step: Callable[[Any, Any], Any]
    state: Any
    source: str
    jitted: bool = False


_DTYPE_NAMES = {"f32": "float32", "bf16": "bfloat16"}


def _real_train_step(name: str, size: int, batch: int, dtype: str, mesh: Any) -> TrainBench:
    """colorjax.train's make_train_step for a default experiment config of this model/size."""
    from colorjax.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
    from colorjax.train.state import create_state, make_task
    from colorjax.train.steps import make_train_step

    config = ExperimentConfig(
        model=ModelConfig(name=name),
        data=DataConfig(image_size=size),
        train=TrainConfig(batch_size=batch, dtype=_DTYPE_NAMES[dtype], steps=1_000_000),
    )
    task = make_task(config)
    return TrainBench(
        step=make_train_step(task, mesh),
        state=create_state(task, mesh),
        source="colorjax.train.steps.make_train_step",
        jitted=True,
    )


def _fallback_train_step(
    spec: Any, model: Any, variables: Any, learning_rate: float = 1e-4, l1_weight: float = 100.0
) -> TrainBench:
    """A jittable train step: value_and_grad + optax.adam, GAN = D update then G update."""
    import optax

    params = variables["params"]
    tx = optax.adam(learning_rate)
    if spec.family == "deepcolorization":
        return _fallback_gan_step(model, params, tx, l1_weight)
    if spec.head == "classification":
        loss_fn = _classification_loss(model)
    else:

        def loss_fn(p: Any, l_norm: jax.Array, ab_norm: jax.Array) -> jax.Array:
            pred = model.apply({"params": p}, l_norm, train=False)
            return jnp.mean(jnp.abs(pred.astype(jnp.float32) - ab_norm))

    def step(state: Any, batch: Any) -> Any:
        p, opt = state
        l_norm, ab_norm = _lab_inputs(batch["rgb"])
        loss, grads = jax.value_and_grad(loss_fn)(p, l_norm, ab_norm)
        updates, opt = tx.update(grads, opt, p)
        return (optax.apply_updates(p, updates), opt), {"loss": loss}

    return TrainBench(step=step, state=(params, tx.init(params)), source="bench-fallback")


def _classification_loss(model: Any) -> Callable[..., jax.Array]:
    """Rebalanced soft-encoded cross-entropy over ab bins (Zhang et al. 2016)."""
    gamut = importlib.import_module("colorjax.gamut")
    color = importlib.import_module("colorjax.color")
    centers = jnp.asarray(gamut.ab_bin_centers())
    weights = jnp.asarray(gamut.rebalancing_weights(gamut.default_prior()))

    def loss_fn(p: Any, l_norm: jax.Array, ab_norm: jax.Array) -> jax.Array:
        logits = model.apply({"params": p}, l_norm, train=False).astype(jnp.float32)
        ab = color.denormalize_ab(ab_norm)
        target = gamut.soft_encode(ab, centers)
        w = weights[jnp.argmax(target, axis=-1)]
        ce = -jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1)
        return jnp.mean(w * ce)

    return loss_fn


def _bce_logits(logits: jax.Array, target: float) -> jax.Array:
    """Mean binary cross-entropy with logits against a constant label."""
    logits = logits.astype(jnp.float32)
    return jnp.mean(jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits))))


def _fallback_gan_step(model: Any, params: Any, tx: Any, l1_weight: float) -> TrainBench:
    """pix2pix step: fake = G(L); D update on (real, fake); G update through the updated D."""
    import optax

    def gen(g: Any, d: Any, l_norm: jax.Array, key: jax.Array) -> jax.Array:
        variables = {"params": {"generator": g, "discriminator": d}}
        # train=True: the generator's dropout is part of a pix2pix training step.
        out = model.apply(variables, l_norm, train=True, rngs={"dropout": key})
        return out.astype(jnp.float32)

    def disc(d: Any, g: Any, l_norm: jax.Array, ab: jax.Array) -> jax.Array:
        variables = {"params": {"generator": g, "discriminator": d}}
        return model.apply(variables, l_norm, ab, method="discriminate")

    def step(state: Any, batch: Any) -> Any:
        g, d, g_opt, d_opt, key = state
        key, sub = jax.random.split(key)
        l_norm, ab_real = _lab_inputs(batch["rgb"])
        # One generator forward shared by both updates, like the PyTorch pix2pix loop.
        fake, g_vjp = jax.vjp(lambda gp: gen(gp, d, l_norm, sub), g)

        def d_loss(dp: Any) -> jax.Array:
            real_logits = disc(dp, g, l_norm, ab_real)
            fake_logits = disc(dp, g, l_norm, jax.lax.stop_gradient(fake))
            return 0.5 * (_bce_logits(real_logits, 1.0) + _bce_logits(fake_logits, 0.0))

        loss_d, d_grads = jax.value_and_grad(d_loss)(d)
        d_updates, d_opt = tx.update(d_grads, d_opt, d)
        d = optax.apply_updates(d, d_updates)

        def g_loss(f: jax.Array) -> jax.Array:
            adv = _bce_logits(disc(d, g, l_norm, f), 1.0)
            return adv + l1_weight * jnp.mean(jnp.abs(f - ab_real))

        loss_g, fake_grad = jax.value_and_grad(g_loss)(fake)
        (g_grads,) = g_vjp(fake_grad)
        g_updates, g_opt = tx.update(g_grads, g_opt, g)
        g = optax.apply_updates(g, g_updates)
        return (g, d, g_opt, d_opt, key), {"loss_d": loss_d, "loss_g": loss_g}

    g, d = params["generator"], params["discriminator"]
    state = (g, d, tx.init(g), tx.init(d), jax.random.PRNGKey(0))
    return TrainBench(step=step, state=state, source="bench-fallback")


def build_train_step(
    name: str, model: Any, variables: Any, size: int, batch: int, dtype: str, mesh: Any
) -> TrainBench:
    """The real colorjax.train step if importable, else the documented fallback."""
    try:
        return _real_train_step(name, size, batch, dtype, mesh)
    except ImportError as err:
        log.warning("colorjax.train not importable (%s); timing the bench fallback step", err)
    return _fallback_train_step(_models_api().get_spec(name), model, variables)


# ----------------------------------------------------------------------------- measurements


@dataclasses.dataclass
class Ctx:
    """Per-run context shared by the measurement functions."""

    cfg: BenchConfig
    mesh: Any
    devices: Sequence[Any]
    meta: dict[str, Any]
    peak: float | None


def _compile(
    fn: Callable[..., Any], args: Sequence[Any], **jit_kwargs: Any
) -> tuple[Any, float, float]:
    """jit + lower + compile with both phases timed apart from execution."""
    return _lower_compile(jax.jit(fn, **jit_kwargs), args)


def _lower_compile(jitted: Any, args: Sequence[Any]) -> tuple[Any, float, float]:
    """Lower and compile an already-jitted function, timing each phase."""
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, t1 - t0, t2 - t1


def measure_train(
    ctx: Ctx, name: str, model: Any, variables: Any, size: int, batch: int
) -> tuple[dict[str, Any], tuple[Any, dict[str, Any]]]:
    """Training-step throughput with inputs already on device (GAN: one D + one G update)."""
    cfg = ctx.cfg
    batch_sh, repl = _shardings(ctx.mesh)
    tb = build_train_step(name, model, variables, size, batch, cfg.dtype, ctx.mesh)
    state = jax.device_put(tb.state, repl)
    rgb = jax.device_put(_random_rgb(np.random.default_rng(0), batch, size), batch_sh)
    data = {"rgb": rgb}
    analytic = analytic_flops(tb.step, state, data)
    if tb.jitted:
        compiled, lower_s, compile_s = _lower_compile(tb.step, (state, data))
    else:
        compiled, lower_s, compile_s = _compile(tb.step, (state, data), donate_argnums=(0,))
    holder = {"state": state}

    def call() -> Any:
        holder["state"], metrics = compiled(holder["state"], data)
        return metrics

    times, usage = _checked_times(
        ctx, call, warmup=cfg.warmup, trials=cfg.trials, iters=cfg.iters_per_trial
    )
    thr = _throughput_fields(times, batch)
    peak_mem, mem_reason = peak_memory_bytes(ctx.devices)
    flops = _flops_fields(analytic, cost_analysis_flops(compiled), thr["median_s"], ctx.peak)
    reasons = flops.pop("null_reasons")
    if mem_reason:
        reasons["peak_memory_bytes"] = mem_reason
    return dict(
        kind="train",
        mode="jit",
        lower_s=lower_s,
        compile_s=compile_s,
        peak_memory_bytes=peak_mem,
        compiled_memory_bytes=compiled_memory_bytes(compiled),
        train_step=tb.source,
        iters_per_trial=cfg.iters_per_trial,
        warmup=cfg.warmup,
        trials=cfg.trials,
        **usage,
        **thr,
        **flops,
        null_reasons=reasons,
    ), (compiled, holder)


def _make_loader(cfg: BenchConfig, batch: int, size: int) -> Any:
    """The colorjax training loader over the configured source."""
    data = importlib.import_module("colorjax.data")
    source = data.make_source(cfg.data_source)
    return data.make_loader(source, batch_size=batch, image_size=size, train=True, seed=0)


def measure_loader(ctx: Ctx, size: int, batch: int) -> dict[str, Any]:
    """Host loader images/s for this batch and size (decode + crop + batch, no device)."""
    cfg = ctx.cfg
    it = iter(_make_loader(cfg, batch, size))
    next(it)  # warm-up: worker start, file cache
    times = []
    for _ in range(max(cfg.loader_batches, 2)):
        start = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - start)
    thr = _throughput_fields(times, batch)
    return dict(
        kind="loader",
        mode="host",
        trials=len(times),
        iters_per_trial=1,
        warmup=1,
        loader_images_per_s=thr["images_per_s"],
        **thr,
    )


def measure_train_e2e(
    ctx: Ctx, compiled: Any, holder: dict[str, Any], size: int, batch: int
) -> dict[str, Any]:
    """End-to-end training images/s: loader -> host-to-device copy -> compiled step."""
    cfg = ctx.cfg
    batch_sh, _ = _shardings(ctx.mesh)
    it = iter(_make_loader(cfg, batch, size))

    def call() -> Any:
        rgb = jax.device_put(np.asarray(next(it)["rgb"]), batch_sh)
        holder["state"], metrics = compiled(holder["state"], {"rgb": rgb})
        return metrics

    usage: dict[str, float] = {}
    times = time_calls(call, warmup=1, trials=max(cfg.loader_batches, 2), iters=1, usage=usage)
    thr = _throughput_fields(times, batch)
    return dict(
        kind="train_e2e",
        mode="jit",
        trials=len(times),
        iters_per_trial=1,
        warmup=1,
        **_usage_fields(ctx, usage),
        **thr,
    )


def measure_infer(
    ctx: Ctx, name: str, model: Any, variables: Any, size: int, batch: int
) -> list[dict[str, Any]]:
    """Batch-1 latency distribution and large-batch throughput of predict_ab."""
    cfg = ctx.cfg
    models = _models_api()
    batch_sh, repl = _shardings(ctx.mesh)
    variables = jax.device_put(variables, repl)

    def predict(v: Any, l_norm: jax.Array) -> jax.Array:
        return models.predict_ab(model, v, l_norm)

    records = []
    rng = np.random.default_rng(1)
    for kind, n in (("infer_latency", 1), ("infer_throughput", batch)):
        l_host = rng.uniform(-1, 1, (n, size, size, 1)).astype(np.float32)
        # Batch 1 cannot be split over devices, so latency runs replicated on the mesh.
        sharding = batch_sh if (kind == "infer_throughput") else repl
        l_norm = jax.device_put(l_host, sharding)
        analytic = analytic_flops(predict, variables, l_norm)
        compiled, lower_s, compile_s = _compile(predict, (variables, l_norm))

        def call(c: Any = compiled, x: jax.Array = l_norm) -> Any:
            return c(variables, x)

        if kind == "infer_latency":
            iters, trials = 1, cfg.latency_samples
        else:
            iters, trials = cfg.iters_per_trial, cfg.trials
        times, usage = _checked_times(ctx, call, warmup=cfg.warmup, trials=trials, iters=iters)
        thr = _throughput_fields(times, n)
        flops = _flops_fields(analytic, cost_analysis_flops(compiled), thr["median_s"], ctx.peak)
        reasons = flops.pop("null_reasons")
        peak_mem, mem_reason = peak_memory_bytes(ctx.devices)
        if mem_reason:
            reasons["peak_memory_bytes"] = mem_reason
        records.append(
            dict(
                kind=kind,
                mode="jit",
                batch_size=n,
                lower_s=lower_s,
                compile_s=compile_s,
                peak_memory_bytes=peak_mem,
                compiled_memory_bytes=compiled_memory_bytes(compiled),
                trials=trials,
                iters_per_trial=iters,
                warmup=cfg.warmup,
                **usage,
                **thr,
                **flops,
                null_reasons=reasons,
            )
        )
    return records


def measure_colorize(
    ctx: Ctx, model: Any, variables: Any, size: int, photo: tuple[int, int]
) -> dict[str, Any]:
    """End-to-end colorize of one full-size photo (host uint8 in, uint8 out), incl. compile."""
    cfg = ctx.cfg
    inference = importlib.import_module("colorjax.inference")
    width, height = photo
    rgb = _random_rgb(np.random.default_rng(2), 1, max(width, height))[:, :height, :width]

    def call() -> Any:
        return inference.predict_rgb(model, variables, rgb, size)

    # The first call includes tracing/compilation of this shape bucket: report it apart.
    start = time.perf_counter()
    jax.block_until_ready(call())
    first_s = time.perf_counter() - start
    usage: dict[str, float] = {}
    times = time_calls(call, warmup=0, trials=cfg.trials, iters=1, usage=usage)
    thr = _throughput_fields(times, 1)
    return dict(
        **_usage_fields(ctx, usage),
        kind="colorize",
        mode="e2e",
        batch_size=1,
        image_size=f"{width}x{height}",
        compile_s=max(first_s - thr["median_s"], 0.0),
        trials=cfg.trials,
        iters_per_trial=1,
        warmup=1,
        note="predict_rgb on a host uint8 photo: transfer, Lab, resize, model, upsample, back",
        **thr,
    )


# ----------------------------------------------------------------------------- torch side


def load_torch_bench(path: str | os.PathLike | None = None) -> Any:
    """Import benchmarks/torch_bench.py from the source checkout (it is not in the package)."""
    if importlib.util.find_spec("torch") is None:
        raise ConfigError("--torch needs PyTorch: pip install torch (CPU) or use the CUDA build")
    path = (
        Path(path)
        if path
        else Path(__file__).resolve().parents[1] / "benchmarks" / "torch_bench.py"
    )
    if not path.is_file():
        raise ConfigError(
            f"--torch needs {path} (PyTorch reference nets live in the source checkout, not the "
            "wheel); run from a git checkout of colorjax or pass --torch-module PATH"
        )
    spec = importlib.util.spec_from_file_location("colorjax_torch_bench", path)
    module = importlib.util.module_from_spec(spec)
    # torch_bench imports its sibling torch_models; make the folder importable.
    sys.path.insert(0, str(path.parent))
    spec.loader.exec_module(module)
    return module


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
            flops = _flops_fields(
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


# ----------------------------------------------------------------------------- driver


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


def _fmt(value: Any, spec: str = ".3g") -> str:
    """Table cell: numbers formatted, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """A Markdown summary: one row per measured configuration."""
    head = (
        "| kind | framework | mode | model | res | batch | dtype | threads | CPU/wall "
        "| img/s | median ms | IQR ms "
        "| p50/p90/p99 ms | compile s | GFLOP/step (analytic) | cost/analytic | TFLOP/s | MFU "
        "| mem MiB | vs torch eager | vs torch compile |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for r in records:
        if r["status"] != "ok":
            continue
        pct = (
            f"{r['p50_ms']:.3g}/{r['p90_ms']:.3g}/{r['p99_ms']:.3g}"
            if r["kind"] == "infer_latency"
            else "-"
        )
        mem = r["peak_memory_bytes"] or r["compiled_memory_bytes"]
        res = r["image_size"] if r["kind"] == "colorize" else r["resolution"]
        cells = [
            r["kind"],
            r["framework"],
            r["mode"],
            r["model"],
            res,
            r["batch_size"],
            r["dtype"],
            _fmt(r.get("threads")),
            _fmt(r.get("cpu_per_wall"), ".2f") + (" (!)" if r.get("thread_check") else ""),
            _fmt(r["images_per_s"], ".4g"),
            _fmt(r["median_s"] * 1e3 if r["median_s"] else None),
            _fmt(r["iqr_s"] * 1e3 if r["iqr_s"] is not None else None),
            pct,
            _fmt(r["compile_s"]),
            _fmt(r["flops_per_step_analytic"] / 1e9 if r["flops_per_step_analytic"] else None),
            _fmt(r["flops_ratio_cost_to_analytic"]),
            _fmt(r["achieved_tflops"]),
            _fmt(r["mfu"]),
            _fmt(mem / 2**20 if mem else None, ".4g"),
            _fmt(r["speedup_vs_torch_eager"]),
            _fmt(r["speedup_vs_torch_compile"]),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Markdown report: metadata header + results table."""
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


def _base_fields(ctx: Ctx, framework: str, name: str, params: int, size: int, batch: int) -> dict:
    """Fields shared by every record of one configuration."""
    return dict(
        framework=framework,
        model=name,
        params=params,
        resolution=size,
        batch_size=batch,
        image_size=f"{size}x{size}",
        dtype=ctx.cfg.dtype,
        device_count=len(ctx.devices),
        meta=ctx.meta,
    )


def _safe(
    records: list, base: dict, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """Run one measurement; a failure becomes a status='error' record instead of killing the run."""
    try:
        return fn(*args, **kwargs)
    except ConfigError:
        raise
    except MissingDependencyError as err:
        # e.g. the loader kinds on a machine without Grain: the synthetic kinds still run.
        log.warning("%s skipped: %s", what, err)
        records.append(make_record(**base, kind=what, status="skipped", note=str(err)))
        return None
    except Exception as err:  # noqa: BLE001 - one broken config must not lose the others
        log.exception("%s failed for %s", what, base.get("model"))
        records.append(
            make_record(**base, kind=what, status="error", note=f"{type(err).__name__}: {err}")
        )
        return None


@dataclasses.dataclass
class ModelAt:
    """One model initialised at one resolution."""

    name: str
    model: Any
    variables: Any
    params: int
    size: int


def _bench_batch(ctx: Ctx, m: ModelAt, batch: int, torch_bench: Any, say: Callable) -> list:
    """Train, loader, end-to-end train (and PyTorch train) records for one batch size."""
    cfg, records = ctx.cfg, []
    base = _base_fields(ctx, "colorjax", m.name, m.params, m.size, batch)
    if batch % len(ctx.devices):
        note = f"batch {batch} not divisible by {len(ctx.devices)} devices"
        return [make_record(**base, kind="train", status="skipped", note=note)]
    loader_rate = None
    if "loader" in cfg.kinds:
        say(f"{m.name} {m.size}px batch {batch}: loader")
        lrec = _safe(records, base, "loader", measure_loader, ctx, m.size, batch)
        if lrec:
            loader_rate = lrec["loader_images_per_s"]
            records.append(make_record(**base, **lrec))
    if "train" in cfg.kinds or "train_e2e" in cfg.kinds:
        say(f"{m.name} {m.size}px batch {batch}: train step")
        out = _safe(
            records, base, "train", measure_train, ctx, m.name, m.model, m.variables, m.size, batch
        )
        if out:
            rec, (compiled, holder) = out
            records.append(make_record(**base, **rec, loader_images_per_s=loader_rate))
            if "train_e2e" in cfg.kinds and "loader" in cfg.kinds:
                erec = _safe(
                    records, base, "train_e2e", measure_train_e2e, ctx, compiled, holder, m.size,
                    batch,
                )  # fmt: skip
                if erec:
                    records.append(make_record(**base, **erec, loader_images_per_s=loader_rate))
    if torch_bench is not None and "train" in cfg.kinds:
        tbase = {**base, "framework": "torch"}
        for mode in cfg.torch_modes:
            say(f"{m.name} {m.size}px batch {batch}: torch {mode} train step")
            args = (m.name, m.size, batch, cfg.dtype, mode, cfg.warmup, cfg.trials)
            trec = _torch_checked(
                ctx, records, tbase, "train", torch_bench.bench_train, *args, cfg.iters_per_trial
            )
            if trec:
                records.append(make_record(**{**tbase, **_torch_fields(ctx, trec, batch)}))
    return records


def _bench_inference(ctx: Ctx, m: ModelAt, torch_bench: Any, say: Callable) -> list:
    """Latency / throughput (and PyTorch) records plus end-to-end colorize of full photos."""
    cfg, records = ctx.cfg, []
    if "infer" in cfg.kinds:
        ibatch = cfg.infer_batch or max(cfg.batch_sizes)
        base = _base_fields(ctx, "colorjax", m.name, m.params, m.size, ibatch)
        say(f"{m.name} {m.size}px: inference")
        irecs = _safe(
            records, base, "infer", measure_infer, ctx, m.name, m.model, m.variables, m.size, ibatch
        )
        records += [make_record(**{**base, **irec}) for irec in irecs or []]
        if torch_bench is not None:
            tbase = {**base, "framework": "torch"}
            for mode in cfg.torch_modes:
                say(f"{m.name} {m.size}px: torch {mode} inference")
                args = (m.name, m.size, ibatch, cfg.dtype, mode, cfg.warmup, cfg.trials)
                trecs = _torch_checked(
                    ctx, records, tbase, "infer", torch_bench.bench_infer, *args,
                    cfg.iters_per_trial, cfg.latency_samples,
                )  # fmt: skip
                for trec in trecs or []:
                    fields = _torch_fields(ctx, trec, trec["batch_size"])
                    records.append(make_record(**{**tbase, **fields}))
    if "colorize" in cfg.kinds:
        base = _base_fields(ctx, "colorjax", m.name, m.params, m.size, 1)
        for photo in cfg.photo_sizes:
            say(f"{m.name} {m.size}px: colorize {photo[0]}x{photo[1]}")
            crec = _safe(
                records, base, "colorize", measure_colorize, ctx, m.model, m.variables, m.size,
                photo,
            )  # fmt: skip
            if crec:
                records.append(make_record(**{**base, **crec}))
    return records


def run_benchmarks(
    cfg: BenchConfig,
    progress: Callable[[str], None] | None = None,
    checkpoint: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Run the whole matrix and return the records; `checkpoint(records)` after each config."""
    models = _models_api()
    say = progress or (lambda msg: log.info("%s", msg))
    mesh = _mesh(cfg.device_count)
    devices = list(mesh.devices.flat)
    meta = collect_metadata(devices, cfg.dtype, cfg.torch, cfg.threads, cfg.note)
    peak = lookup_peak_tflops(devices[0].device_kind, cfg.dtype, cfg.peak_tflops)
    ctx = Ctx(cfg=cfg, mesh=mesh, devices=devices, meta=meta, peak=peak)
    torch_bench = load_torch_bench(cfg.torch_module) if cfg.torch else None
    if torch_bench is not None:
        meta["torch_threads"] = torch_bench.set_threads(meta["threads"])
    records: list[dict[str, Any]] = []
    for name in cfg.models:
        model = models.create_model(name, dtype=DTYPES[cfg.dtype])
        stride = _stride(model)
        for size in cfg.resolutions:
            if size % stride:
                base = _base_fields(ctx, "colorjax", name, None, size, None)
                note = f"resolution {size} is not a multiple of the model stride {stride}"
                records.append(make_record(**base, kind="train", status="skipped", note=note))
                continue
            variables = _init_variables(model, size)
            m = ModelAt(name, model, variables, int(models.count_params(variables)), size)
            for batch in cfg.batch_sizes:
                records += _bench_batch(ctx, m, batch, torch_bench, say)
                if checkpoint:
                    checkpoint(records)
            records += _bench_inference(ctx, m, torch_bench, say)
            if checkpoint:
                checkpoint(records)
    attach_speedups(records)
    return records


def _torch_checked(
    ctx: Ctx, records: list, base: dict, what: str, fn: Callable[..., Any], *args: Any
) -> Any:
    """A torch_bench measurement (dict or list of dicts), re-run while its CPU/wall check fails."""
    best, best_failed = None, None
    for _ in range(1 + ctx.cfg.thread_retries):
        out = _safe(records, base, what, fn, *args)
        if out is None:
            return best
        rows = out if isinstance(out, list) else [out]
        checks = [
            check_cpu_use(r.get("cpu_per_wall"), ctx.meta["threads"], ctx.meta["backend"])
            for r in rows
        ]
        failed = sum(c is not None for c in checks)
        if best_failed is None or failed < best_failed:
            best, best_failed = out, failed
        if not failed:
            break
        log.warning("re-timing torch %s: %s", what, [c for c in checks if c])
    return best


def _torch_fields(ctx: Ctx, rec: dict[str, Any], images: int) -> dict[str, Any]:
    """Turn a torch_bench result (raw times + metadata) into record fields."""
    rec = dict(rec)
    times = rec.pop("times_s")
    rec.update(_throughput_fields(times, images))
    rec["threads"] = ctx.meta["threads"]
    rec["thread_check"] = check_cpu_use(
        rec.get("cpu_per_wall"), ctx.meta["threads"], ctx.meta["backend"]
    )
    reasons = {"flops_per_step_cost_analysis": "torch has no XLA cost analysis"}
    if rec.get("peak_memory_bytes") is None:
        reasons["peak_memory_bytes"] = "torch reports peak memory on CUDA only"
    return {**rec, "null_reasons": reasons}


def write_outputs(records: Sequence[dict[str, Any]], out_dir: Path, plots: bool) -> list[Path]:
    """results.jsonl, results.md and (optionally) PNG plots under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.jsonl", out_dir / "results.md"]
    write_jsonl(records, paths[0])
    write_markdown(records, paths[1])
    if plots:
        paths += write_plots(records, out_dir)
    return paths


# ----------------------------------------------------------------------------- CLI


def _int_list(text: str) -> tuple[int, ...]:
    """'64,256 512' -> (64, 256, 512)."""
    return tuple(int(t) for t in text.replace(",", " ").split())


def _photo(text: str) -> tuple[int, int]:
    """'4000x3000' -> (4000, 3000) (width x height)."""
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"photo size must look like 4000x3000, got {text!r}"
        ) from err


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `colorjax bench` options."""
    parser.add_argument("--models", nargs="+", help="registered model names (default: all)")
    parser.add_argument(
        "--resolutions", nargs="+", type=int, help="square input sizes (default 64 256 512)"
    )
    parser.add_argument(
        "--batch-sizes", nargs="+", type=int, help="global batch sizes (default 8 32 128)"
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="compute dtype")
    parser.add_argument("--device-count", type=int, help="use the first N devices (default all)")
    parser.add_argument(
        "--quick", action="store_true", help="CI-sized run: tiny models, 32-64 px, 3 trials"
    )
    parser.add_argument(
        "--torch", action="store_true", help="also run the PyTorch nets (eager + compile)"
    )
    parser.add_argument(
        "--torch-modes", nargs="+", choices=("eager", "compile"), default=["eager", "compile"]
    )
    parser.add_argument(
        "--torch-module", help="path to torch_bench.py (default: benchmarks/ of this checkout)"
    )
    parser.add_argument(
        "--out", default="bench_out", help="output folder (results.jsonl, .md, .png)"
    )
    parser.add_argument(
        "--peak-tflops", type=float, help="device peak TFLOP/s for MFU (overrides table)"
    )
    parser.add_argument("--trials", type=int, help="timed trials per configuration")
    parser.add_argument("--iters", type=int, help="steps per timed trial")
    parser.add_argument("--warmup", type=int, help="untimed warm-up calls")
    parser.add_argument("--latency-samples", type=int, help="batch-1 latency samples")
    parser.add_argument(
        "--infer-batch", type=int, help="batch for inference throughput (default: max batch)"
    )
    parser.add_argument(
        "--photo-sizes", nargs="+", type=_photo, help="end-to-end colorize sizes, WxH"
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=("train", "train_e2e", "infer", "colorize", "loader"),
        help="which measurements to run (default all)",
    )
    parser.add_argument("--data-source", default="embedded", help="loader source spec")
    parser.add_argument(
        "--threads",
        type=int,
        help="compute threads per framework: pin to this many CPUs, torch.set_num_threads "
        "(default: every CPU this process may use)",
    )
    parser.add_argument(
        "--thread-retries",
        type=int,
        default=2,
        help="re-time a CPU row whose CPU/wall does not fit --threads up to N times",
    )
    parser.add_argument("--note", help="free text stored in every record's meta (e.g. host load)")
    parser.add_argument(
        "--no-plots", action="store_true", help="skip PNG plots (no matplotlib needed)"
    )


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """BenchConfig from parsed args, applying --quick defaults where flags were not given."""
    quick = args.quick
    if args.models:
        models = tuple(args.models)
    elif quick:
        models = QUICK_MODELS
    else:
        models = tuple(_models_api().list_models())
    known = set(_models_api().list_models())
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; choose from {sorted(known)}")
    cfg = BenchConfig(
        models=models,
        resolutions=tuple(args.resolutions or ((32,) if quick else (64, 256, 512))),
        batch_sizes=tuple(args.batch_sizes or ((2, 4) if quick else (8, 32, 128))),
        dtype=args.dtype,
        device_count=args.device_count,
        trials=args.trials or (3 if quick else 5),
        warmup=args.warmup if args.warmup is not None else (1 if quick else 2),
        iters_per_trial=args.iters or (2 if quick else 5),
        latency_samples=args.latency_samples or (10 if quick else 100),
        infer_batch=args.infer_batch,
        photo_sizes=tuple(
            args.photo_sizes or (((128, 96),) if quick else ((1024, 1024), (4000, 3000)))
        ),
        loader_batches=3 if quick else 10,
        kinds=tuple(args.kinds or BenchConfig.kinds),
        torch=args.torch,
        torch_modes=tuple(args.torch_modes),
        torch_module=args.torch_module,
        peak_tflops=args.peak_tflops,
        out_dir=args.out,
        plots=not args.no_plots,
        data_source=args.data_source,
        threads=args.threads,
        thread_retries=args.thread_retries,
        note=args.note,
    )
    for value, flag in ((cfg.resolutions, "--resolutions"), (cfg.batch_sizes, "--batch-sizes")):
        if any(v <= 0 for v in value):
            raise ConfigError(f"{flag} must be positive integers, got {list(value)}")
    # Sizes that no chosen model can run would give an empty table and exit status 0.
    strides = {m: _stride(_models_api().create_model(m)) for m in cfg.models}
    if not any(size % stride == 0 for size in cfg.resolutions for stride in strides.values()):
        need = ", ".join(f"{m}: {s}" for m, s in strides.items())
        raise ConfigError(
            f"--resolutions {list(cfg.resolutions)}: no size is a multiple of a chosen model's "
            f"stride ({need}), so nothing would run; pass multiples, e.g. --resolutions 64 256"
        )
    if cfg.device_count is not None and not 1 <= cfg.device_count <= jax.device_count():
        raise ConfigError(
            f"--device-count {cfg.device_count} but only {jax.device_count()} devices are visible"
        )
    return cfg


def run(args: argparse.Namespace) -> int:
    """Run `colorjax bench` and print where the results went."""
    # First, before any backend starts its thread pool: pin to --threads CPUs.
    pin_threads(args.threads)
    if args.torch:
        # JAX grabs 75% of GPU memory at start-up by default, which would starve PyTorch in the
        # same process; allocate on demand instead (must be set before the backend starts).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    cfg = config_from_args(args)
    ensure_output_dir(cfg.out_dir, "--out")  # before the (long) matrix runs
    partial = Path(cfg.out_dir) / "results.partial.jsonl"

    def checkpoint(records: list[dict]) -> None:
        # A long matrix that is interrupted still leaves every finished configuration on disk.
        write_jsonl(records, partial)

    records = run_benchmarks(cfg, checkpoint=checkpoint)
    partial.unlink(missing_ok=True)
    paths = write_outputs(records, Path(cfg.out_dir), cfg.plots)
    print(markdown_table(records))
    for path in paths:
        print(f"wrote {path}")
    errors = [r for r in records if r["status"] == "error"]
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m colorjax.bench ...`: the same as `colorjax bench ...`."""
    parser = argparse.ArgumentParser(prog="colorjax bench", description=__doc__)
    configure_parser(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
