"""`colorjax bench`: arguments, the run configuration, and writing the results."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from colorjax.cli.train import add_host_arguments, apply_host_arguments
from colorjax.errors import ConfigError

if TYPE_CHECKING:
    from colorjax.bench import BenchConfig

logger = logging.getLogger(__name__)

QUICK_MODELS = ("colornet-tiny", "deepcolorization-small")
KINDS = ("train", "train_e2e", "infer", "colorize", "loader")
DEFAULT_TORCH_MODULE = Path("benchmarks") / "torch_bench.py"


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
    parser.add_argument("--dtype", choices=("bf16", "f32"), default="f32", help="compute dtype")
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
        "--torch-module",
        type=Path,
        default=DEFAULT_TORCH_MODULE,
        help="path to the checkout's torch_bench.py (default: benchmarks/torch_bench.py in the "
        "current folder)",
    )
    parser.add_argument("--out", default="bench_out", help="output folder (results.jsonl)")
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
        "--kinds", nargs="+", choices=KINDS, help="which measurements to run (default all)"
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
    add_host_arguments(parser)
    parser.add_argument("--note", help="free text stored in every record's meta (e.g. host load)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """BenchConfig from parsed args, applying --quick defaults where flags were not given."""
    import jax

    from colorjax import models
    from colorjax.bench import BenchConfig

    quick = args.quick
    known = models.list_models()
    model_names = tuple(args.models or (QUICK_MODELS if quick else known))
    unknown = [m for m in model_names if m not in known]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; choose from {sorted(known)}")
    cfg = BenchConfig(
        models=model_names,
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
        kinds=tuple(args.kinds or KINDS),
        torch_modes=tuple(args.torch_modes),
        peak_tflops=args.peak_tflops,
        data_source=args.data_source,
        threads=args.threads,
        thread_retries=args.thread_retries,
        note=args.note,
    )
    for value, flag in ((cfg.resolutions, "--resolutions"), (cfg.batch_sizes, "--batch-sizes")):
        if any(v <= 0 for v in value):
            raise ConfigError(f"{flag} must be positive integers, got {list(value)}")
    # Sizes that no chosen model can run would give an empty table and exit status 0.
    strides = {m: models.build_model(m).stride for m in cfg.models}
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
    """Run `colorjax bench`: results.jsonl under --out, the summary table on stdout."""
    from colorjax.bench.threads import pin_threads

    # First, before any backend starts its thread pool: pin to --threads CPUs, and split the
    # CPU into devices (counted on the pinned CPUs).
    pin_threads(args.threads)
    malloc_reuse = apply_host_arguments(args)
    if args.torch:
        # JAX grabs 75% of GPU memory at start-up by default, which would starve PyTorch in the
        # same process; allocate on demand instead (must be set before the backend starts).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from colorjax.bench import load_module, markdown_table, run_benchmarks, write_jsonl
    from colorjax.fileio import ensure_output_dir

    cfg = dataclasses.replace(config_from_args(args), malloc_reuse=malloc_reuse)
    torch_bench = load_module(args.torch_module) if args.torch else None
    out = Path(args.out)
    ensure_output_dir(out, "--out")  # before the (long) matrix runs
    partial = out / "results.partial.jsonl"

    def checkpoint(records: list[dict]) -> None:
        # A long matrix that is interrupted still leaves every finished configuration on disk.
        write_jsonl(records, partial)

    records = run_benchmarks(cfg, checkpoint=checkpoint, torch_bench=torch_bench)
    write_jsonl(records, out / "results.jsonl")
    partial.unlink(missing_ok=True)
    print(markdown_table(records))
    print(f"wrote {out / 'results.jsonl'} (report and plots: python benchmarks/plot.py)")
    errors = [r for r in records if r["status"] == "error"]
    return 1 if errors else 0
