"""Prediction kernels: predict_ab for any model, shape buckets, jitted full-resolution colour.

Pipeline for one photo of size H x W (the last step of the data flow, README "Architecture"):

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

import collections
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import color
from colorjax.errors import ConfigError, InputShapeError, PredictionError
from colorjax.models.predict import DEFAULT_TEMPERATURE, predict_ab

__all__ = ["DEFAULT_TEMPERATURE", "predict_ab"]  # re-exported: they live with the models

DEFAULT_BUCKET_FRACTIONS: tuple[float, ...] = (0.5, 1.0)
# The network's input is at most this many pixels on its longer side. The output keeps the
# photo's size whatever the working size, and memory grows with its square (an unbounded
# --working-size 100000 asked for 17 GB and was killed by the kernel).
MAX_WORKING_SIZE = 4096
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


# How a photo reaches the working size: 'fit' keeps its aspect (longer side = working size,
# edge-padded into a bucket); 'stretch' resizes it to working_size x working_size, as the
# official DDColor inference does (its global attention never sees padding; one shape).
RESIZE_MODES = ("fit", "stretch")


def check_resize(resize: str) -> str:
    """Return a valid resize mode, or ConfigError naming both."""
    if resize not in RESIZE_MODES:
        raise ConfigError(
            f"resize must be one of {RESIZE_MODES}, got {resize!r}: 'fit' keeps the photo's "
            "aspect ratio, 'stretch' makes it working_size x working_size"
        )
    return resize


def resized_shapes(
    height: int,
    width: int,
    working_size: int,
    stride: int,
    fractions: Sequence[float],
    resize: str = "fit",
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((h, w) the photo is resized to, (H, W) of the padded bucket it is predicted in)."""
    if resize == "stretch":
        side = _round_up(working_size, stride)
        return (working_size, working_size), (side, side)
    return (
        working_shape(height, width, working_size),
        bucket_shape(height, width, working_size, stride, fractions),
    )


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
    """Return the spatial divisor the model's contract declares."""
    from colorjax.models import model_contract

    return model_contract(model).stride


def _check_working_size(working_size: Any) -> int:
    """Validate the working size and return it as an int."""
    if isinstance(working_size, bool) or not isinstance(working_size, (int, np.integer)):
        raise ConfigError(f"working_size must be a positive int, got {working_size!r}")
    if not 1 <= working_size <= MAX_WORKING_SIZE:
        raise ConfigError(
            f"working_size must be between 1 and {MAX_WORKING_SIZE} pixels, got {working_size}; "
            "the network sees the photo at this size (the output keeps the photo's own size), "
            "so 256-1024 covers every use"
        )
    return int(working_size)


def check_temperature(temperature: Any) -> float:
    """Validate an annealed-mean temperature: a finite number > 0 (inf gives one flat tint)."""
    value = float(temperature)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"temperature must be a finite number > 0, got {temperature!r}; lower is more "
            f"saturated, {DEFAULT_TEMPERATURE} is Zhang et al.'s"
        )
    return value


# --------------------------------------------------------------------------- device kernels


@functools.partial(jax.jit, static_argnames=("model", "pad_to", "temperature"))
def _predict_bucket(
    model: Any, variables: Any, l_pad: jax.Array, pad_to: int, temperature: float
) -> jax.Array:
    """Predict ab_norm for a bucket batch, zero-padded to (N, pad_to, pad_to, 2), and finiteness.

    The second output is one bool per photo: whether every predicted ab value is finite.
    """
    _TRACES["model"] += 1
    ab = predict_ab(model, variables, l_pad, temperature=temperature).astype(jnp.float32)
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
    jax.jit,
    static_argnames=("model", "working_size", "stride", "fractions", "temperature", "stretch"),
)
def _predict_rgb_jit(
    model: Any,
    variables: Any,
    rgb_u8: jax.Array,
    working_size: int,
    stride: int,
    fractions: tuple[float, ...],
    temperature: float,
    stretch: bool = False,
) -> jax.Array:
    """All-on-device colorization of a batch of same-size photos (see predict_rgb)."""
    _TRACES["predict_rgb"] += 1
    n, height, width, _ = rgb_u8.shape
    l_norm, _ = color.rgb_uint8_to_lab_inputs(rgb_u8)
    resize = "stretch" if stretch else "fit"
    (h, w), (hb, wb) = resized_shapes(height, width, working_size, stride, fractions, resize)
    l_small = l_norm
    if (h, w) != (height, width):
        l_small = jax.image.resize(l_norm, (n, h, w, 1), "linear", antialias=True)
    l_pad = jnp.pad(l_small, ((0, 0), (0, hb - h), (0, wb - w), (0, 0)), mode="edge")
    ab = predict_ab(model, variables, l_pad, temperature=temperature)
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
    resize: str = "fit",
) -> jax.Array:
    """Colorize a batch of same-size uint8 RGB photos (N, H, W, 3) on device; uint8 jax.Array.

    `resize`: 'fit' (aspect kept, padded into a bucket) or 'stretch' (a working_size square),
    as `Colorizer`'s.
    """
    check_resize(resize)
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
        resize == "stretch",
    )
    # NaN ab would clip to black pixels that look like a (bad) result: refuse them instead.
    _check_finite_prediction(finite, [f"batch item {i}" for i in range(shape[0])])
    return rgb
