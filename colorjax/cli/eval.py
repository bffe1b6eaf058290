"""`colorjax eval`: evaluate weights or a training run against the grayscale baseline."""

from __future__ import annotations

import argparse

from colorjax.cli.colorize import add_knob_arguments
from colorjax.errors import ConfigError
from colorjax.evaluate import DEFAULT_GRAY_THRESHOLD, DEFAULT_RESOLUTION
from colorjax.fileio import ensure_output_dir


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `colorjax eval` arguments."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--weights",
        help="weights name (arch.tag) or .safetensors path (default: the bundled ColorNet)",
    )
    which.add_argument("--workdir", help="training run folder (uses its latest checkpoint)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (with --workdir)")
    parser.add_argument(
        "--manifest", default=None, help="manifest.json to look --weights names up in"
    )
    parser.add_argument(
        "--no-ema",
        dest="ema",
        action="store_false",
        help="with --workdir: the last trained parameters, not their (debiased) moving average",
    )
    parser.add_argument(
        "--data",
        default="embedded",
        help="source: embedded (default) | folder:PATH | tfds:NAME[/CONFIG]",
    )
    parser.add_argument(
        "--split", default=None, help="split (default: 'all' for folders, 'validation' for tfds)"
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir")
    parser.add_argument(
        "--val-fraction", type=float, default=0.0, help="held-out share for --split validation"
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=DEFAULT_RESOLUTION,
        help="shorter side resize and centre crop size (default 256)",
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N photos")
    parser.add_argument("--batch-size", type=int, default=16, help="photos per step (default 16)")
    parser.add_argument("--out", default="eval_results", help="output folder")
    parser.add_argument(
        "--contact-sheet", type=int, default=8, help="photos in the contact sheet (0: none)"
    )
    parser.add_argument(
        "--gray-threshold", type=float, default=DEFAULT_GRAY_THRESHOLD, help="max chroma of gray"
    )
    parser.add_argument("--keep-gray", action="store_true", help="evaluate near-gray photos too")
    add_knob_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run `colorjax eval`: print the report and write JSON, CSV and contact sheet."""
    from colorjax import data
    from colorjax.evaluate import format_report, run_evaluation, write_outputs
    from colorjax.inference import as_pretrained
    from colorjax.train.run import load_run

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    ensure_output_dir(args.out, "--out")  # before the evaluation, not after it
    # One loader for all three: a manifest name, a weights file, or a run's checkpoint.
    if args.workdir is not None:
        model, variables, meta = load_run(args.workdir, step=args.step, ema=args.ema)
    else:
        model, variables, meta = as_pretrained(args.weights, args.manifest)
    split = args.split or ("validation" if args.data.startswith("tfds:") else "all")
    source = data.make_source(
        args.data, split=split, data_dir=args.data_dir, val_fraction=args.val_fraction
    )
    records = ((source.describe(i), source[i]) for i in range(len(source)))
    result = run_evaluation(
        model,
        variables,
        meta,
        records,
        resolution=args.resolution,
        batch_size=args.batch_size,
        limit=args.limit,
        gray_threshold=args.gray_threshold,
        keep_gray=args.keep_gray,
        contact_sheet=args.contact_sheet,
        progress=True,
        total=len(source),
        working_size=args.working_size,
        temperature=args.temperature,
    )
    result.summary["protocol"].update({"data": args.data, "split": split})
    paths = write_outputs(result, args.out)
    print(format_report(result.summary))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
