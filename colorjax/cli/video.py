"""The video part of `colorjax colorize`: clips given by name, each into OUTDIR/<name>."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colorjax.errors import ColorjaxError


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """Video knobs of `colorjax colorize`."""
    parser.add_argument(
        "--smoothing",
        type=float,
        default=0.8,
        help="video: temporal smoothing strength in [0, 1) (0: plain per-frame colour)",
    )
    parser.add_argument(
        "--video-codec",
        default=None,
        help="video: FFmpeg encoder (default: libx264; libvpx-vp9 for .webm, mpeg4 for .avi)",
    )
    parser.add_argument(
        "--video-quality",
        type=float,
        default=8.0,
        help="video: quality 0-10 (imageio-ffmpeg's scale; default 8)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="video: measure flicker, colourfulness and PSNR against the input; write "
        "OUT.report.json beside each output",
    )


def split_video_inputs(inputs: list[str]) -> tuple[list[Path], list[str], list[Path]]:
    """(videos named directly, the other inputs, videos found inside folder inputs)."""
    from colorjax.inference.video import VIDEO_EXTENSIONS, is_video

    videos, others, inside = [], [], []
    for text in inputs:
        path = Path(text)
        if path.is_file() and is_video(path):
            videos.append(path)
            continue
        others.append(text)
        if path.is_dir():
            inside += [
                p
                for p in sorted(path.rglob("*"))
                if p.suffix.lower() in VIDEO_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
    return videos, others, inside


def run_videos(
    args: argparse.Namespace, videos: list[Path], colorizer: Callable[[], Any]
) -> tuple[int, int, int]:
    """Colorize each clip into args.output; (written, skipped, failed), one line per problem."""
    from colorjax.fileio import ensure_output_dir
    from colorjax.inference.video import colorize_clip

    outdir = Path(args.output)
    written = skipped = failed = 0
    for src in videos:
        out = outdir / src.name
        if out.resolve() == src.resolve():
            print(f"failed {src}: the output would replace it; use another -o", file=sys.stderr)
            failed += 1
            continue
        if out.exists() and not args.overwrite:
            print(f"skip {src}: {out} exists (pass --overwrite to replace it)", file=sys.stderr)
            skipped += 1
            continue
        ensure_output_dir(outdir, "-o")
        try:
            report = colorize_clip(
                src,
                out,
                colorizer(),
                smoothing=args.smoothing,
                codec=args.video_codec,
                quality=args.video_quality,
                measure=args.report,
            )
        except ColorjaxError as err:
            print(f"failed {src}: {err}", file=sys.stderr)
            failed += 1
            continue
        written += 1
        line = (
            f"{src} -> {out}: {report.frames} frames at {report.fps:g} fps, "
            f"{report.frames_per_second:.1f} frames/s, cuts at {report.cuts or 'none'}"
        )
        if args.report:
            path = out.with_name(out.name + ".report.json")
            path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
            line += (
                f"; flicker {report.flicker:.2f} ab, colourfulness {report.colorfulness:.1f} "
                f"(input {report.colorfulness_input:.1f}), PSNR {report.psnr:.2f} dB "
                f"against the input; {path}"
            )
        print(line, file=sys.stderr)
        if report.warning:
            print(f"warning {src}: {report.warning}", file=sys.stderr)
    return written, skipped, failed
