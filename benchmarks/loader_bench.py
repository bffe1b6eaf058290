"""Loader benchmark: images/s of the colorjax input pipeline versus the train-step rate.

Measures, for each config (64 px tiny-imagenet folder as in experiments/tinyimagenet_*.py,
64 px embedded photos as in the README demo, 256 px crops of 2048 px JPEGs) and each worker
count, how many images per second `colorjax.data.make_loader` delivers, and how many images
per second a jitted forward+backward step of colornet-tiny consumes at that size (on a fixed
synthetic batch, and fed by the loader while both share the machine). A loader/step ratio
above 1 means the loader can keep the step fed.

    python benchmarks/loader_bench.py --workers 0 1 2

Writes JSON lines (one record per config x worker count) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DEFAULT_TINY = "/work/shared/data/tiny-imagenet/train"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "loader_cpu.json"


def metadata(note: str) -> dict[str, Any]:
    """Device, host and version facts attached to every record."""
    import grain
    import jax
    import PIL

    import colorjax

    dev = jax.devices()[0]
    return {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count()},
        "host": {
            "name": socket.gethostname(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "loadavg_start": list(os.getloadavg()),
        },
        "versions": {
            "python": platform.python_version(),
            "colorjax": colorjax.__version__,
            "jax": jax.__version__,
            "grain": getattr(grain, "__version__", "unknown"),
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        },
        "note": note,
    }


def make_large_photo_folder(root: Path, side: int = 2048, copies: int = 4) -> Path:
    """Write upscaled JPEGs of the embedded photos (the 'large photo' workload)."""
    from colorjax.data import decode_image, embedded_photo_paths

    for path in embedded_photo_paths():
        rgb = decode_image(path)
        h, w = rgb.shape[:2]
        scale = side / max(h, w)
        big = Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.BICUBIC)
        for k in range(copies):
            # Different crops so the copies are not byte-identical files.
            img = big.crop((k * 8, k * 8, big.size[0] - k * 8, big.size[1] - k * 8))
            img.save(root / f"{path.stem}_{k}.jpg", quality=90)
    return root


def _loader(source: Any, cfg: dict, batch: int, workers: int, worker_type: str, seed: int):
    """The training loader for one benchmark config."""
    from colorjax.data import make_loader

    return make_loader(
        source,
        batch_size=batch,
        image_size=cfg["size"],
        train=True,
        seed=seed,
        num_workers=workers,
        worker_type=worker_type,
        drop_gray_threshold=cfg["gray"],
        decode_cache_mb=cfg["cache_mb"],
    )


def loader_rate(
    source: Any,
    cfg: dict,
    batch: int,
    workers: int,
    worker_type: str,
    batches: int,
    warmup: int,
    seed: int,
) -> dict[str, float]:
    """Images/s of the training loader in steady state (start-up time reported apart)."""
    t0 = time.perf_counter()
    with _loader(source, cfg, batch, workers, worker_type, seed) as it:
        next(it)
        startup = time.perf_counter() - t0
        # Drain what the workers prefetched during start-up; the timed batches then measure
        # production, not buffered work.
        for _ in range(warmup):
            next(it)
        t1 = time.perf_counter()
        for _ in range(batches):
            next(it)
        elapsed = time.perf_counter() - t1
    return {"images_per_s": batch * batches / elapsed, "startup_s": startup}


def build_step(size: int, batch: int, model_name: str) -> tuple[Any, Any, float]:
    """Jit forward+backward (L1 on ab of Lab-converted uint8 RGB); return fn, params, compile s."""
    import jax
    import jax.numpy as jnp

    from colorjax.color import rgb_uint8_to_lab_inputs
    from colorjax.models import build_model

    model = build_model(model_name)
    rgb = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8)
    l_norm, _ = rgb_uint8_to_lab_inputs(jnp.asarray(rgb))
    params = model.init(jax.random.PRNGKey(0), l_norm)["params"]

    def loss_fn(params, rgb_u8):
        l_in, ab_true = rgb_uint8_to_lab_inputs(rgb_u8)
        ab_pred = model.apply({"params": params}, l_in, train=False)
        return jnp.mean(jnp.abs(ab_pred - ab_true))

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    t0 = time.perf_counter()
    jax.block_until_ready(grad_fn(params, rgb))
    return grad_fn, params, time.perf_counter() - t0


def step_rate(grad_fn: Any, params: Any, batch: int, size: int, steps: int) -> float:
    """Images/s of the step on one fixed synthetic batch (no loader involved)."""
    import jax

    rgb = np.random.default_rng(1).integers(0, 256, (batch, size, size, 3), np.uint8)
    jax.block_until_ready(grad_fn(params, rgb))
    t1 = time.perf_counter()
    for _ in range(steps):
        out = grad_fn(params, rgb)
    jax.block_until_ready(out)
    return batch * steps / (time.perf_counter() - t1)


def fed_step_rate(grad_fn: Any, params: Any, it: Any, batch: int, steps: int) -> float:
    """Images/s of the same step fed by the loader (both share this machine's cores)."""
    import jax

    jax.block_until_ready(grad_fn(params, next(it)["rgb"]))
    t1 = time.perf_counter()
    for _ in range(steps):
        # Dispatch is asynchronous, so the loader prepares the next batch during the step.
        out = grad_fn(params, next(it)["rgb"])
    jax.block_until_ready(out)
    return batch * steps / (time.perf_counter() - t1)


def write_records(path: Path, records: list[dict], append: bool) -> None:
    """Write JSON lines atomically (temp file + os.replace), optionally after existing lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if append and path.exists() else ""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(old + "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny-dir", default=DEFAULT_TINY, help="tiny-imagenet train folder")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--worker-type", nargs="+", default=["thread", "process"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=40, help="timed batches per 64 px row")
    p.add_argument("--warmup", type=int, default=8, help="untimed batches after the first")
    p.add_argument("--steps", type=int, default=5, help="timed train steps per 64 px row")
    p.add_argument("--model", default="colornet-tiny")
    p.add_argument(
        "--large-dir",
        help="folder of full-size photos for large256 (default: upscaled embedded photos)",
    )
    p.add_argument("--large-side", type=int, default=2048, help="long side of generated photos")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="base seed; each row adds its index so rows read different (cold) files",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--append", action="store_true", help="keep earlier lines in --out")
    p.add_argument(
        "--note",
        default="shared noisy 2-core machine: 8 workers were building/testing concurrently",
    )
    return p.parse_args(argv)


# size: crop size; gray: drop_gray_threshold as in the matching experiment; fed_workers: the
# experiment's num_workers, used for the loader-fed train-step row; cache_mb: decode cache.
# large256 has no cache: its 24 files would fit in it, but it stands for a large data set of
# big photos where every image is decoded. tiny64 rows read each file once (no cache hits).
CONFIGS: dict[str, dict[str, Any]] = {
    # experiments/tinyimagenet_*.py
    "tiny64": {"size": 64, "gray": 5.0, "fed_workers": 1, "cache_mb": 256.0},
    # experiments/demo_cpu.py (the README demo): 6 photos, decoded once then cached
    "embedded64": {"size": 64, "gray": None, "fed_workers": 0, "cache_mb": 256.0},
    # 256 px crops of 2048 px JPEGs, decoded every time (JPEG draft mode)
    "large256": {"size": 256, "gray": None, "fed_workers": 2, "cache_mb": 0.0},
}


def _scaled(n: int, size: int) -> int:
    """Fewer timed batches/steps at larger sizes (cost grows with pixels)."""
    return max(2, round(n * (64 / size) ** 2 * 4)) if size > 64 else n


def main(argv: list[str] | None = None) -> int:
    """Run every config x worker count and write the JSON-lines records."""
    args = parse_args(argv)
    from colorjax.data import make_source

    meta = metadata(args.note)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            cfg = CONFIGS[name]
            size, batch = cfg["size"], args.batch_size
            if name == "tiny64":
                spec = f"folder:{args.tiny_dir}"
            elif name == "embedded64":
                spec = "embedded"
            elif args.large_dir:
                spec = f"folder:{args.large_dir}"
            else:
                spec = f"folder:{make_large_photo_folder(Path(tmp), side=args.large_side)}"
            source = make_source(spec)
            grad_fn, params, compile_s = build_step(size, batch, args.model)
            steps = _scaled(args.steps, size)
            step = step_rate(grad_fn, params, batch, size, steps)
            with _loader(source, cfg, batch, cfg["fed_workers"], "thread", args.seed + 99) as it:
                fed = fed_step_rate(grad_fn, params, it, batch, steps)
            print(f"{name}: step {step:.1f} img/s, loader-fed {fed:.1f} img/s", file=sys.stderr)
            base = {
                "bench": "loader",
                "config": name,
                "source": spec
                if name != "large256" or args.large_dir
                else f"embedded photos upscaled to {args.large_side} px (JPEG)",
                "source_records": len(source),
                "image_size": size,
                "batch_size": batch,
                "drop_gray_threshold": cfg["gray"],
                "decode_cache_mb": cfg["cache_mb"],
                "model": args.model,
                "train_step_images_per_s": round(step, 2),
                "train_step_compile_s": round(compile_s, 2),
                "train_steps_timed": steps,
                "fed_step_images_per_s": round(fed, 2),
                "fed_step_workers": f"thread x{cfg['fed_workers']}",
                "fed_over_synthetic": round(fed / step, 3),
                **meta,
            }
            for worker_type in args.worker_type:
                for workers in args.workers:
                    if workers == 0 and worker_type != args.worker_type[0]:
                        continue  # 0 workers is the same synchronous path for every type
                    n_batches = _scaled(args.batches, size)
                    seed = args.seed + len(records)
                    rate = loader_rate(
                        source, cfg, batch, workers, worker_type, n_batches, args.warmup, seed
                    )
                    rec = {
                        **base,
                        "timed_batches": n_batches,
                        "seed": seed,
                        "num_workers": workers,
                        "worker_type": worker_type if workers else "none",
                        "loader_images_per_s": round(rate["images_per_s"], 2),
                        "loader_startup_s": round(rate["startup_s"], 3),
                        "loader_to_step_ratio": round(rate["images_per_s"] / step, 3),
                        "loadavg_end": list(os.getloadavg()),
                    }
                    records.append(rec)
                    print(
                        f"{name} {rec['worker_type']} x{workers}: "
                        f"{rec['loader_images_per_s']} img/s, ratio {rec['loader_to_step_ratio']}",
                        file=sys.stderr,
                    )
    write_records(args.out, records, args.append)
    print(f"wrote {len(records)} records to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
