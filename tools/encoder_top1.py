"""Top-1 of the converted EfficientNet-Lite on Tiny ImageNet photos, in colour and in gray.

Tiny ImageNet's class folders are ImageNet WordNet ids, so the ImageNet classifier's top-1 is
measurable on them; the gray column feeds the encoder exactly what a colorizer feeds it (the
gray sRGB photo of L). Caveat: Tiny ImageNet photos come from ImageNet, and some may be in the
encoder's own training set, so the colour number is optimistic; the gray-vs-colour gap is the
point.

    python tools/encoder_top1.py --variant lite2 --per-class 2 --size 224 \
        --out benchmarks/results/encoder_top1_lite2.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from colorjax import color
from colorjax.models.backbones import EfficientNetLite, gray_encoder_input, imagenet_wnids
from colorjax.weights.backbones import lite_params


def load_photos(root: Path, per_class: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB photos resized to size x size and their ImageNet class indices."""
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    photos, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name in index):
        files = sorted((folder / "images").glob("*.JPEG")) or sorted(folder.glob("*.JPEG"))
        for f in files[:per_class]:
            img = Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)
            photos.append(np.asarray(img))
            labels.append(index[folder.name])
    return np.stack(photos), np.asarray(labels)


def top1(variant: str, photos: np.ndarray, labels: np.ndarray, batch: int = 50) -> dict:
    """Top-1 accuracy in colour ([-1, 1] RGB) and in gray (gray_encoder_input of L)."""
    model = EfficientNetLite(variant)
    params = {"params": lite_params(variant)}

    @jax.jit
    def predict(rgb_u8: jax.Array) -> tuple[jax.Array, jax.Array]:
        rgb = rgb_u8.astype(jnp.float32) / 127.5 - 1.0
        l_norm, _ = color.rgb_uint8_to_lab_inputs(rgb_u8)
        colour = model.apply(params, rgb)["logits"].argmax(-1)
        gray = model.apply(params, gray_encoder_input(l_norm))["logits"].argmax(-1)
        return colour, gray

    hits = np.zeros(2)
    for start in range(0, len(photos), batch):
        colour, gray = predict(jnp.asarray(photos[start : start + batch]))
        want = labels[start : start + batch]
        hits += [np.sum(np.asarray(colour) == want), np.sum(np.asarray(gray) == want)]
    return {"top1_colour": hits[0] / len(labels), "top1_gray": hits[1] / len(labels)}


def main() -> None:
    """Measure and write the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="lite2")
    parser.add_argument("--root", default="../shared/data/tiny-imagenet/train")
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    t0 = time.perf_counter()
    photos, labels = load_photos(Path(args.root), args.per_class, args.size)
    result = {
        "variant": args.variant,
        "photos": int(len(labels)),
        "classes": int(len(set(labels.tolist()))),
        "size": args.size,
        **top1(args.variant, photos, labels),
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python tools/encoder_top1.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
