"""`colorjax colorize`: colorize image files, folders or globs (optionally guided by hints)."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from colorjax.cli.video import add_video_arguments, run_videos, split_video_inputs
from colorjax.errors import ColorjaxError, ConfigError, ImageDecodeError
from colorjax.fileio import clean_stale_temp_files, ensure_output_dir

DEFAULT_OUTPUT = "colorized"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `colorjax colorize` arguments."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="OUTDIR",
        help=f"output folder (default: {DEFAULT_OUTPUT}/ in the current folder)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="weights name (arch.tag), .safetensors path or run folder (default: bundled)",
    )
    parser.add_argument(
        "--manifest", default=None, help="manifest.json to look names up in (default: packaged)"
    )
    parser.add_argument("--compare", action="store_true", help="write gray | colour side by side")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--format", choices=("png", "jpg"), default="png", help="output format")
    parser.add_argument(
        "--batch-size", type=int, default=4, help="photos per network call (default 4)"
    )
    parser.add_argument(
        "--hint",
        action="append",
        metavar="X,Y,#RRGGBB",
        help="colour hint at pixel (X, Y) of the one input image (repeatable; zhang-siggraph17)",
    )
    parser.add_argument(
        "--hint-radius", type=int, default=2, help="hint square half-width, working pixels (2)"
    )
    parser.add_argument(
        "--resize",
        choices=("fit", "stretch"),  # inference.predict.RESIZE_MODES (jax not imported here)
        default=None,
        help="how photos reach the working size: fit keeps the aspect ratio (padded), stretch "
        "makes them square as official DDColor does (default: what the weights record)",
    )
    add_knob_arguments(parser)
    add_video_arguments(parser)


def _working_size(text: str) -> int:
    """--working-size: an int in [1, MAX_WORKING_SIZE] (argparse reports the message)."""
    from colorjax.inference.predict import MAX_WORKING_SIZE

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of pixels, got {text!r}"
        ) from None
    if not 1 <= value <= MAX_WORKING_SIZE:
        raise argparse.ArgumentTypeError(
            f"must be between 1 and {MAX_WORKING_SIZE} pixels, got {value} (the output keeps "
            "the photo's size; 256-1024 covers every use)"
        )
    return value


def _temperature(text: str) -> float:
    """--temperature: a finite number > 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 0, got {text!r} (lower is more saturated; 0.38 is "
            "Zhang et al.'s)"
        )
    return value


def add_knob_arguments(parser: argparse.ArgumentParser) -> None:
    """--working-size (render factor) and --temperature, shared by colorize and eval."""
    parser.add_argument(
        "--working-size",
        type=_working_size,
        default=None,
        help="network input size, longer side in pixels (DeOldify's render factor; "
        "default: tuned for the weights)",
    )
    parser.add_argument(
        "--temperature",
        type=_temperature,
        default=None,
        help="annealed-mean temperature of classification models, lower is more saturated "
        "(default: tuned for the weights)",
    )


def run(args: argparse.Namespace) -> int:
    """Run `colorjax colorize`; returns 1 if any input failed, else 0."""
    from tqdm import tqdm

    from colorjax import data
    from colorjax.inference import as_pretrained, make_colorizer
    from colorjax.inference.files import expand_inputs, read_provenance, save_image

    if getattr(args, "hint", None):
        return run_hinted(args)
    outdir = Path(args.output)
    videos, args.inputs, inside = split_video_inputs(args.inputs)
    for clip in inside:
        print(
            f"skip {clip}: a video inside a folder is not colorized with its photos; pass it "
            f"by name (colorjax colorize {clip})",
            file=sys.stderr,
        )

    @functools.cache
    def colorizer_and_provenance() -> tuple[Any, str]:
        # Loaded once, when first needed: an existing output is skipped only if these weights
        # and this mode made it, so outputs of other weights are never mistaken for this run's.
        model, variables, meta = as_pretrained(args.weights, args.manifest)
        colorizer = make_colorizer(
            model,
            variables,
            meta,
            working_size=args.working_size,
            temperature=args.temperature,
            batch_size=max(1, args.batch_size),
            resize=args.resize,
        )
        return colorizer, _provenance(meta, colorizer, args.compare)

    if videos:
        done = run_videos(args, videos, lambda: colorizer_and_provenance()[0])
        print(
            f"colorize: {done[0]} videos written to {outdir}, {done[1]} skipped, {done[2]} failed",
            file=sys.stderr,
        )
        if not args.inputs:
            return 1 if done[2] else 0
    sources, failures = expand_inputs(args.inputs, exclude=outdir)
    inputs = {src.resolve() for src, _ in sources}
    todo: list[tuple[Path, Path]] = []
    planned: dict[Path, Path] = {}
    skipped = 0
    for src, rel in sources:
        out = outdir / rel.with_suffix("." + args.format)
        if out.resolve() in inputs:
            # Not even --overwrite may replace a photo being colorized: it is the user's original.
            failures.append(
                (str(src), f"output {out} would replace an input photo; pick another -o folder")
            )
            continue
        if out in planned:
            failures.append((str(src), f"output {out} is already taken by {planned[out]}"))
            continue
        planned[out] = src
        if out.exists() and not args.overwrite:
            provenance = colorizer_and_provenance()[1]
            made_by = read_provenance(out)
            if made_by is not None and made_by != provenance:
                failures.append(
                    (
                        str(src),
                        f"{out} exists but was made by {made_by}, not {provenance}; pass "
                        "--overwrite to replace it or another -o folder to keep both",
                    )
                )
                continue
            skipped += 1
            print(f"skip {src}: {out} exists (pass --overwrite to replace it)", file=sys.stderr)
            continue
        todo.append((src, out))
    for name, reason in failures:
        print(f"failed {name}: {reason}", file=sys.stderr)
    for folder in {out.parent for out in planned}:
        clean_stale_temp_files(folder)  # left by a killed earlier run, even if nothing is redone

    written = 0
    if todo:
        ensure_output_dir(outdir, "-o")  # before the model runs on every photo
        colorizer, provenance = colorizer_and_provenance()
        progress = tqdm(total=len(todo), unit="img", desc="colorize", file=sys.stderr)

        def decoded() -> Iterator[tuple[tuple[Path, Path], np.ndarray]]:
            for src, out in todo:
                try:
                    rgb = data.decode_image(src)
                except ImageDecodeError as err:
                    failures.append((str(src), str(err)))
                    progress.write(f"failed {src}: {err}", file=sys.stderr)
                    progress.update(1)
                    continue
                yield (src, out), rgb

        try:
            results = colorizer.colorize_many(decoded(), with_gray=args.compare)
            for (src, out), result in results:
                # --compare: the input's luminance as neutral gray, then the colorized photo.
                image = np.concatenate(result[::-1], axis=1) if args.compare else result
                try:
                    save_image(image, out, args.format, provenance)
                    written += 1
                except OSError as err:
                    failures.append((str(src), f"cannot write {out}: {err}"))
                    progress.write(f"failed {src}: cannot write {out}: {err}", file=sys.stderr)
                progress.update(1)
        finally:
            progress.close()
    print(
        f"colorize: {written} written to {outdir}, {skipped} skipped (already exist), "
        f"{len(failures)} failed",
        file=sys.stderr,
    )
    if not sources and not failures:
        raise ColorjaxError("no input images found; pass image files, folders or globs")
    return 1 if failures else 0


def _provenance(meta: dict, colorizer: object, compare: bool) -> str:
    """What makes an output: weights, mode and knobs, e.g. 'weights=NAME mode=colour ws=256'."""
    weights = meta.get("name") or meta.get("path") or meta.get("workdir") or meta.get("model")
    mode = "compare" if compare else "colour"
    # 'fit' is left unsaid so that outputs made before the resize knob still match.
    resize = "" if colorizer.resize == "fit" else f" resize={colorizer.resize}"
    return (
        f"weights={weights} mode={mode} working_size={colorizer.working_size} "
        f"temperature={colorizer.temperature:g}{resize}"
    )


def run_hinted(args: argparse.Namespace) -> int:
    """`colorjax colorize IMAGE -o OUT --hint X,Y,#RRGGBB ...`: one image, guided by hints."""
    from colorjax import color, data
    from colorjax.inference import as_pretrained, make_colorizer
    from colorjax.inference.files import expand_inputs, save_image
    from colorjax.inference.hints import colorize_with_hints, gray_inputs, parse_hint

    hints = [parse_hint(text) for text in args.hint]
    sources, failures = expand_inputs(args.inputs)
    if failures or len(sources) != 1:
        found = failures[0][0] if failures else f"{len(sources)} images"
        raise ConfigError(
            f"--hint needs exactly one input image (hint coordinates are pixels of that image), "
            f"got {found}; run once per image"
        )
    src, rel = sources[0]
    out = Path(args.output) / rel.with_suffix("." + args.format)
    if out.exists() and not args.overwrite:
        print(f"skip {src}: {out} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 0
    model, variables, meta = as_pretrained(args.weights, getattr(args, "manifest", None))
    colorizer = make_colorizer(
        model,
        variables,
        meta,
        working_size=getattr(args, "working_size", None),
        temperature=getattr(args, "temperature", None),
        resize=getattr(args, "resize", None),
    )
    try:
        rgb = data.decode_image(src)
    except ColorjaxError as err:
        print(f"failed {src}: {err}", file=sys.stderr)
        return 1
    result = colorize_with_hints(colorizer, rgb, hints, args.hint_radius)
    if args.compare:
        l_only = np.asarray(color.lab_inputs_to_rgb(*gray_inputs(rgb)))
        gray = np.round(np.clip(l_only, 0, 1) * 255).astype(np.uint8)
        result = np.concatenate([gray, result], axis=1)
    save_image(result, out, args.format)
    print(f"colorize: 1 written with {len(hints)} hint(s)", file=sys.stderr)
    return 0
