"""`colorjax demo`: colorize a sample with the bundled weights, train the CPU demo, compare."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from colorjax.cli.train import add_override_argument
from colorjax.errors import ColorjaxError, DataSourceError
from colorjax.fileio import child_path

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "demo_cpu"  # a preset shipped in colorjax/configs: works from any folder
DEFAULT_SAMPLE = "astronaut.png"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the demo's arguments."""
    parser.add_argument("--workdir", default="runs/demo", help="where outputs and the run go")
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="experiment to train (default: %(default)s)"
    )
    add_override_argument(parser)
    parser.add_argument(
        "--sample", default=DEFAULT_SAMPLE, help="embedded photo to colorize (default: %(default)s)"
    )
    parser.add_argument("--skip-train", action="store_true", help="only use the bundled weights")


def sample_photo(name: str) -> np.ndarray:
    """Decode one of the embedded photos by file name."""
    from colorjax.data import decode_image, embedded_photo_paths

    paths = {p.name: p for p in embedded_photo_paths()}
    if name not in paths:
        raise DataSourceError(
            f"no embedded photo named {name!r}; choose one of {sorted(paths)} "
            "(they ship with scikit-image: pip install scikit-image)"
        )
    return decode_image(paths[name])


def side_by_side(gray_source: np.ndarray, *panels: np.ndarray) -> np.ndarray:
    """Return gray | panel | panel ... as one uint8 image (the gray is the input's luminance)."""
    from colorjax.color import rgb_to_lab

    lightness = np.asarray(rgb_to_lab(gray_source.astype(np.float32) / 255.0))[..., 0]
    gray = np.clip(np.round(lightness / 100.0 * 255.0), 0, 255).astype(np.uint8)
    return np.concatenate([np.repeat(gray[..., None], 3, axis=-1), *panels], axis=1)


def _save(rgb: np.ndarray, path: Path) -> Path:
    import io

    from PIL import Image

    from colorjax.fileio import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def colorize_with_bundled(photo: np.ndarray, out_dir: Path) -> list[Path]:
    """Colorize the photo with each family's default bundled weights; return the files written."""
    from colorjax.inference import Colorizer
    from colorjax.inference.pretrained import load_pretrained

    written = []
    for family in ("colornet", "deepcolorization"):
        try:
            model, variables, meta = load_pretrained(None, family=family)
        except ColorjaxError as err:
            logger.warning("no bundled %s weights: %s", family, err)
            continue
        colour = Colorizer(model, variables, int(meta["working_size"])).colorize(photo)
        path = child_path(out_dir, f"bundled-{meta.get('name', family)}.png", "weights name")
        written.append(_save(side_by_side(photo, colour, photo), path))
    return written


def train_and_colorize(args: argparse.Namespace, photo: np.ndarray, out_dir: Path) -> Path:
    """Train the demo config (resuming if already run) and colorize the photo with the result."""
    from colorjax.config import load_config
    from colorjax.inference import Colorizer
    from colorjax.train.loop import train
    from colorjax.train.run import load_run

    config = load_config(args.config, args.overrides)
    run_dir = out_dir / "run"
    train(config, run_dir, resume=True)
    model, variables, meta = load_run(run_dir)
    colour = Colorizer(model, variables, meta["working_size"]).colorize(photo)
    return _save(
        side_by_side(photo, colour, photo),
        child_path(out_dir, f"trained-{meta['model']}.png", "model name"),
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where its outputs are."""
    from colorjax.fileio import ensure_output_dir
    from colorjax.hostmem import reuse_freed_memory

    reuse_freed_memory()  # the demo trains on the CPU: 15-20 % faster steps (hostmem)
    out_dir = ensure_output_dir(args.workdir, "--workdir")
    photo = sample_photo(args.sample)
    written = colorize_with_bundled(photo, out_dir)
    if not args.skip_train:
        written.append(train_and_colorize(args, photo, out_dir))
    print("wrote (gray input | colorized | original):")
    for path in written:
        print(f"  {path}")
    return 0
