"""Colorize images of any size: full-resolution L, working-size ab, a few compiled shape buckets.

Pipeline for one photo of size H x W (DESIGN.md, "How data flows", step 4):

1. L is computed at full resolution from the input's RGB on device (``colorjax.color``).
2. L is resized so that the *longer* side equals the model's working size, keeping the aspect
   ratio (the shorter side is at least 1 pixel, so 1000 x 17 or 1 x 1 photos work). Both
   up- and down-scaling happen: the model sees objects at roughly the scale it was trained on.
3. The working-size L is edge-padded (bottom/right) into a *shape bucket*: the longer side is
   the working size, the shorter side the smallest of ``bucket_fractions * working_size``
   that holds it; every side is a multiple of ``model.stride``. With the default fractions
   (0.5, 1.0) there are at most three buckets (square, wide, tall), so a folder of mixed sizes
   compiles the network at most three times. Photos of one bucket are batched together and the
   batch is padded to a fixed size, so the batch size never triggers a compile either.
4. The network predicts ab; the padding is cropped away; ab is bilinearly upsampled to H x W
   and joined with the original full-resolution L; Lab -> RGB -> uint8. The output therefore
   keeps the input's luminance exactly (up to uint8 rounding and gamut clipping).

Full-resolution work (steps 1 and 4) is pixel-wise apart from the ab upsampling, so it runs on
flat chunks of a fixed number of pixels with the image size passed as data: it compiles once
per chunk size (two sizes), never once per photo. ``predict_rgb`` is the all-on-device variant
for batches of one size (used by evaluation); the two agree up to resampling details.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import io
import itertools
import logging
import math
import os
import sys
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from colorjax import color, data, models
from colorjax.errors import (
    ColorjaxError,
    ConfigError,
    ImageDecodeError,
    InputShapeError,
    PredictionError,
)
from colorjax.fileio import atomic_write_bytes, clean_stale_temp_files, ensure_output_dir

__all__ = [
    "DEFAULT_BUCKET_FRACTIONS",
    "IMAGE_EXTENSIONS",
    "Colorizer",
    "bucket_shape",
    "colorize",
    "configure_parser",
    "make_colorizer",
    "predict_rgb",
    "resolve_weights",
    "run",
    "trace_counts",
    "working_shape",
]

logger = logging.getLogger(__name__)

ImageLike = np.ndarray | Image.Image | str | os.PathLike | bytes
WeightsLike = None | str | os.PathLike | tuple

DEFAULT_BUCKET_FRACTIONS: tuple[float, ...] = (0.5, 1.0)
DEFAULT_OUTPUT = "colorized"
DEFAULT_TEMPERATURE = 0.38
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)
# Full-resolution kernels work on flat chunks of these many pixels: a small size so thumbnails
# stay cheap, a large one for photos (a 12 MP photo is ~46 large chunks).
_CHUNK_SIZES: tuple[int, int] = (1 << 14, 1 << 18)

# Incremented inside traced functions, i.e. once per compilation, never per call.
_TRACES: collections.Counter[str] = collections.Counter()


def trace_counts() -> dict[str, int]:
    """Return how often each inference kernel has been traced (compiled) in this process."""
    return dict(_TRACES)


def working_shape(height: int, width: int, working_size: int) -> tuple[int, int]:
    """Return (h, w) with the longer side equal to working_size and the aspect ratio kept."""
    if height < 1 or width < 1:
        raise InputShapeError(f"image size must be at least 1 x 1, got {height} x {width}")
    if height >= width:
        return working_size, max(1, min(working_size, round(width * working_size / height)))
    return max(1, min(working_size, round(height * working_size / width))), working_size


def _round_up(value: int, multiple: int) -> int:
    """Round value up to a multiple of multiple."""
    return -(-value // multiple) * multiple


def bucket_shape(
    height: int,
    width: int,
    working_size: int,
    stride: int = 1,
    fractions: Sequence[float] = DEFAULT_BUCKET_FRACTIONS,
) -> tuple[int, int]:
    """Return the padded model input shape (multiples of stride) for an H x W photo."""
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise ConfigError(f"bucket fractions must lie in (0, 1], got {tuple(fractions)}")
    h, w = working_shape(height, width, working_size)
    long_side = _round_up(working_size, stride)
    sizes = {_round_up(max(1, math.ceil(f * working_size)), stride) for f in fractions}
    sizes.add(long_side)
    short_side = min(s for s in sizes if s >= min(h, w))
    return (long_side, short_side) if h >= w else (short_side, long_side)


def _to_uint8(rgb: jax.Array) -> jax.Array:
    """Map RGB floats in [0, 1] to uint8 with rounding."""
    return jnp.round(jnp.clip(rgb, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def _model_stride(model: Any) -> int:
    """Return the spatial divisor the model needs (1 if it declares none)."""
    return int(getattr(model, "stride", 1) or 1)


def _check_working_size(working_size: Any) -> int:
    """Validate the working size and return it as an int."""
    if isinstance(working_size, bool) or not isinstance(working_size, (int, np.integer)):
        raise ConfigError(f"working_size must be a positive int, got {working_size!r}")
    if working_size < 1:
        raise ConfigError(f"working_size must be a positive int, got {working_size}")
    return int(working_size)


# --------------------------------------------------------------------------- device kernels


@functools.partial(jax.jit, static_argnames=("model", "pad_to", "temperature"))
def _predict_bucket(
    model: Any, variables: Any, l_pad: jax.Array, pad_to: int, temperature: float
) -> jax.Array:
    """Predict ab_norm for a bucket batch, zero-padded to (N, pad_to, pad_to, 2), and finiteness.

    The second output is one bool per photo: whether every predicted ab value is finite.
    """
    _TRACES["model"] += 1
    ab = models.predict_ab(model, variables, l_pad, temperature=temperature).astype(jnp.float32)
    _, hb, wb, _ = ab.shape
    finite = jnp.all(jnp.isfinite(ab), axis=(1, 2, 3))
    # One ab shape for every bucket keeps the full-resolution kernel to a single compile.
    return jnp.pad(ab, ((0, 0), (0, pad_to - hb), (0, pad_to - wb), (0, 0))), finite


def _check_finite_prediction(finite: Any, names: Sequence[Any]) -> None:
    """Raise PredictionError when any photo's prediction held NaN or Inf (never write it)."""
    finite = np.asarray(finite)
    bad = [str(names[i]) for i in range(len(names)) if not finite[i]]
    if bad:
        raise PredictionError(
            f"the model predicted non-finite colour (NaN or Inf) for {len(bad)} photo(s) "
            f"({', '.join(bad[:3])}); nothing was written for them. The weights are damaged or "
            "unsuited to these inputs: check them with `colorjax weights verify`, or use other "
            "weights"
        )


@jax.jit
def _luminance_chunk(rgb_flat: jax.Array) -> jax.Array:
    """Return normalised L (C,) for a flat chunk of uint8 RGB pixels (C, 3)."""
    _TRACES["luminance"] += 1
    l_norm, _ = color.rgb_uint8_to_lab_inputs(rgb_flat)
    return l_norm[:, 0]


@functools.partial(jax.jit, static_argnames=("with_gray",))
def _finish_chunk(
    rgb_flat: jax.Array,
    ab_small: jax.Array,
    start: jax.Array,
    full_hw: jax.Array,
    small_hw: jax.Array,
    with_gray: bool,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Upsample ab to full size for a chunk of pixels, join with their L, return uint8 RGB."""
    _TRACES["finish"] += 1
    size = rgb_flat.shape[0]
    idx = start + jnp.arange(size, dtype=jnp.int32)
    full = full_hw.astype(jnp.int32)
    y, x = idx // full[1], idx % full[1]

    def source(coord: jax.Array, n_full: jax.Array, n_small: jax.Array) -> tuple:
        # Half-pixel centres and edge clamping: the same sampling as jax.image.resize 'linear'
        # when upsampling.
        n_small_f = n_small.astype(jnp.float32)
        pos = (coord.astype(jnp.float32) + 0.5) * (n_small_f / n_full.astype(jnp.float32)) - 0.5
        pos = jnp.clip(pos, 0.0, n_small_f - 1.0)
        lo = jnp.floor(pos).astype(jnp.int32)
        hi = jnp.minimum(lo + 1, n_small - 1)
        return lo, hi, (pos - lo.astype(jnp.float32))[:, None]

    y0, y1, wy = source(y, full[0], small_hw[0])
    x0, x1, wx = source(x, full[1], small_hw[1])
    top = ab_small[y0, x0] * (1.0 - wx) + ab_small[y0, x1] * wx
    bottom = ab_small[y1, x0] * (1.0 - wx) + ab_small[y1, x1] * wx
    ab = top * (1.0 - wy) + bottom * wy
    l_norm, _ = color.rgb_uint8_to_lab_inputs(rgb_flat)
    ab = color.fit_ab_to_gamut(l_norm, ab)  # keep L exact: shrink chroma instead of clipping
    colour = _to_uint8(color.lab_inputs_to_rgb(l_norm, ab))
    if not with_gray:
        return colour
    return colour, _to_uint8(color.lab_inputs_to_rgb(l_norm, jnp.zeros_like(ab)))


def _run_chunked(kernel: Any, rgb: np.ndarray, *args: Any, **kwargs: Any) -> Any:
    """Apply a pixel kernel to an (H, W, 3) image in fixed-size flat chunks; return host arrays."""
    flat = rgb.reshape(-1, 3)
    n = flat.shape[0]
    chunk = _CHUNK_SIZES[0] if n <= _CHUNK_SIZES[0] else _CHUNK_SIZES[1]
    pieces = []
    for start in range(0, n, chunk):
        part = flat[start : start + chunk]
        if part.shape[0] < chunk:
            part = np.pad(part, ((0, chunk - part.shape[0]), (0, 0)))
        # Dispatch is asynchronous: every chunk is queued before any result is fetched.
        pieces.append(kernel(part, *args, np.int32(start), **kwargs) if args else kernel(part))
    if isinstance(pieces[0], tuple):
        return tuple(np.concatenate([np.asarray(p[i]) for p in pieces])[:n] for i in range(2))
    return np.concatenate([np.asarray(p) for p in pieces])[:n]


# --------------------------------------------------------------------------- public API


@functools.partial(
    jax.jit, static_argnames=("model", "working_size", "stride", "fractions", "temperature")
)
def _predict_rgb_jit(
    model: Any,
    variables: Any,
    rgb_u8: jax.Array,
    working_size: int,
    stride: int,
    fractions: tuple[float, ...],
    temperature: float,
) -> jax.Array:
    """All-on-device colorization of a batch of same-size photos (see predict_rgb)."""
    _TRACES["predict_rgb"] += 1
    n, height, width, _ = rgb_u8.shape
    l_norm, _ = color.rgb_uint8_to_lab_inputs(rgb_u8)
    h, w = working_shape(height, width, working_size)
    hb, wb = bucket_shape(height, width, working_size, stride, fractions)
    l_small = l_norm
    if (h, w) != (height, width):
        l_small = jax.image.resize(l_norm, (n, h, w, 1), "linear", antialias=True)
    l_pad = jnp.pad(l_small, ((0, 0), (0, hb - h), (0, wb - w), (0, 0)), mode="edge")
    ab = models.predict_ab(model, variables, l_pad, temperature=temperature)
    ab = ab[:, :h, :w].astype(jnp.float32)
    finite = jnp.all(jnp.isfinite(ab), axis=(1, 2, 3))
    if (h, w) != (height, width):
        ab = jax.image.resize(ab, (n, height, width, 2), "linear", antialias=True)
    ab = color.fit_ab_to_gamut(l_norm, ab)  # keep L exact: shrink chroma instead of clipping
    return _to_uint8(color.lab_inputs_to_rgb(l_norm, ab)), finite


def predict_rgb(
    model: Any,
    variables: Any,
    rgb_u8: Any,
    working_size: int,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    bucket_fractions: Sequence[float] = DEFAULT_BUCKET_FRACTIONS,
) -> jax.Array:
    """Colorize a batch of same-size uint8 RGB photos (N, H, W, 3) on device; uint8 jax.Array."""
    shape = tuple(getattr(rgb_u8, "shape", ()))
    if len(shape) != 4 or shape[-1] != 3 or min(shape[1:3], default=0) < 1:
        raise InputShapeError(
            f"predict_rgb expects uint8 RGB of shape (N, H, W, 3), got shape {shape}; "
            "stack same-size photos, or use Colorizer for mixed sizes"
        )
    if np.dtype(rgb_u8.dtype) != np.uint8:
        raise InputShapeError(f"predict_rgb expects uint8 RGB, got dtype {rgb_u8.dtype}")
    rgb, finite = _predict_rgb_jit(
        model,
        variables,
        rgb_u8,
        _check_working_size(working_size),
        _model_stride(model),
        tuple(float(f) for f in bucket_fractions),
        float(temperature),
    )
    # NaN ab would clip to black pixels that look like a (bad) result: refuse them instead.
    _check_finite_prediction(finite, [f"batch item {i}" for i in range(shape[0])])
    return rgb


class Colorizer:
    """Colorize photos of any size with one model, reusing compiled kernels across photos."""

    def __init__(
        self,
        model: Any,
        variables: Any,
        working_size: int,
        *,
        batch_size: int = 1,
        bucket_fractions: Sequence[float] = DEFAULT_BUCKET_FRACTIONS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.variables = jax.device_put(variables)
        self.working_size = _check_working_size(working_size)
        self.stride = _model_stride(model)
        self.batch_size = int(batch_size)
        self.bucket_fractions = tuple(float(f) for f in bucket_fractions)
        self.temperature = float(temperature)
        bucket_shape(1, 1, self.working_size, self.stride, self.bucket_fractions)  # validate
        self._pad_to = _round_up(self.working_size, self.stride)
        self._buckets_used: set[tuple[int, int]] = set()

    @property
    def num_compilations(self) -> int:
        """Number of distinct network input shapes this colorizer has run (one compile each)."""
        return len(self._buckets_used)

    def bucket_for(self, height: int, width: int) -> tuple[int, int]:
        """Return the padded working-size shape a photo of height x width is predicted at."""
        return bucket_shape(height, width, self.working_size, self.stride, self.bucket_fractions)

    def __call__(self, image: ImageLike) -> np.ndarray:
        """Colorize one image (array, PIL image or path) to uint8 RGB of the same size."""
        return self.colorize(image)

    def colorize(self, image: ImageLike) -> np.ndarray:
        """Colorize one image (array, PIL image or path) to uint8 RGB of the same size."""
        ((_, result),) = list(self.colorize_many([(0, image)]))
        return result

    def colorize_many(
        self, items: Iterable[tuple[Hashable, ImageLike]], *, with_gray: bool = False
    ) -> Iterator[tuple[Hashable, Any]]:
        """Colorize (key, image) pairs, batching photos by bucket; yields (key, rgb) in any order.

        With with_gray=True each result is (colour, gray): gray is the input's luminance
        rendered as neutral RGB (ab = 0), as shown on the left of a --compare image.
        """
        pending: dict[tuple[int, int], list] = {}
        for key, image in items:
            rgb = data.decode_image(image)
            bucket = self.bucket_for(rgb.shape[0], rgb.shape[1])
            group = pending.setdefault(bucket, [])
            group.append((key, rgb, self._prepare(rgb, bucket)))
            if len(group) == self.batch_size:
                yield from self._flush(bucket, pending.pop(bucket), with_gray)
        for bucket, group in list(pending.items()):
            yield from self._flush(bucket, group, with_gray)

    def _prepare(self, rgb: np.ndarray, bucket: tuple[int, int]) -> tuple:
        """Compute full-resolution L, resize it to working size and edge-pad it to the bucket."""
        height, width = rgb.shape[:2]
        l_full = _run_chunked(_luminance_chunk, rgb).reshape(height, width)
        h, w = working_shape(height, width, self.working_size)
        l_small = l_full
        if (h, w) != (height, width):
            # Pillow's bilinear filter widens with the reduction factor (antialiased), like
            # jax.image.resize(antialias=True) in predict_rgb; done on the host so that the
            # many full-resolution sizes never reach the compiler.
            pil = Image.fromarray(l_full.astype(np.float32))  # float32 2-D -> mode "F"
            l_small = np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR), np.float32)
        l_pad = np.pad(l_small, ((0, bucket[0] - h), (0, bucket[1] - w)), mode="edge")
        return l_pad[..., None], (h, w)

    def _flush(self, bucket: tuple[int, int], group: list, with_gray: bool) -> Iterator[tuple]:
        """Run the network on one bucket batch and finish every photo at full resolution."""
        l_batch = np.stack([prepared[0] for _, _, prepared in group])
        if l_batch.shape[0] < self.batch_size:
            # A fixed batch size keeps a partly filled batch from compiling a new shape.
            extra = self.batch_size - l_batch.shape[0]
            l_batch = np.concatenate([l_batch, np.repeat(l_batch[-1:], extra, axis=0)])
        self._buckets_used.add(bucket)
        ab, finite = _predict_bucket(
            self.model, self.variables, l_batch, self._pad_to, self.temperature
        )
        _check_finite_prediction(finite, [key for key, _, _ in group])
        for i, (key, rgb, (_, small_hw)) in enumerate(group):
            out = _run_chunked(
                _finish_chunk,
                rgb,
                ab[i],
                full_hw=np.asarray(rgb.shape[:2], np.int32),
                small_hw=np.asarray(small_hw, np.int32),
                with_gray=with_gray,
            )
            shape = rgb.shape
            if with_gray:
                yield key, (out[0].reshape(shape), out[1].reshape(shape))
            else:
                yield key, out.reshape(shape)


def resolve_weights(
    weights: WeightsLike = None, manifest: str | os.PathLike | None = None
) -> tuple[Any, Any, dict]:
    """Return (model, variables, meta) for a name, a path, None (default) or such a tuple.

    Names are looked up in `manifest` (default: the packaged one), e.g. the manifest.json
    that `colorjax weights export` keeps beside the weights it writes.
    """
    if isinstance(weights, tuple):
        if len(weights) != 3 or not isinstance(weights[2], dict):
            raise ConfigError(
                "weights tuple must be (model, variables, meta) as returned by load_pretrained"
            )
        return weights
    from colorjax import hub  # Deferred: hub pulls in download machinery colorize may not need.

    if weights is None:
        return hub.load_pretrained(None, family="colornet", manifest=manifest)
    return hub.load_pretrained(os.fspath(weights), manifest=manifest)


def make_colorizer(
    model: Any,
    variables: Any,
    meta: dict,
    *,
    working_size: int | None = None,
    temperature: float | None = None,
    batch_size: int = 1,
) -> Colorizer:
    """A Colorizer with the weights' tuned defaults (meta) unless the caller overrides them.

    working_size is DeOldify's "render factor": the network's input size (longer side);
    temperature is the annealed-mean T of classification models (lower: more saturated).
    """
    return Colorizer(
        model,
        variables,
        working_size if working_size is not None else meta["working_size"],
        batch_size=batch_size,
        temperature=temperature if temperature is not None else default_temperature(meta),
    )


def default_temperature(meta: dict) -> float:
    """The annealed-mean temperature recorded with the weights (tuned), else Zhang et al.'s."""
    return float(meta.get("temperature") or DEFAULT_TEMPERATURE)


@functools.lru_cache(maxsize=4)
def _cached_colorizer(
    weights: str | None, working_size: int | None, temperature: float | None
) -> Colorizer:
    """Load named weights once per process so repeated colorize calls reuse compiled kernels."""
    model, variables, meta = resolve_weights(weights)
    return make_colorizer(
        model, variables, meta, working_size=working_size, temperature=temperature
    )


def colorize(
    image: ImageLike,
    weights: WeightsLike = None,
    *,
    working_size: int | None = None,
    temperature: float | None = None,
    hints: Sequence[Any] | None = None,
    hint_radius: int = 2,
) -> np.ndarray:
    """Colorize an array (gray, RGB, RGBA), PIL image or path to H x W x 3 uint8 RGB.

    working_size (render factor) and temperature default to the values tuned for the weights.
    `hints` [(x, y, (r, g, b)), ...] in original-image pixels guide models that take them
    (zhang-siggraph17); `hint_radius` is the half-width of each hint square in working pixels.
    """
    if isinstance(weights, tuple):
        model, variables, meta = resolve_weights(weights)
        colorizer = make_colorizer(
            model, variables, meta, working_size=working_size, temperature=temperature
        )
    else:
        key = None if weights is None else os.fspath(weights)
        colorizer = _cached_colorizer(key, working_size, temperature)
    if hints is not None:
        from colorjax.hints import colorize_with_hints  # deferred: colorjax.hints imports this

        return colorize_with_hints(colorizer, image, hints, hint_radius)
    return colorizer(image)


# --------------------------------------------------------------------------- command line


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `colorjax colorize` arguments."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="OUTDIR",
        help=f"output folder (default: {DEFAULT_OUTPUT}/ in the current folder)",
    )
    parser.add_argument(
        "--weights", default=None, help="weights name or .safetensors path (default: bundled)"
    )
    parser.add_argument(
        "--manifest", default=None, help="manifest.json to look names up in (default: packaged)"
    )
    parser.add_argument("--compare", action="store_true", help="write gray | colour side by side")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--format", choices=("png", "jpg"), default="png", help="output format")
    parser.add_argument(
        "--batch-size", type=int, default=4, help="photos per network call (default 4)"
    )
    parser.add_argument(
        "--hint",
        action="append",
        metavar="X,Y,#RRGGBB",
        help="colour hint at pixel (X, Y) of the one input image (repeatable; zhang-siggraph17)",
    )
    parser.add_argument(
        "--hint-radius", type=int, default=2, help="hint square half-width, working pixels (2)"
    )
    add_knob_arguments(parser)


def add_knob_arguments(parser: argparse.ArgumentParser) -> None:
    """--working-size (render factor) and --temperature, shared by colorize and eval."""
    parser.add_argument(
        "--working-size",
        type=int,
        default=None,
        help="network input size, longer side in pixels (DeOldify's render factor; "
        "default: tuned for the weights)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="annealed-mean temperature of classification models, lower is more saturated "
        "(default: tuned for the weights)",
    )


def _is_within(path: Path, folder: Path) -> bool:
    """Whether path (resolved) is folder or lies below it."""
    resolved = path.resolve()
    return resolved == folder or folder in resolved.parents


def _glob_base(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading parts without wildcards."""
    parts = Path(pattern).parts
    base = list(itertools.takewhile(lambda p: not glob.has_magic(p), parts[:-1]))
    return Path(*base) if base else Path(".")


def _expand_inputs(
    inputs: Sequence[str], exclude: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """Expand files, folders and globs to (source, relative output stem) pairs plus failures.

    Folder walks never enter `exclude` (the output folder: a second run must not colorize the
    first run's outputs) and skip hidden files (our own temporary files among them); anything
    that is not a regular file (a FIFO would block forever) is reported, not read.
    """
    found: list[tuple[Path, Path]] = []
    failures: list[tuple[str, str]] = []
    exclude = exclude.resolve() if exclude is not None else None

    def skips(base: Path) -> Path | None:
        # A walk that starts inside the output folder (-o is the input folder) cannot tell
        # outputs from inputs; item-by-item checks in run() keep inputs safe there.
        return exclude if exclude is not None and not _is_within(base, exclude) else None

    def add_dir(root: Path) -> None:
        files = []
        skip = skips(root)
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".") and not (skip and _is_within(here / d, skip))
            )
            files += [here / n for n in names if not n.startswith(".")]
        for p in sorted(files):
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                found.append((p, p.relative_to(root)))

    def add_file(path: Path) -> None:
        if path.is_file():
            found.append((path, Path(path.name)))
        else:
            failures.append((str(path), "not a regular file (a FIFO or device); skipped"))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            add_dir(path)
        elif path.exists():
            add_file(path)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                failures.append((item, "no such file or folder, and no file matches the pattern"))
            skip = skips(_glob_base(item))
            for match in matches:
                m = Path(match)
                if skip and _is_within(m, skip):
                    continue
                if m.is_dir():
                    add_dir(m)
                elif m.suffix.lower() in IMAGE_EXTENSIONS:
                    add_file(m)
    return found, failures


def _save_image(rgb: np.ndarray, path: Path, fmt: str) -> None:
    """Encode uint8 RGB as PNG or JPEG and write it atomically."""
    buf = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    else:
        Image.fromarray(rgb).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    """Run `colorjax colorize`; returns 1 if any input failed, else 0."""
    from tqdm import tqdm

    if getattr(args, "hint", None):
        from colorjax.hints import run_hinted

        return run_hinted(args)
    outdir = Path(args.output)
    sources, failures = _expand_inputs(args.inputs, exclude=outdir)
    inputs = {src.resolve() for src, _ in sources}
    todo: list[tuple[Path, Path]] = []
    planned: dict[Path, Path] = {}
    skipped = 0
    for src, rel in sources:
        out = outdir / rel.with_suffix("." + args.format)
        if out.resolve() in inputs:
            # Not even --overwrite may replace a photo being colorized: it is the user's original.
            failures.append(
                (str(src), f"output {out} would replace an input photo; pick another -o folder")
            )
            continue
        if out in planned:
            failures.append((str(src), f"output {out} is already taken by {planned[out]}"))
            continue
        planned[out] = src
        if out.exists() and not args.overwrite:
            skipped += 1
            print(f"skip {src}: {out} exists (pass --overwrite to replace it)", file=sys.stderr)
            continue
        todo.append((src, out))
    for name, reason in failures:
        print(f"failed {name}: {reason}", file=sys.stderr)
    for folder in {out.parent for out in planned}:
        clean_stale_temp_files(folder)  # left by a killed earlier run, even if nothing is redone

    written = 0
    if todo:
        ensure_output_dir(outdir, "-o")  # before the model runs on every photo
        model, variables, meta = resolve_weights(args.weights, args.manifest)
        colorizer = make_colorizer(
            model,
            variables,
            meta,
            working_size=args.working_size,
            temperature=args.temperature,
            batch_size=max(1, args.batch_size),
        )
        progress = tqdm(total=len(todo), unit="img", desc="colorize", file=sys.stderr)

        def decoded() -> Iterator[tuple[tuple[Path, Path], np.ndarray]]:
            for src, out in todo:
                try:
                    rgb = data.decode_image(src)
                except ImageDecodeError as err:
                    failures.append((str(src), str(err)))
                    progress.write(f"failed {src}: {err}", file=sys.stderr)
                    progress.update(1)
                    continue
                yield (src, out), rgb

        try:
            results = colorizer.colorize_many(decoded(), with_gray=args.compare)
            for (src, out), result in results:
                # --compare: the input's luminance as neutral gray, then the colorized photo.
                image = np.concatenate(result[::-1], axis=1) if args.compare else result
                try:
                    _save_image(image, out, args.format)
                    written += 1
                except OSError as err:
                    failures.append((str(src), f"cannot write {out}: {err}"))
                    progress.write(f"failed {src}: cannot write {out}: {err}", file=sys.stderr)
                progress.update(1)
        finally:
            progress.close()
    print(
        f"colorize: {written} written, {skipped} skipped (already exist), {len(failures)} failed",
        file=sys.stderr,
    )
    if not sources and not failures:
        raise ColorjaxError("no input images found; pass image files, folders or globs")
    return 1 if failures else 0
