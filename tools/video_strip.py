"""The README's video strip: gray | per-frame | smoothed, three frames of a pan across a photo.

Makes a pan clip across a real photo (slow camera move, as in a film), colorizes it twice with
the bundled weights (smoothing 0 and the default), and stacks three frames of each, one row
per frame, with the flicker each run measured:

    python tools/video_strip.py ../shared/data/bsds500/test/118031.jpg --out docs/video_strip.jpg
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main() -> int:
    """Make the clip, colorize it twice, write the strip."""
    import imageio_ffmpeg

    from colorjax.inference import make_colorizer
    from colorjax.inference.pretrained import load_pretrained
    from colorjax.inference.video import colorize_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, nargs=2, default=(240, 160), metavar=("W", "H"))
    parser.add_argument("--step", type=int, default=4, help="pan speed, pixels per frame")
    parser.add_argument("--smoothing", type=float, default=0.8)
    args = parser.parse_args()

    photo = np.asarray(Image.open(args.photo).convert("RGB"))
    w, h = args.size
    frames = [photo[:h, t * args.step : t * args.step + w] for t in range(args.frames)]
    model, variables, meta = load_pretrained()
    colorizer = make_colorizer(model, variables, meta, batch_size=4)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "pan.mp4"
        writer = imageio_ffmpeg.write_frames(str(clip), (w, h), fps=12, quality=10)
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        runs = {}
        for strength in (0.0, args.smoothing):
            out = Path(tmp) / f"out{strength}.mp4"
            report = colorize_clip(clip, out, colorizer, smoothing=strength, measure=True)
            reader = imageio_ffmpeg.read_frames(str(out))
            next(reader)
            runs[strength] = ([np.frombuffer(r, np.uint8).reshape(h, w, 3) for r in reader], report)
    picks = [args.frames // 4, args.frames // 2, 3 * args.frames // 4]
    gray = [
        np.repeat(np.asarray(Image.fromarray(frames[i]).convert("L"))[..., None], 3, -1)
        for i in picks
    ]
    rows = [
        np.concatenate([gray[k], runs[0.0][0][i], runs[args.smoothing][0][i]], axis=1)
        for k, i in enumerate(picks)
    ]
    head = 22
    strip = Image.new("RGB", (3 * w, head + len(rows) * h), "white")
    draw = ImageDraw.Draw(strip)
    titles = (
        "gray",
        f"per frame (flicker {runs[0.0][1].flicker:.2f})",
        f"smoothed {args.smoothing} (flicker {runs[args.smoothing][1].flicker:.2f})",
    )
    for c, title in enumerate(titles):
        draw.text((c * w + 6, 5), title, fill="black")
    for r, row in enumerate(rows):
        strip.paste(Image.fromarray(row), (0, head + r * h))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out, quality=88)
    print(
        f"wrote {args.out}: frames {picks}; flicker per frame {runs[0.0][1].flicker:.3f}, "
        f"smoothed {runs[args.smoothing][1].flicker:.3f} (mean |delta ab| after motion)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
