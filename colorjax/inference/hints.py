"""User colour hints for models that take them (zhang-siggraph17): parse, place, colorize.

A hint is ``(x, y, (r, g, b))``: pixel column x and row y of the *original* image and an sRGB
colour (0-255). Hints are placed the way the reference interactive tool does
(junyanz/interactive-deep-colorization, ``ui/ui_control.py`` and ``data/colorize_image.py``):
the point is scaled to the working size with ``int(x / W * w)``, a filled square of half-width
``radius`` working pixels around it gets the colour's ab (its Lab conversion, L dropped) and a
mask of 1; later hints overwrite earlier ones where squares overlap. The model then sees
``(L, ab / 110, mask)`` exactly as ``SIGGRAPHGenerator.forward(input_A, input_B, mask_B)``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import color, data
from colorjax.errors import ConfigError
from colorjax.inference.predict import _finish_chunk, _run_chunked, predict_ab

if TYPE_CHECKING:  # annotations only: the colorizer calls into this module
    from colorjax.inference.colorizer import Colorizer, ImageLike

__all__ = [
    "DEFAULT_HINT_RADIUS",
    "colorize_with_hints",
    "hint_arrays",
    "gray_inputs",
    "parse_hint",
]

# Half-width in working-size pixels: the reference tool's default brush (2 px at load size).
DEFAULT_HINT_RADIUS = 2
_HINT_RE = re.compile(r"^\s*(-?[0-9.]+)\s*,\s*(-?[0-9.]+)\s*,\s*#?([0-9a-fA-F]{6})\s*$")

Hint = tuple[float, float, tuple[int, int, int]]


def parse_hint(text: str) -> Hint:
    """Parse 'X,Y,#RRGGBB' (original-image pixels, hex sRGB) into (x, y, (r, g, b))."""
    match = _HINT_RE.match(text)
    if not match:
        raise ConfigError(
            f"cannot parse hint {text!r}; write X,Y,#RRGGBB with X, Y the pixel column and row "
            "in the input image, e.g. --hint 120,40,#3a7bd5"
        )
    x, y, hexcode = match.groups()
    rgb = tuple(int(hexcode[i : i + 2], 16) for i in (0, 2, 4))
    return float(x), float(y), rgb  # type: ignore[return-value]


def _check_hint(hint: Any, height: int, width: int) -> Hint:
    """Validate one (x, y, (r, g, b)) against the image size; ConfigError naming the fix."""
    try:
        x, y, rgb = hint
        x, y = float(x), float(y)
        rgb = tuple(int(c) for c in rgb)
    except (TypeError, ValueError):
        raise ConfigError(
            f"hint {hint!r} is not (x, y, (r, g, b)); give pixel coordinates and an sRGB colour "
            "with channels 0-255, e.g. (120, 40, (58, 123, 213))"
        ) from None
    if len(rgb) != 3 or any(not 0 <= c <= 255 for c in rgb):
        raise ConfigError(f"hint colour {rgb} must be three integers in 0-255")
    if not (0 <= x < width and 0 <= y < height):
        raise ConfigError(
            f"hint at ({x:g}, {y:g}) lies outside the {width}x{height} image; give the column x "
            f"in [0, {width}) and the row y in [0, {height}) of the original image"
        )
    return x, y, rgb  # type: ignore[return-value]


def hint_arrays(
    hints: Sequence[Any],
    image_hw: tuple[int, int],
    working_hw: tuple[int, int],
    padded_hw: tuple[int, int] | None = None,
    radius: int = DEFAULT_HINT_RADIUS,
) -> tuple[np.ndarray, np.ndarray]:
    """Build (ab / 110 (h, w, 2), mask (h, w, 1)) float32 at the (padded) working size."""
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ConfigError(f"hint_radius must be an integer >= 0 (working pixels), got {radius!r}")
    height, width = image_hw
    h, w = working_hw
    hp, wp = padded_hw or working_hw
    checked = [_check_hint(hint, height, width) for hint in hints]
    ab = np.zeros((hp, wp, 2), np.float32)
    mask = np.zeros((hp, wp, 1), np.float32)
    if not checked:
        return ab, mask
    rgb = np.asarray([c for _, _, c in checked], np.float32) / 255.0
    hint_ab = np.asarray(color.normalize_ab(color.rgb_to_lab(rgb)[:, 1:]), np.float32)
    for (x, y, _), value in zip(checked, hint_ab, strict=True):
        # The reference tool's point scaling; the square stays inside the photo, not the padding.
        cx, cy = min(int(x / width * w), w - 1), min(int(y / height * h), h - 1)
        y0, y1 = max(cy - radius, 0), min(cy + radius, h - 1) + 1
        x0, x1 = max(cx - radius, 0), min(cx + radius, w - 1) + 1
        ab[y0:y1, x0:x1] = value
        mask[y0:y1, x0:x1] = 1.0
    return ab, mask


@functools.partial(jax.jit, static_argnames=("model", "pad_to"))
def _predict_hinted(
    model: Any, variables: Any, l_pad: jax.Array, hint_ab: jax.Array, mask: jax.Array, pad_to: int
) -> jax.Array:
    """Predict ab_norm with hints and zero-pad it to (N, pad_to, pad_to, 2)."""
    ab = predict_ab(model, variables, l_pad, hints=(hint_ab, mask)).astype(jnp.float32)
    _, hb, wb, _ = ab.shape
    return jnp.pad(ab, ((0, 0), (0, pad_to - hb), (0, pad_to - wb), (0, 0)))


def colorize_with_hints(
    colorizer: Colorizer,
    image: ImageLike,
    hints: Sequence[Any],
    radius: int = DEFAULT_HINT_RADIUS,
) -> np.ndarray:
    """Colorize one image with colour hints; same size and full-resolution L as colorize()."""
    from colorjax.models import model_contract

    model = colorizer.model
    if not model_contract(model).takes_hints:
        raise ConfigError(
            f"the model {type(model).__name__} takes no colour hints; drop the hints or use "
            "weights made for a model that takes them (weights='zhang-siggraph17')"
        )
    rgb = data.decode_image(image)
    height, width = rgb.shape[:2]
    bucket = colorizer.bucket_for(height, width)
    l_pad, small_hw = colorizer._prepare(rgb, bucket)
    hint_ab, mask = hint_arrays(hints, (height, width), small_hw, bucket, radius)
    ab = _predict_hinted(
        model, colorizer.variables, l_pad[None], hint_ab[None], mask[None], colorizer._pad_to
    )
    out = _run_chunked(
        _finish_chunk,
        rgb,
        ab[0],
        full_hw=np.asarray((height, width), np.int32),
        small_hw=np.asarray(small_hw, np.int32),
        with_gray=False,
    )
    return out.reshape(rgb.shape)


def gray_inputs(rgb: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """(l_norm, zero ab) of a photo: its luminance as neutral gray."""
    l_norm, ab = color.rgb_uint8_to_lab_inputs(rgb)
    return l_norm, jnp.zeros_like(ab)
