"""Colorization metrics in jax.numpy: PSNR, SSIM, colourfulness, ab-error AuC, saturation ratio.

Every metric takes a batch of RGB images (N, H, W, 3), uint8 or float in [0, 255], and
returns one value per image, shape (N,). All functions are pure ``jax.numpy`` and jittable
(shapes are static; only the arrays are traced), so evaluation and the training loop's
periodic validation share the same code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import color
from colorjax.errors import ConfigError, InputShapeError

__all__ = [
    "HUE_SECTORS",
    "ab_error_auc",
    "colorfulness",
    "compute_metrics",
    "hue_agreement",
    "hue_counts",
    "psnr",
    "saturation_ratio",
    "ssim",
]

DATA_RANGE = 255.0
# Floor on the MSE so identical images give a finite PSNR (~148 dB) that JSON can store;
# any two different uint8 images of up to 2^30 pixels have a larger MSE than this.
_MSE_FLOOR = 1e-10
# Mean HSV saturation below which an image counts as gray in saturation_ratio.
_GRAY_SATURATION = 1e-3

# SSIM constants of Wang et al. 2004 (as in skimage with gaussian_weights=True).
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5


def _as_rgb255(x: jnp.ndarray, name: str) -> jnp.ndarray:
    """Return x as float32 (N, H, W, 3) in [0, 255], or raise InputShapeError."""
    x = jnp.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputShapeError(
            f"{name} must be a batch of RGB images (N, H, W, 3), got shape {tuple(x.shape)}; "
            "add a batch axis with x[None] for a single image."
        )
    return x.astype(jnp.float32)


def _pair(pred: jnp.ndarray, true: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Validate and convert a (prediction, truth) pair of equal shape."""
    p, t = _as_rgb255(pred, "pred"), _as_rgb255(true, "true")
    if p.shape != t.shape:
        raise InputShapeError(
            f"pred {tuple(p.shape)} and true {tuple(t.shape)} must have the same shape; "
            "resize the prediction to the ground truth's size."
        )
    return p, t


def psnr(pred: jnp.ndarray, true: jnp.ndarray) -> jnp.ndarray:
    """Peak signal-to-noise ratio in dB over all RGB channels, 8-bit range, per image (N,)."""
    p, t = _pair(pred, true)
    mse = jnp.mean((p - t) ** 2, axis=(1, 2, 3))
    return 10.0 * jnp.log10(DATA_RANGE**2 / jnp.maximum(mse, _MSE_FLOOR))


def _gaussian_taps(sigma: float, truncate: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps with scipy.ndimage's radius rule (11 taps for sigma 1.5)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _filter_valid(x: jnp.ndarray, taps: np.ndarray) -> jnp.ndarray:
    """Separable Gaussian filter over H and W of (N, H, W, C), 'valid' region only.

    skimage filters with reflected borders and then crops the filter radius off every side,
    so only fully-supported outputs survive; the 'valid' convolution computes exactly those.
    Two depthwise 1-D convolutions at HIGHEST precision (accelerators would otherwise
    round the operands to bf16/TF32 and lose ~1e-3 of SSIM).
    """
    c = x.shape[-1]
    k = len(taps)
    taps32 = taps.astype(np.float32)
    along_w = jnp.asarray(np.tile(taps32.reshape(1, k, 1, 1), (1, 1, 1, c)))
    along_h = jnp.asarray(np.tile(taps32.reshape(k, 1, 1, 1), (1, 1, 1, c)))

    def conv(v: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
        return jax.lax.conv_general_dilated(
            v,
            kernel,
            window_strides=(1, 1),
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=c,
            precision=jax.lax.Precision.HIGHEST,
        )

    return conv(conv(x, along_w), along_h)


def ssim(pred: jnp.ndarray, true: jnp.ndarray) -> jnp.ndarray:
    """Mean SSIM per image (N,), as skimage's structural_similarity (Wang et al. protocol).

    Matches ``structural_similarity(true, pred, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=-1)``: 11-tap Gaussian
    window, population covariances, the 5-pixel border excluded, averaged over channels.
    """
    p, t = _pair(pred, true)
    taps = _gaussian_taps(_SSIM_SIGMA, _SSIM_TRUNCATE)
    if min(p.shape[1], p.shape[2]) < len(taps):
        raise InputShapeError(
            f"ssim needs images of at least {len(taps)}x{len(taps)} pixels, got "
            f"{p.shape[1]}x{p.shape[2]}; evaluate at a larger resolution."
        )
    # Centre both images on their joint per-channel mean: variances are shift-invariant and
    # E[x^2] - E[x]^2 in float32 loses ~1e-3 to cancellation at 8-bit magnitudes otherwise.
    shift = 0.5 * jnp.mean(p + t, axis=(1, 2), keepdims=True)
    x, y = p - shift, t - shift
    # One filter pass over all five moment maps.
    moments = _filter_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1), taps)
    ux, uy, uxx, uyy, uxy = jnp.split(moments, 5, axis=-1)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    ux, uy = ux + shift, uy + shift
    c1 = (_SSIM_K1 * DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return jnp.mean(s, axis=(1, 2, 3))


def colorfulness(rgb: jnp.ndarray) -> jnp.ndarray:
    """Hasler & Suesstrunk (2003) colourfulness per image (N,), on the 0..255 scale.

    rg = R - G, yb = (R + G) / 2 - B; M = sqrt(std_rg^2 + std_yb^2)
    + 0.3 sqrt(mean_rg^2 + mean_yb^2), population standard deviations over all pixels.
    """
    x = _as_rgb255(rgb, "rgb")
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    std = jnp.sqrt(jnp.var(rg, axis=(1, 2)) + jnp.var(yb, axis=(1, 2)))
    mean = jnp.sqrt(jnp.mean(rg, axis=(1, 2)) ** 2 + jnp.mean(yb, axis=(1, 2)) ** 2)
    return std + 0.3 * mean


def ab_error_auc(pred: jnp.ndarray, true: jnp.ndarray, max_threshold: int = 150) -> jnp.ndarray:
    """Area under the cumulative curve of per-pixel ab error (Zhang et al. 2016), per image (N,).

    For every integer threshold t = 0, 1, ..., max_threshold the accuracy is the fraction of
    pixels whose Euclidean ab error (CIE units) is <= t; the AuC is the mean of those
    accuracies, so a perfect prediction scores 1. Computed in closed form without the
    (pixels, thresholds) table: a pixel with error e is counted by max_threshold + 1 -
    ceil(e) thresholds (none when e > max_threshold).
    """
    p, t = _pair(pred, true)
    if int(max_threshold) != max_threshold or max_threshold < 1:
        raise ConfigError(f"max_threshold must be a positive integer, got {max_threshold}.")
    n_thresholds = int(max_threshold) + 1
    ab_p = color.rgb_to_lab(p / DATA_RANGE)[..., 1:]
    ab_t = color.rgb_to_lab(t / DATA_RANGE)[..., 1:]
    err = jnp.sqrt(jnp.sum((ab_p - ab_t) ** 2, axis=-1))
    hits = jnp.clip(n_thresholds - jnp.ceil(err), 0.0, float(n_thresholds))
    return jnp.mean(hits, axis=(1, 2)) / n_thresholds


def _hsv_saturation(x: jnp.ndarray) -> jnp.ndarray:
    """HSV saturation (max - min) / max per pixel, 0 for black."""
    hi = jnp.max(x, axis=-1)
    lo = jnp.min(x, axis=-1)
    return jnp.where(hi > 0, (hi - lo) / jnp.where(hi > 0, hi, 1.0), 0.0)


def saturation_ratio(pred: jnp.ndarray, true: jnp.ndarray) -> jnp.ndarray:
    """Mean HSV saturation of the prediction over that of the truth, per image (N,).

    1 means as saturated as the truth, < 1 washed out. A truth whose mean saturation is
    below 1e-3 (gray) is divided by 1e-3 instead of ~0, and gray over gray gives 1.
    """
    p, t = _pair(pred, true)
    sp = jnp.mean(_hsv_saturation(p), axis=(1, 2))
    st = jnp.mean(_hsv_saturation(t), axis=(1, 2))
    both_gray = (sp < _GRAY_SATURATION) & (st < _GRAY_SATURATION)
    return jnp.where(both_gray, 1.0, sp / jnp.maximum(st, _GRAY_SATURATION))


# Hue agreement (issue 23): truth pixels with chroma >= 15 are split by the truth's ab angle
# into six 60-degree sectors; a pixel agrees when the prediction has chroma >= 5 and a hue
# within 45 degrees. A warm cast scores on the red and yellow sectors only, never on all six.
HUE_SECTORS = ("red", "yellow", "green", "cyan", "blue", "magenta")  # 0-60, 60-120, ... degrees
HUE_TRUE_CHROMA = 15.0
HUE_PRED_CHROMA = 5.0
HUE_TOLERANCE_DEG = 45.0


def hue_counts(pred: jnp.ndarray, true: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per image and hue sector: (pixels whose hue the prediction gets right, pixels), (N, 6).

    Counts, not shares, so a data set's score pools its pixels (`hue_agreement`).
    """
    p, t = _pair(pred, true)
    ab_p = color.rgb_to_lab(p / DATA_RANGE)[..., 1:]
    ab_t = color.rgb_to_lab(t / DATA_RANGE)[..., 1:]
    chroma_p = jnp.hypot(ab_p[..., 0], ab_p[..., 1])
    chroma_t = jnp.hypot(ab_t[..., 0], ab_t[..., 1])
    hue_p = jnp.arctan2(ab_p[..., 1], ab_p[..., 0])
    hue_t = jnp.arctan2(ab_t[..., 1], ab_t[..., 0])
    # Angle between the two hues, in [0, 180] degrees.
    diff = jnp.degrees(jnp.abs(jnp.mod(hue_p - hue_t + jnp.pi, 2 * jnp.pi) - jnp.pi))
    counted = chroma_t >= HUE_TRUE_CHROMA
    agree = counted & (chroma_p >= HUE_PRED_CHROMA) & (diff <= HUE_TOLERANCE_DEG)
    sector = jnp.floor(jnp.mod(jnp.degrees(hue_t), 360.0) / 60.0).astype(jnp.int32)
    onehot = jax.nn.one_hot(jnp.clip(sector, 0, 5), 6, dtype=jnp.float32)
    hits = jnp.sum(onehot * agree[..., None], axis=(1, 2))
    totals = jnp.sum(onehot * counted[..., None], axis=(1, 2))
    return hits, totals


def hue_agreement(hits: np.ndarray, totals: np.ndarray) -> dict[str, float]:
    """Pooled hue agreement per sector and 'balanced' (their mean) from summed `hue_counts`.

    Sectors no truth pixel falls in are NaN and left out of the balanced mean.
    """
    hits = np.asarray(hits, np.float64).reshape(-1, 6).sum(axis=0)
    totals = np.asarray(totals, np.float64).reshape(-1, 6).sum(axis=0)
    shares = np.where(totals > 0, hits / np.maximum(totals, 1.0), np.nan)
    out = {f"hue_{name}": float(v) for name, v in zip(HUE_SECTORS, shares, strict=True)}
    out["hue_balanced"] = float(np.nanmean(shares)) if np.any(totals > 0) else float("nan")
    return out


def compute_metrics(pred: jnp.ndarray, true: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """All metrics for a batch, each (N,): psnr, ssim, colorfulness_*, auc, saturation_ratio.

    colorfulness_diff is colorfulness_pred - colorfulness_true (negative: duller than truth).
    """
    p, t = _pair(pred, true)
    cf_pred, cf_true = colorfulness(p), colorfulness(t)
    return {
        "psnr": psnr(p, t),
        "ssim": ssim(p, t),
        "colorfulness_pred": cf_pred,
        "colorfulness_true": cf_true,
        "colorfulness_diff": cf_pred - cf_true,
        "auc": ab_error_auc(p, t),
        "saturation_ratio": saturation_ratio(p, t),
    }
