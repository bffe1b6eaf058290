"""One measurement each: train step, loader, end-to-end train, inference, full-photo colorize.

Every function returns the fields of one record (or a list of them); the driver in
`colorjax.bench.harness` adds the shared fields and turns failures into error records. The
train step timed is the real one, `colorjax.train.steps.make_train_step`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.bench.records import flops_fields, throughput_fields
from colorjax.bench.threads import checked_times, time_calls, usage_fields
from colorjax.models.cost import (
    analytic_flops,
    compiled_flops,
    compiled_memory_bytes,
    peak_memory_bytes,
)

DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16}
_DTYPE_NAMES = {"f32": "float32", "bf16": "bfloat16"}


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
    torch_modes: tuple[str, ...] = ("eager", "compile")
    peak_tflops: float | None = None
    data_source: str = "embedded"
    # Compute threads per framework (CPU cores the process is pinned to); None = all allowed.
    threads: int | None = None
    # Re-time a CPU row whose CPU/wall ratio fails the thread check up to this many times.
    thread_retries: int = 2
    note: str | None = None
    # Whether the process runs with colorjax.hostmem.reuse_freed_memory (both frameworks do).
    malloc_reuse: bool = False


@dataclasses.dataclass
class Ctx:
    """Per-run context shared by the measurement functions."""

    cfg: BenchConfig
    mesh: Any
    devices: Sequence[Any]
    meta: dict[str, Any]
    peak: float | None

    def timed(
        self, call: Callable[[], Any], *, warmup: int, trials: int, iters: int
    ) -> tuple[list[float], dict[str, Any]]:
        """Times of `call` plus thread fields, re-timed while the CPU/wall check fails."""
        return checked_times(
            call,
            threads=self.meta["threads"],
            backend=self.meta["backend"],
            retries=self.cfg.thread_retries,
            warmup=warmup,
            trials=trials,
            iters=iters,
        )

    def usage(self, usage: dict[str, float]) -> dict[str, Any]:
        """Thread fields of one `time_calls` usage."""
        return usage_fields(usage, self.meta["threads"], self.meta["backend"])


def shardings(mesh: Any) -> tuple[Any, Any]:
    """(batch-sharded, replicated) NamedShardings over the mesh's 'data' axis."""
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())


def random_rgb(rng: np.random.Generator, batch: int, size: int) -> np.ndarray:
    """Smooth random uint8 RGB images: gradients + noise, so colour conversion is non-trivial."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    base = np.stack([xx, yy, 1 - xx * yy], axis=-1)[None]
    noise = rng.random((batch, size, size, 3), dtype=np.float32) * 0.3
    return np.clip((base * 0.7 + noise) * 255, 0, 255).astype(np.uint8)


@dataclasses.dataclass
class TrainBench:
    """A jitted `step(state, batch) -> (state, metrics)` and its initial state."""

    step: Callable[[Any, Any], Any]
    state: Any
    source: str


def real_train_step(name: str, size: int, batch: int, dtype: str, mesh: Any) -> TrainBench:
    """colorjax.train's make_train_step for a default experiment config of this model/size."""
    from colorjax.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
    from colorjax.train.state import create_state, make_task
    from colorjax.train.steps import make_train_step

    config = ExperimentConfig(
        model=ModelConfig(name=name),
        data=DataConfig(image_size=size),
        train=TrainConfig(batch_size=batch, dtype=_DTYPE_NAMES[dtype], steps=1_000_000),
    )
    task = make_task(config, mesh=mesh)
    return TrainBench(
        step=make_train_step(task, mesh),
        state=create_state(task, mesh),
        source="colorjax.train.steps.make_train_step",
    )


def _lower_compile(jitted: Any, args: Sequence[Any]) -> tuple[Any, float, float]:
    """Lower and compile a jitted function, timing each phase apart from execution."""
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, t1 - t0, t2 - t1


def _compiled_fields(
    ctx: Ctx, compiled: Any, analytic: int, median_s: float
) -> tuple[dict[str, Any], dict[str, str]]:
    """FLOP, memory fields of a compiled step and their null reasons."""
    flops = flops_fields(analytic, compiled_flops(compiled), median_s, ctx.peak)
    reasons = flops.pop("null_reasons")
    peak_mem, mem_reason = peak_memory_bytes(ctx.devices)
    if mem_reason:
        reasons["peak_memory_bytes"] = mem_reason
    fields = dict(
        flops, peak_memory_bytes=peak_mem, compiled_memory_bytes=compiled_memory_bytes(compiled)
    )
    return fields, reasons


def measure_train(
    ctx: Ctx, name: str, size: int, batch: int
) -> tuple[dict[str, Any], tuple[Any, dict[str, Any]]]:
    """Training-step throughput with inputs already on device (GAN: one D + one G update)."""
    cfg = ctx.cfg
    batch_sh, repl = shardings(ctx.mesh)
    tb = real_train_step(name, size, batch, cfg.dtype, ctx.mesh)
    state = jax.device_put(tb.state, repl)
    data = {"rgb": jax.device_put(random_rgb(np.random.default_rng(0), batch, size), batch_sh)}
    analytic = analytic_flops(tb.step, state, data)
    compiled, lower_s, compile_s = _lower_compile(tb.step, (state, data))
    holder = {"state": state}

    def call() -> Any:
        holder["state"], metrics = compiled(holder["state"], data)
        return metrics

    times, usage = ctx.timed(call, warmup=cfg.warmup, trials=cfg.trials, iters=cfg.iters_per_trial)
    thr = throughput_fields(times, batch)
    fields, reasons = _compiled_fields(ctx, compiled, analytic, thr["median_s"])
    rec = dict(
        kind="train",
        mode="jit",
        lower_s=lower_s,
        compile_s=compile_s,
        train_step=tb.source,
        iters_per_trial=cfg.iters_per_trial,
        warmup=cfg.warmup,
        trials=cfg.trials,
        **usage,
        **thr,
        **fields,
        null_reasons=reasons,
    )
    return rec, (compiled, holder)


def _make_loader(cfg: BenchConfig, batch: int, size: int) -> Any:
    """The colorjax training loader over the configured source (imports Grain)."""
    from colorjax import data

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
    thr = throughput_fields(times, batch)
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
    batch_sh, _ = shardings(ctx.mesh)
    it = iter(_make_loader(cfg, batch, size))

    def call() -> Any:
        rgb = jax.device_put(np.asarray(next(it)["rgb"]), batch_sh)
        holder["state"], metrics = compiled(holder["state"], {"rgb": rgb})
        return metrics

    usage: dict[str, float] = {}
    times = time_calls(call, warmup=1, trials=max(cfg.loader_batches, 2), iters=1, usage=usage)
    return dict(
        kind="train_e2e",
        mode="jit",
        trials=len(times),
        iters_per_trial=1,
        warmup=1,
        **ctx.usage(usage),
        **throughput_fields(times, batch),
    )


def measure_infer(
    ctx: Ctx, model: Any, variables: Any, size: int, batch: int
) -> list[dict[str, Any]]:
    """Batch-1 latency distribution and large-batch throughput of predict_ab."""
    from colorjax.models.predict import predict_ab

    cfg = ctx.cfg
    batch_sh, repl = shardings(ctx.mesh)
    variables = jax.device_put(variables, repl)

    def predict(v: Any, l_norm: jax.Array) -> jax.Array:
        return predict_ab(model, v, l_norm)

    records = []
    rng = np.random.default_rng(1)
    for kind, n in (("infer_latency", 1), ("infer_throughput", batch)):
        l_host = rng.uniform(-1, 1, (n, size, size, 1)).astype(np.float32)
        # Batch 1 cannot be split over devices, so latency runs replicated on the mesh.
        l_norm = jax.device_put(l_host, batch_sh if kind == "infer_throughput" else repl)
        analytic = analytic_flops(predict, variables, l_norm)
        compiled, lower_s, compile_s = _lower_compile(jax.jit(predict), (variables, l_norm))

        def call(c: Any = compiled, x: jax.Array = l_norm) -> Any:
            return c(variables, x)

        if kind == "infer_latency":
            iters, trials = 1, cfg.latency_samples
        else:
            iters, trials = cfg.iters_per_trial, cfg.trials
        times, usage = ctx.timed(call, warmup=cfg.warmup, trials=trials, iters=iters)
        thr = throughput_fields(times, n)
        fields, reasons = _compiled_fields(ctx, compiled, analytic, thr["median_s"])
        records.append(
            dict(
                kind=kind,
                mode="jit",
                batch_size=n,
                lower_s=lower_s,
                compile_s=compile_s,
                trials=trials,
                iters_per_trial=iters,
                warmup=cfg.warmup,
                **usage,
                **thr,
                **fields,
                null_reasons=reasons,
            )
        )
    return records


def measure_colorize(
    ctx: Ctx, model: Any, variables: Any, size: int, photo: tuple[int, int]
) -> dict[str, Any]:
    """End-to-end colorize of one full-size photo (host uint8 in, uint8 out), incl. compile."""
    from colorjax import inference

    cfg = ctx.cfg
    width, height = photo
    rgb = random_rgb(np.random.default_rng(2), 1, max(width, height))[:, :height, :width]

    def call() -> Any:
        return inference.predict_rgb(model, variables, rgb, size)

    # The first call includes tracing/compilation of this shape bucket: report it apart.
    start = time.perf_counter()
    jax.block_until_ready(call())
    first_s = time.perf_counter() - start
    usage: dict[str, float] = {}
    times = time_calls(call, warmup=0, trials=cfg.trials, iters=1, usage=usage)
    thr = throughput_fields(times, 1)
    return dict(
        **ctx.usage(usage),
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
