"""Temporal consistency measured: flicker, colourfulness and PSNR with and without smoothing.

Test clips are made from real photos with their colour kept as the truth: a slow pan across
each of N BSDS500 photos, joined by hard cuts into one clip. Each smoothing strength
colorizes the clip; the record holds flicker (mean motion-compensated |delta ab| between
consecutive frames), colourfulness and PSNR against the true frames, and the cuts found
against the true cut positions:

    python benchmarks/video_flicker.py --photos ../shared/data/bsds500/test --clips 6 \
        --out benchmarks/results/video-flicker-cpu-2026-12-07.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> int:
    """Build the clip, colorize it at each strength, write one JSON record."""
    import imageio_ffmpeg
    import jax

    from colorjax import metrics
    from colorjax.bench.records import collect_metadata
    from colorjax.inference import make_colorizer
    from colorjax.inference.pretrained import load_pretrained
    from colorjax.inference.video import colorize_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=6, help="photos panned across (shots)")
    parser.add_argument("--frames", type=int, default=16, help="frames per shot")
    parser.add_argument("--size", type=int, nargs=2, default=(240, 160), metavar=("W", "H"))
    parser.add_argument("--step", type=int, default=4, help="pan speed in pixels per frame")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.5, 0.8, 0.9])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    w, h = args.size
    files = sorted(args.photos.glob("*.jpg"))[: args.clips]
    truth, cuts = [], []
    for k, path in enumerate(files):
        photo = np.asarray(Image.open(path).convert("RGB"))
        if photo.shape[0] < photo.shape[1]:
            photo = photo[:h]
        else:
            photo = photo[:, :w].transpose(1, 0, 2)[:, ::-1]  # portrait: pan across it sideways
        if k:
            cuts.append(len(truth))
        truth += [photo[:h, t * args.step : t * args.step + w] for t in range(args.frames)]
    model, variables, meta = load_pretrained()
    colorizer = make_colorizer(model, variables, meta, batch_size=4)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "shots.mp4"
        writer = imageio_ffmpeg.write_frames(str(clip), (w, h), fps=12, quality=10)
        writer.send(None)
        for frame in truth:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        true_stack = np.stack(truth).astype(np.float32)
        for strength in args.strengths:
            out = Path(tmp) / f"out{strength}.mp4"
            report = colorize_clip(clip, out, colorizer, smoothing=strength, measure=True)
            reader = imageio_ffmpeg.read_frames(str(out))
            next(reader)
            frames = np.stack([np.frombuffer(r, np.uint8).reshape(h, w, 3) for r in reader])
            rows.append(
                {
                    "smoothing": strength,
                    "flicker_ab": round(report.flicker, 4),
                    "colorfulness": round(report.colorfulness, 3),
                    "colorfulness_truth": round(
                        float(np.mean(metrics.colorfulness(true_stack))), 3
                    ),
                    "psnr_vs_truth": round(
                        float(np.mean(metrics.psnr(frames.astype(np.float32), true_stack))), 3
                    ),
                    "cuts_found": report.cuts,
                    "frames_per_second": round(report.frames_per_second, 2),
                }
            )
            print(rows[-1])
    record = {
        "what": "flicker with and without temporal smoothing, pans across real photos with cuts",
        "command": "python " + " ".join(sys.argv),
        "photos": [p.name for p in files],
        "true_cuts": cuts,
        "weights": meta.get("name"),
        # device, versions, threads, git commit, load average, date
        **collect_metadata(jax.devices(), "float32", with_torch=False),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
