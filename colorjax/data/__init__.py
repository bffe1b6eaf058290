"""Input pipeline: image sources, Pillow decoding, and a sharded, resumable Grain loader."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from colorjax.data.decode import (
    decode_image,
    decode_pil,
    preprocess_eval,
    preprocess_train,
    random_resized_crop_box,
    thumbnail_max_chroma,
)
from colorjax.data.embedded import EMBEDDED_PHOTOS, embedded_photo_paths
from colorjax.data.sources import (
    ACCEPTED_FORMS,
    IMAGE_EXTENSIONS,
    FileSource,
    Source,
    TfdsSource,
    list_image_files,
    make_source,
)

if TYPE_CHECKING:
    from colorjax.data.loader import DataIterator, make_loader, shard_indices

# The loader needs Grain; it is imported on first use so that decoding, sources, inference and
# synthetic benchmarks work where Grain is not installed (e.g. a bare accelerator machine).
_LAZY = {"DataIterator", "make_loader", "shard_indices"}

__all__ = [
    "ACCEPTED_FORMS",
    "EMBEDDED_PHOTOS",
    "IMAGE_EXTENSIONS",
    "DataIterator",
    "FileSource",
    "Source",
    "TfdsSource",
    "decode_image",
    "decode_pil",
    "embedded_photo_paths",
    "list_image_files",
    "make_loader",
    "make_source",
    "thumbnail_max_chroma",
    "preprocess_eval",
    "preprocess_train",
    "random_resized_crop_box",
    "shard_indices",
]


def __getattr__(name: str) -> Any:
    """Import the Grain loader's names on first use (see _LAZY)."""
    if name in _LAZY:
        return getattr(importlib.import_module("colorjax.data.loader"), name)
    raise AttributeError(f"module 'colorjax.data' has no attribute {name!r}")
