"""Input pipeline: image sources, Pillow decoding, and a sharded, resumable Grain loader."""

from colorjax.data.decode import (
    decode_image,
    decode_pil,
    max_chroma,
    preprocess_eval,
    preprocess_train,
    random_resized_crop_box,
)
from colorjax.data.embedded import EMBEDDED_PHOTOS, embedded_photo_paths
from colorjax.data.loader import DataIterator, make_loader, shard_indices
from colorjax.data.sources import (
    ACCEPTED_FORMS,
    IMAGE_EXTENSIONS,
    FileSource,
    Source,
    TfdsSource,
    list_image_files,
    make_source,
)

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
    "max_chroma",
    "preprocess_eval",
    "preprocess_train",
    "random_resized_crop_box",
    "shard_indices",
]
