"""README gallery: photos as gray | one column per weights | truth, one committed JPEG.

Each photo is colorized at full size with the given weights (default: every bundled entry, the
way a user runs `colorjax colorize --weights NAME`), then centre-cropped to a square and shrunk
for display. The photos are a fixed, evenly spaced pick from a folder (not chosen by how good
they look):

    python benchmarks/gallery.py --data ../shared/data/bsds500/test --out benchmarks/gallery.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import colorjax
from colorjax import data, weights

# Short column titles for the bundled weights (others are titled by their name).
TITLES = {
    "colornet-lite2-cls4.tinyimagenet": "ColorNet-Lite2 (ImageNet encoder)",
    "deepcolorization-lite2.tinyimagenet": "DeepColorization-Lite2 (NoGAN)",
    "colornet-small-cls4.tinyimagenet": "ColorNet (from scratch)",
    "deepcolorization-colornet.tinyimagenet": "DeepColorization (from scratch)",
}


def pick(folder: Path, count: int) -> list[Path]:
    """`count` evenly spaced files of the sorted folder listing."""
    files = data.list_image_files(folder)
    if len(files) < count:
        raise SystemExit(f"{folder} has {len(files)} images; the gallery needs {count}")
    step = len(files) / count
    return [files[int(i * step)] for i in range(count)]


def square(rgb: np.ndarray, size: int) -> Image.Image:
    """Centre crop to a square and resize to size x size."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(rgb[top : top + side, left : left + side])
    return crop.resize((size, size), Image.Resampling.LANCZOS)


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """The input's luminance as neutral RGB (what the networks see)."""
    from colorjax import color

    lab = np.array(color.rgb_to_lab(rgb.astype(np.float32) / 255.0))
    lab[..., 1:] = 0.0
    out = np.asarray(color.lab_to_rgb(lab)) * 255.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def bundled_names() -> list[str]:
    """Every bundled entry of the manifest, the default ColorNet first."""
    names = [e.name for e in weights.list_pretrained() if e.urls[0].startswith("bundled:")]
    first = weights.default_entry("colornet").name
    return sorted(names, key=lambda n: n != first)


def make_gallery(paths: list[Path], size: int, names: list[str]) -> Image.Image:
    """One row per photo: gray, one column per weights name, truth; with a header strip."""
    columns = ["gray", *(TITLES.get(n, n) for n in names), "truth"]
    header = 18
    sheet = Image.new("RGB", (size * len(columns), header + size * len(paths)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(columns):
        draw.text((j * size + 6, 3), title, fill="black")
    for i, path in enumerate(paths):
        rgb = data.decode_image(path)
        tiles = [gray_of(rgb), *(colorjax.colorize(rgb, n) for n in names), rgb]
        for j, tile in enumerate(tiles):
            sheet.paste(square(tile, size), (j * size, header + i * size))
    return sheet


def main(argv: list[str] | None = None) -> int:
    """Write the gallery JPEG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of colour photos")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/gallery.jpg"))
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", type=int, default=176, help="tile side in pixels")
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument(
        "--weights",
        nargs="+",
        default=None,
        help="weights names, one column each (default: bundled)",
    )
    args = parser.parse_args(argv)
    sheet = make_gallery(pick(args.data, args.count), args.size, args.weights or bundled_names())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=args.quality, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
