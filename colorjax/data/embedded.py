"""The embedded default data set: real colour photos shipped inside the scikit-image wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Natural colour photographs installed with scikit-image (no pooch download needed).
# Synthetic, grayscale, microscopy and astronomy images in the same folder are left out
# because they would teach a colorizer the wrong colours.
EMBEDDED_PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
)


def skimage_data_dir() -> Path | None:
    """Return the folder of scikit-image's bundled images, or None when not installed."""
    # find_spec locates the package without importing it (importing skimage is slow).
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def embedded_photo_paths() -> list[Path]:
    """Return the paths of the embedded photos that exist on this installation, sorted."""
    folder = skimage_data_dir()
    if folder is None:
        return []
    return sorted(p for p in (folder / name for name in EMBEDDED_PHOTOS) if p.is_file())
