"""Video throughput: frames/s of `colorize_clip` at 480p and 1080p, beside each stage alone.

Decoding, inference (with smoothing and the full-resolution finish) and encoding run in three
overlapping stages; the end-to-end rate should sit near the slowest stage's, which this
measures alone for decode and encode. Clips are FFmpeg's testsrc2 pattern:

    python benchmarks/video_bench.py --frames 48 --out benchmarks/results/video-cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {"480p": (854, 480), "1080p": (1920, 1080)}


def main() -> int:
    """Time decode, encode and the whole pipeline per size; write one JSON record."""
    import imageio_ffmpeg
    import jax

    from colorjax.bench.records import collect_metadata
    from colorjax.inference import make_colorizer
    from colorjax.inference.pretrained import load_pretrained
    from colorjax.inference.video import colorize_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--weights", default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    model, variables, meta = load_pretrained(args.weights)
    colorizer = make_colorizer(model, variables, meta, batch_size=args.batch_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes:
            w, h = SIZES[name]
            clip = Path(tmp) / f"{name}.mp4"
            subprocess.run(
                [exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                 f"testsrc2=size={w}x{h}:rate=24", "-frames:v", str(args.frames),
                 "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)],
                check=True,
            )  # fmt: skip
            start = time.perf_counter()
            reader = imageio_ffmpeg.read_frames(str(clip))
            next(reader)
            frames = [np.frombuffer(r, np.uint8).reshape(h, w, 3) for r in reader]
            decode = len(frames) / (time.perf_counter() - start)
            start = time.perf_counter()
            writer = imageio_ffmpeg.write_frames(
                str(Path(tmp) / "enc.mp4"), (w, h), fps=24, macro_block_size=1
            )
            writer.send(None)
            for frame in frames:
                writer.send(frame)
            writer.close()
            encode = len(frames) / (time.perf_counter() - start)
            # The first run compiles the bucket; the second is the timed one.
            colorize_clip(clip, Path(tmp) / "warm.mp4", colorizer, progress=False)
            report = colorize_clip(clip, Path(tmp) / "out.mp4", colorizer, progress=False)
            rows.append(
                {
                    "size": name,
                    "width": w,
                    "height": h,
                    "frames": report.frames,
                    "end_to_end_fps": round(report.frames_per_second, 2),
                    "decode_only_fps": round(decode, 2),
                    "encode_only_fps": round(encode, 2),
                }
            )
            print(rows[-1])
    record = {
        "what": "colorize_clip throughput, bundled default weights, smoothing 0.8",
        "command": "python " + " ".join(sys.argv),
        "weights": meta.get("name"),
        "working_size": meta.get("working_size"),
        "batch_size": args.batch_size,
        # device, versions, threads, git commit, load average, date
        **collect_metadata(jax.devices(), "float32", with_torch=False),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
