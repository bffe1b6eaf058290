"""sRGB <-> CIE Lab (D65, 2 degree observer) in jax.numpy, and the L/ab normalisation.

Every model, loss and metric converts colours through this module, so the formulas and
the normalisation constants live in exactly one place. The conversion follows the
same constants and piecewise definitions as ``skimage.color.rgb2lab``/``lab2rgb``
(sRGB companding, the sRGB -> XYZ matrix of IEC 61966-2-1 with D65 white
(0.95047, 1.0, 1.08883), CIE Lab with the 0.008856 / 7.787 linear segment), so results
agree with scikit-image to float32 precision.

The device functions are pure ``jax.numpy``: jittable, differentiable, batched over any leading
dimensions (channels on the last axis) and computed in float32. Piecewise branches use the
"safe where" pattern (feed the unused branch a harmless value) so that gradients are finite
everywhere, including black (0) and the cube-root knee. ``rgb_to_lab_np`` is the host twin
(float64 NumPy, same constants) for work that must not depend on an accelerator's float32
rounding (the bin set) or that runs in a data-loading worker (near-gray checks). Chroma and
the "near-gray" rule are defined here once for the loader, the loss and the evaluation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.errors import InputShapeError

__all__ = [
    "AB_SCALE",
    "GRAY_CHROMA",
    "L_SCALE",
    "chroma",
    "denormalize_ab",
    "denormalize_l",
    "is_near_gray",
    "lab_inputs_to_rgb",
    "lab_to_rgb",
    "max_chroma",
    "normalize_ab",
    "normalize_l",
    "rgb_to_lab",
    "rgb_to_lab_np",
    "rgb_uint8_to_lab_inputs",
]

# Normalisation: L in [0, 100] -> [-1, 1]; ab (roughly [-110, 110] for sRGB) -> ~[-1, 1].
L_SCALE = 50.0
AB_SCALE = 110.0

# sRGB (linear) -> XYZ, D65; the same values scikit-image uses.
_XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=np.float64,
)
# Invert in float64 once, then round to float32, so the inverse is as exact as possible.
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float64)

# Piecewise constants (kept identical to scikit-image so results match bit-for-bit in spirit).
_SRGB_KNEE = 0.04045
_SRGB_LINEAR_KNEE = 0.0031308
_LAB_EPSILON = 0.008856
_LAB_KAPPA = 7.787
_LAB_OFFSET = 16.0 / 116.0
_LAB_INV_KNEE = 0.2068966

# Largest CIE Lab chroma at which an image still counts as gray: JPEG rounding leaves ~1-2
# units on true grayscale photos, and visible tints start near 10.
GRAY_CHROMA = 5.0

# Inputs to lab_to_rgb are clamped to this magnitude so cubes stay finite in float32.
_LAB_CLAMP = 1.0e4


def _check_channels(x: jnp.ndarray, channels: int, name: str) -> None:
    """Raise InputShapeError unless the last axis of ``x`` has ``channels`` entries."""
    if x.ndim < 1 or x.shape[-1] != channels:
        raise InputShapeError(
            f"{name} must have {channels} channels on the last axis, shape (..., {channels}); "
            f"got shape {tuple(x.shape)}. Put the colour channels last."
        )


def _apply_matrix(m: np.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """Return ``v @ m.T`` over the last axis, exactly in float32.

    Written as explicit multiply-adds rather than a matmul: a (..., 3) x (3, 3) product is
    tiny, and element-wise arithmetic is never demoted to bf16/TF32 by accelerator default
    matmul precision (which would cost ~1e-2 Lab units).
    """
    m32 = m.astype(np.float32)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    rows = [m32[i, 0] * x + m32[i, 1] * y + m32[i, 2] * z for i in range(3)]
    return jnp.stack(rows, axis=-1)


def _srgb_to_linear(c: jnp.ndarray) -> jnp.ndarray:
    """Undo sRGB companding."""
    high = c > _SRGB_KNEE
    # Safe where: the power branch only ever sees values where it is well defined.
    c_high = jnp.where(high, c, 1.0)
    return jnp.where(high, ((c_high + 0.055) / 1.055) ** 2.4, c / 12.92)


def _srgb_u8_linear_table() -> np.ndarray:
    """sRGB -> linear for the 256 uint8 codes, computed in float64, stored as float32."""
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c > _SRGB_KNEE, ((c + 0.055) / 1.055) ** 2.4, c / 12.92).astype(np.float32)


# uint8 input has only 256 codes: a table lookup replaces a float power per channel (the
# costliest op of the on-device Lab conversion on CPU) and is at least as exact.
_SRGB_U8_TO_LINEAR = _srgb_u8_linear_table()


def _linear_to_srgb(c: jnp.ndarray) -> jnp.ndarray:
    """Apply sRGB companding."""
    high = c > _SRGB_LINEAR_KNEE
    # Safe where: c ** (1/2.4) has an infinite slope at 0 and is NaN below it.
    c_high = jnp.where(high, c, 1.0)
    return jnp.where(high, 1.055 * c_high ** (1.0 / 2.4) - 0.055, c * 12.92)


def _cbrt_cpu(t: jnp.ndarray) -> jnp.ndarray:
    """Cube root of t > 0 as exp(log(t) / 3): ~13x faster than XLA:CPU's cbrt, error < 1e-7."""
    return jnp.exp(jnp.log(t) * (1.0 / 3.0))


def _lab_f(t: jnp.ndarray) -> jnp.ndarray:
    """CIE Lab forward non-linearity (cube root with a linear toe)."""
    high = t > _LAB_EPSILON
    # Safe where: cbrt has an infinite slope at 0, which would poison gradients at black
    # (and keeps log's argument positive in the CPU form).
    t_high = jnp.where(high, t, 1.0)
    # XLA:CPU's cbrt was ~2.5 % of a 128 px GAN train step; GPU/TPU keep the native op.
    root = jax.lax.platform_dependent(t_high, cpu=_cbrt_cpu, default=jnp.cbrt)
    return jnp.where(high, root, _LAB_KAPPA * t + _LAB_OFFSET)


def _lab_f_inv(f: jnp.ndarray) -> jnp.ndarray:
    """Inverse of :func:`_lab_f`."""
    return jnp.where(f > _LAB_INV_KNEE, f * f * f, (f - _LAB_OFFSET) / _LAB_KAPPA)


def rgb_to_lab_np(rgb: np.ndarray) -> np.ndarray:
    """Host twin of :func:`rgb_to_lab`: sRGB floats in [0, 1] (..., 3) to Lab, float64 NumPy."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise InputShapeError(
            f"rgb must have 3 channels on the last axis, shape (..., 3); got shape {rgb.shape}."
        )
    linear = np.where(rgb > _SRGB_KNEE, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    t = linear @ _XYZ_FROM_RGB.T / _WHITE_D65
    f = np.where(t > _LAB_EPSILON, np.cbrt(t), _LAB_KAPPA * t + _LAB_OFFSET)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def chroma(ab: jnp.ndarray | np.ndarray) -> jnp.ndarray | np.ndarray:
    """CIE chroma sqrt(a^2 + b^2) of ab in CIE units (..., 2); NumPy in, NumPy out."""
    # Operators and array methods only, so host NumPy stays NumPy (no device round trip).
    return (ab[..., 0] * ab[..., 0] + ab[..., 1] * ab[..., 1]) ** 0.5


def max_chroma(ab: jnp.ndarray | np.ndarray) -> jnp.ndarray | np.ndarray:
    """Largest chroma of each image: ab (..., H, W, 2) in CIE units -> (...)."""
    return chroma(ab).max(axis=(-2, -1))


def is_near_gray(
    ab: jnp.ndarray | np.ndarray, threshold: float = GRAY_CHROMA
) -> jnp.ndarray | np.ndarray:
    """True for images (..., H, W, 2) whose largest chroma is at most ``threshold``.

    The one rule for "this photo carries no colour": the loader drops such photos, the
    classification loss gives them zero weight, and the evaluation leaves them out.
    """
    return gray_by_max_chroma(max_chroma(ab), threshold)


def gray_by_max_chroma(
    max_c: jnp.ndarray | np.ndarray | float, threshold: float = GRAY_CHROMA
) -> jnp.ndarray | np.ndarray | bool:
    """``is_near_gray`` for an already computed largest chroma (the host caches it per photo)."""
    return max_c <= threshold


def rgb_to_lab(rgb: jnp.ndarray) -> jnp.ndarray:
    """Convert sRGB floats in [0, 1] (..., 3) to CIE Lab (..., 3): L in [0, 100], ab CIE units."""
    rgb = jnp.asarray(rgb, dtype=jnp.float32)
    _check_channels(rgb, 3, "rgb")
    return _linear_rgb_to_lab(_srgb_to_linear(rgb))


def _linear_rgb_to_lab(linear: jnp.ndarray) -> jnp.ndarray:
    """Linear sRGB (..., 3) to CIE Lab (..., 3)."""
    xyz = _apply_matrix(_XYZ_FROM_RGB, linear)
    f = _lab_f(xyz / _WHITE_D65.astype(np.float32))
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return jnp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def _lab_to_linear_rgb(lab: jnp.ndarray) -> jnp.ndarray:
    """CIE Lab (..., 3) to linear-light RGB, not clipped (out of gamut: outside [0, 1])."""
    # Clamp absurd inputs (e.g. +-inf from a diverged model) so the cube below stays finite.
    lab = jnp.clip(lab, -_LAB_CLAMP, _LAB_CLAMP)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = lab[..., 1] / 500.0 + fy
    # Negative Z is physically impossible; scikit-image clips it to 0 the same way.
    fz = jnp.maximum(fy - lab[..., 2] / 200.0, 0.0)
    xyz = _lab_f_inv(jnp.stack([fx, fy, fz], axis=-1)) * _WHITE_D65.astype(np.float32)
    return _apply_matrix(_RGB_FROM_XYZ, xyz)


def lab_to_rgb(lab: jnp.ndarray) -> jnp.ndarray:
    """Convert CIE Lab (..., 3) to sRGB floats in [0, 1]; out-of-gamut colours are clipped."""
    lab = jnp.asarray(lab, dtype=jnp.float32)
    _check_channels(lab, 3, "lab")
    return jnp.clip(_linear_to_srgb(_lab_to_linear_rgb(lab)), 0.0, 1.0)


def fit_ab_to_gamut(l_norm: jnp.ndarray, ab_norm: jnp.ndarray, iters: int = 12) -> jnp.ndarray:
    """Shrink each pixel's chroma (same hue) just enough that (L, ab) is an sRGB colour.

    Clipping an out-of-gamut Lab colour per RGB channel changes its lightness and flattens
    texture in the clipped channel (a saturated prediction in a highlight or shadow); scaling
    ab towards gray keeps L exact. Gray (ab = 0) is in gamut for every L in [0, 100], so a
    bisection on the scale in [0, 1] converges (to 2**-iters) to the largest in-gamut one.
    Normalised L (..., 1) and ab (..., 2) in, normalised ab out.
    """
    l_norm = jnp.asarray(l_norm, dtype=jnp.float32)
    ab_norm = jnp.asarray(ab_norm, dtype=jnp.float32)
    lightness = denormalize_l(l_norm)
    ab = denormalize_ab(ab_norm)

    def inside(scale: jnp.ndarray) -> jnp.ndarray:
        rgb = _lab_to_linear_rgb(jnp.concatenate([lightness, ab * scale], axis=-1))
        return jnp.all((rgb >= -1e-5) & (rgb <= 1.0 + 1e-5), axis=-1, keepdims=True)

    ones = jnp.ones_like(lightness)

    def bisect(_: int, bounds: tuple[jnp.ndarray, jnp.ndarray]) -> tuple:
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = inside(mid)
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iters, bisect, (jnp.zeros_like(ones), ones))
    scale = jnp.where(inside(ones), ones, lo)
    return ab_norm * scale


def normalize_l(L: jnp.ndarray) -> jnp.ndarray:
    """Map L in [0, 100] to [-1, 1]."""
    return L / L_SCALE - 1.0


def denormalize_l(l_norm: jnp.ndarray) -> jnp.ndarray:
    """Map normalised L in [-1, 1] back to [0, 100]."""
    return (l_norm + 1.0) * L_SCALE


def normalize_ab(ab: jnp.ndarray) -> jnp.ndarray:
    """Map ab in CIE units to roughly [-1, 1] (divide by AB_SCALE)."""
    return ab / AB_SCALE


def denormalize_ab(ab_norm: jnp.ndarray) -> jnp.ndarray:
    """Map normalised ab back to CIE units (multiply by AB_SCALE)."""
    return ab_norm * AB_SCALE


def rgb_uint8_to_lab_inputs(rgb_u8: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Convert uint8 RGB (..., H, W, 3) to model inputs (l_norm (..., 1), ab_norm (..., 2)), f32."""
    rgb_u8 = jnp.asarray(rgb_u8)
    _check_channels(rgb_u8, 3, "rgb_u8")
    if rgb_u8.dtype == jnp.uint8:
        lab = _linear_rgb_to_lab(jnp.asarray(_SRGB_U8_TO_LINEAR)[rgb_u8.astype(jnp.int32)])
    else:
        lab = rgb_to_lab(rgb_u8.astype(jnp.float32) / 255.0)
    return normalize_l(lab[..., :1]), normalize_ab(lab[..., 1:])


def lab_inputs_to_rgb(l_norm: jnp.ndarray, ab_norm: jnp.ndarray) -> jnp.ndarray:
    """Join normalised L (..., 1) and ab (..., 2) into sRGB floats in [0, 1] (..., 3)."""
    l_norm = jnp.asarray(l_norm, dtype=jnp.float32)
    ab_norm = jnp.asarray(ab_norm, dtype=jnp.float32)
    _check_channels(l_norm, 1, "l_norm")
    _check_channels(ab_norm, 2, "ab_norm")
    if l_norm.shape[:-1] != ab_norm.shape[:-1]:
        raise InputShapeError(
            f"l_norm {tuple(l_norm.shape)} and ab_norm {tuple(ab_norm.shape)} must share every "
            "axis but the last; resize ab to the size of L before joining them."
        )
    lab = jnp.concatenate([denormalize_l(l_norm), denormalize_ab(ab_norm)], axis=-1)
    return lab_to_rgb(lab)
