"""The benchmark driver: run the model x resolution x batch matrix and collect the records.

The PyTorch side is optional and comes in as a module object (`torch_bench`), loaded from an
explicit file path with `load_module` (it lives in the source checkout's benchmarks/, not in
the package).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jax

from colorjax.bench.measure import (
    DTYPES,
    BenchConfig,
    Ctx,
    measure_colorize,
    measure_infer,
    measure_loader,
    measure_train,
    measure_train_e2e,
)
from colorjax.bench.records import (
    attach_speedups,
    collect_metadata,
    lookup_peak_tflops,
    make_record,
    throughput_fields,
)
from colorjax.bench.threads import check_cpu_use, checked_rows
from colorjax.errors import ConfigError, MissingDependencyError

logger = logging.getLogger(__name__)


def load_module(path: str | os.PathLike, name: str = "colorjax_torch_bench") -> ModuleType:
    """Import the Python file at `path` (e.g. benchmarks/torch_bench.py) without sys.path edits."""
    path = Path(path)
    if importlib.util.find_spec("torch") is None:
        raise ConfigError("--torch needs PyTorch: pip install torch (CPU) or use the CUDA build")
    if not path.is_file():
        raise ConfigError(
            f"--torch needs {path} (the PyTorch reference nets live in a source checkout's "
            "benchmarks/, not in the wheel); run from a colorjax checkout or pass "
            "--torch-module PATH"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path} as a Python module; pass a .py file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class ModelAt:
    """One model initialised at one resolution."""

    name: str
    model: Any
    variables: Any
    params: int
    size: int


def _base_fields(ctx: Ctx, framework: str, name: str, params: Any, size: int, batch: Any) -> dict:
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
        logger.warning("%s skipped: %s", what, err)
        records.append(make_record(**base, kind=what, status="skipped", note=str(err)))
        return None
    except Exception as err:  # noqa: BLE001 - one broken config must not lose the others
        logger.exception("%s failed for %s", what, base.get("model"))
        records.append(
            make_record(**base, kind=what, status="error", note=f"{type(err).__name__}: {err}")
        )
        return None


def _torch_rows(
    ctx: Ctx, records: list, base: dict, what: str, fn: Callable[..., Any], *args: Any
) -> list[dict[str, Any]]:
    """Record fields of a torch_bench measurement, re-run while its CPU/wall check fails."""
    out = _safe(
        records, base, what, checked_rows, lambda: fn(*args),
        threads=ctx.meta["threads"], backend=ctx.meta["backend"], retries=ctx.cfg.thread_retries,
    )  # fmt: skip
    if out is None:
        return []
    result, _ = out
    rows = result if isinstance(result, list) else [result]
    return [
        {**base, **_torch_fields(ctx, r, r.get("batch_size") or base["batch_size"])} for r in rows
    ]


def _torch_fields(ctx: Ctx, rec: dict[str, Any], images: int) -> dict[str, Any]:
    """Turn a torch_bench result (raw times + metadata) into record fields."""
    rec = dict(rec)
    times = rec.pop("times_s")
    rec.update(throughput_fields(times, images))
    rec["threads"] = ctx.meta["threads"]
    rec["thread_check"] = check_cpu_use(
        rec.get("cpu_per_wall"), ctx.meta["threads"], ctx.meta["backend"]
    )
    reasons = {"flops_per_step_cost_analysis": "torch has no XLA cost analysis"}
    if rec.get("peak_memory_bytes") is None:
        reasons["peak_memory_bytes"] = "torch reports peak memory on CUDA only"
    return {**rec, "null_reasons": reasons}


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
        out = _safe(records, base, "train", measure_train, ctx, m.name, m.size, batch)
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
            rows = _torch_rows(
                ctx, records, tbase, "train", torch_bench.bench_train, *args, cfg.iters_per_trial
            )
            records += [make_record(**row) for row in rows]
    return records


def _bench_inference(ctx: Ctx, m: ModelAt, torch_bench: Any, say: Callable) -> list:
    """Latency / throughput (and PyTorch) records plus end-to-end colorize of full photos."""
    cfg, records = ctx.cfg, []
    if "infer" in cfg.kinds:
        ibatch = cfg.infer_batch or max(cfg.batch_sizes)
        base = _base_fields(ctx, "colorjax", m.name, m.params, m.size, ibatch)
        say(f"{m.name} {m.size}px: inference")
        irecs = _safe(
            records, base, "infer", measure_infer, ctx, m.model, m.variables, m.size, ibatch
        )
        records += [make_record(**{**base, **irec}) for irec in irecs or []]
        if torch_bench is not None:
            tbase = {**base, "framework": "torch"}
            for mode in cfg.torch_modes:
                say(f"{m.name} {m.size}px: torch {mode} inference")
                args = (m.name, m.size, ibatch, cfg.dtype, mode, cfg.warmup, cfg.trials)
                rows = _torch_rows(
                    ctx, records, tbase, "infer", torch_bench.bench_infer, *args,
                    cfg.iters_per_trial, cfg.latency_samples,
                )  # fmt: skip
                records += [make_record(**row) for row in rows]
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
    torch_bench: ModuleType | None = None,
) -> list[dict]:
    """Run the whole matrix and return the records; `checkpoint(records)` after each config.

    `torch_bench` (see `load_module`) adds PyTorch rows beside the colorjax ones.
    """
    from colorjax import models
    from colorjax.parallel import make_mesh

    say = progress or (lambda msg: logger.info("%s", msg))
    mesh = make_mesh(cfg.device_count)
    devices = list(mesh.devices.flat)
    meta = collect_metadata(devices, cfg.dtype, torch_bench is not None, cfg.threads, cfg.note)
    peak = lookup_peak_tflops(devices[0].device_kind, cfg.dtype, cfg.peak_tflops)
    ctx = Ctx(cfg=cfg, mesh=mesh, devices=devices, meta=meta, peak=peak)
    # Process-wide, so PyTorch in the same process runs with the same allocator settings.
    meta["malloc_reuse"] = cfg.malloc_reuse
    if torch_bench is not None:
        meta["torch_threads"] = torch_bench.set_threads(meta["threads"])
    records: list[dict[str, Any]] = []
    for name in cfg.models:
        model = models.build_model(name, dtype=DTYPES[cfg.dtype])
        for size in cfg.resolutions:
            if size % model.stride:
                base = _base_fields(ctx, "colorjax", name, None, size, None)
                note = f"resolution {size} is not a multiple of the model stride {model.stride}"
                records.append(make_record(**base, kind="train", status="skipped", note=note))
                continue
            l_norm = jax.numpy.zeros((1, size, size, 1), jax.numpy.float32)
            variables = jax.jit(model.init)(jax.random.PRNGKey(0), l_norm)
            m = ModelAt(name, model, variables, models.count_params(variables), size)
            for batch in cfg.batch_sizes:
                records += _bench_batch(ctx, m, batch, torch_bench, say)
                if checkpoint:
                    checkpoint(records)
            records += _bench_inference(ctx, m, torch_bench, say)
            if checkpoint:
                checkpoint(records)
    attach_speedups(records)
    return records
