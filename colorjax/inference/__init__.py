"""Colorize images of any size: predict_ab for any model, the Colorizer, hints, image files.

``predict`` holds the jitted kernels (``predict_ab``, ``predict_rgb``, shape buckets),
``colorizer`` the any-size :class:`Colorizer` and ``colorize``, ``hints`` user colour hints,
``files`` the expansion of inputs and the saving of results for ``colorjax colorize``.
"""

from __future__ import annotations

from colorjax.inference.colorizer import (
    Colorizer,
    ImageLike,
    as_pretrained,
    colorize,
    default_temperature,
    make_colorizer,
)
from colorjax.inference.files import IMAGE_EXTENSIONS
from colorjax.inference.predict import (
    DEFAULT_BUCKET_FRACTIONS,
    DEFAULT_TEMPERATURE,
    MAX_WORKING_SIZE,
    bucket_shape,
    check_temperature,
    predict_ab,
    predict_rgb,
    trace_counts,
    working_shape,
)

__all__ = [
    "DEFAULT_BUCKET_FRACTIONS",
    "DEFAULT_TEMPERATURE",
    "IMAGE_EXTENSIONS",
    "MAX_WORKING_SIZE",
    "Colorizer",
    "ImageLike",
    "as_pretrained",
    "bucket_shape",
    "check_temperature",
    "colorize",
    "default_temperature",
    "make_colorizer",
    "predict_ab",
    "predict_rgb",
    "trace_counts",
    "working_shape",
]
