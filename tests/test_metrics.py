"""Metrics against scikit-image and NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import color as skcolor
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorjax import metrics
from colorjax.errors import InputShapeError

KEYS = {
    "psnr",
    "ssim",
    "colorfulness_pred",
    "colorfulness_true",
    "colorfulness_diff",
    "auc",
    "saturation_ratio",
}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skdata.chelsea()[60:156, 150:278]  # (96, 128, 3) uint8, the cat's face


def _gray_baseline(rgb_u8: np.ndarray) -> np.ndarray:
    """Same L, ab = 0, through scikit-image; uint8."""
    lab = skcolor.rgb2lab(rgb_u8)
    lab[..., 1:] = 0.0
    return np.round(skcolor.lab2rgb(lab) * 255).astype(np.uint8)


def _pairs(photo: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    noisy = np.clip(photo.astype(int) + rng.integers(-30, 31, photo.shape), 0, 255)
    shifted = np.roll(photo, 3, axis=1)
    return [
        (noisy.astype(np.uint8), photo),
        (_gray_baseline(photo), photo),
        (shifted, photo),
        (
            rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
            rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
        ),
        (
            rng.uniform(0, 255, (11, 16, 3)).astype(np.float32),
            rng.uniform(0, 255, (11, 16, 3)).astype(np.float32),
        ),
    ]


def test_psnr_and_ssim_match_skimage(photo):
    psnr, ssim = jax.jit(metrics.psnr), jax.jit(metrics.ssim)
    for pred, true in _pairs(photo):
        ref_psnr = peak_signal_noise_ratio(true, pred, data_range=255)
        ref_ssim = structural_similarity(
            true.astype(np.float64),
            pred.astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=-1,
        )
        assert abs(float(psnr(pred[None], true[None])[0]) - ref_psnr) < 1e-3
        assert abs(float(ssim(pred[None], true[None])[0]) - ref_ssim) < 1e-3


def test_psnr_ssim_batched_and_identical_images(photo):
    pred, true = _pairs(photo)[0]
    batch_p, batch_t = np.stack([pred, true]), np.stack([true, true])
    p = np.asarray(metrics.psnr(batch_p, batch_t))
    s = np.asarray(metrics.ssim(batch_p, batch_t))
    assert p.shape == s.shape == (2,)
    assert np.isfinite(p).all() and p[1] > 100  # identical: finite cap, far above any real pair
    assert abs(s[1] - 1.0) < 1e-6 and s[0] < 1.0


def _colorfulness_reference(rgb: np.ndarray) -> float:
    x = rgb.astype(np.float64)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)


def test_colorfulness(photo):
    rng = np.random.default_rng(1)
    gray = np.repeat(rng.integers(0, 256, (1, 20, 30, 1), dtype=np.uint8), 3, axis=-1)
    assert float(metrics.colorfulness(gray)[0]) == 0.0
    images = np.stack([photo, skdata.astronaut()[:96, :128], _gray_baseline(photo)])
    got = np.asarray(jax.jit(metrics.colorfulness)(images))
    want = np.array([_colorfulness_reference(im) for im in images])
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert got[2] < 0.1 * got[0]  # the gray baseline is nearly colourless


def _auc_reference(pred: np.ndarray, true: np.ndarray, max_threshold: int = 150) -> float:
    err = np.linalg.norm(skcolor.rgb2lab(pred)[..., 1:] - skcolor.rgb2lab(true)[..., 1:], axis=-1)
    thresholds = np.arange(max_threshold + 1)
    return float(np.mean([(err <= t).mean() for t in thresholds]))


def test_auc(photo):
    auc = jax.jit(metrics.ab_error_auc)
    assert float(auc(photo[None], photo[None])[0]) == pytest.approx(1.0, abs=1e-6)
    for pred, true in _pairs(photo)[:4]:
        got = float(auc(pred[None], true[None])[0])
        assert abs(got - _auc_reference(pred, true)) < 1e-3
    baseline = float(auc(_gray_baseline(photo)[None], photo[None])[0])
    assert baseline < 1.0
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (1,) + photo.shape, dtype=np.uint8)
    assert float(auc(noise, photo[None])[0]) < baseline  # random colours are worse than gray
    short = float(metrics.ab_error_auc(noise, photo[None], max_threshold=20)[0])
    assert abs(short - _auc_reference(noise[0], photo, 20)) < 1e-3


def _saturation_reference(pred: np.ndarray, true: np.ndarray) -> float:
    return skcolor.rgb2hsv(pred)[..., 1].mean() / skcolor.rgb2hsv(true)[..., 1].mean()


def test_saturation_ratio(photo):
    ratio = jax.jit(metrics.saturation_ratio)
    assert float(ratio(photo[None], photo[None])[0]) == pytest.approx(1.0, abs=1e-6)
    for pred, true in _pairs(photo)[:4]:
        got = float(ratio(pred[None], true[None])[0])
        assert got == pytest.approx(_saturation_reference(pred, true), rel=1e-4)
    washed = float(ratio(_gray_baseline(photo)[None], photo[None])[0])
    assert washed < 0.2
    gray = np.full((1, 16, 16, 3), 128, np.uint8)
    assert float(ratio(gray, gray)[0]) == 1.0  # gray over gray: no division by zero
    assert np.isfinite(float(ratio(photo[None, :16, :16], gray)[0]))


def test_compute_metrics_baseline_below_perfect_and_jit_equals_eager(photo):
    true = np.stack([photo, photo])
    pred = np.stack([photo, _gray_baseline(photo)])
    eager = metrics.compute_metrics(pred, true)
    jitted = jax.jit(metrics.compute_metrics)(pred, true)
    assert set(eager) == set(jitted) == KEYS
    for key in KEYS:
        assert eager[key].shape == (2,)
        np.testing.assert_allclose(np.asarray(jitted[key]), np.asarray(eager[key]), rtol=1e-5)
    m = {k: np.asarray(v) for k, v in eager.items()}
    assert m["psnr"][1] < m["psnr"][0] and m["ssim"][1] < m["ssim"][0]
    assert m["auc"][1] < m["auc"][0] == pytest.approx(1.0)
    assert m["saturation_ratio"][1] < m["saturation_ratio"][0] == pytest.approx(1.0)
    assert m["colorfulness_diff"][0] == 0.0 and m["colorfulness_diff"][1] < 0.0
    np.testing.assert_allclose(
        m["colorfulness_diff"], m["colorfulness_pred"] - m["colorfulness_true"], atol=1e-5
    )
    float_pred = pred.astype(np.float32)  # uint8 and float [0, 255] inputs agree
    np.testing.assert_allclose(
        np.asarray(metrics.psnr(float_pred, true)), np.asarray(eager["psnr"]), rtol=1e-6
    )


def test_bad_shapes_raise_clear_errors(photo):
    with pytest.raises(InputShapeError, match=r"\(N, H, W, 3\)"):
        metrics.psnr(photo, photo)
    with pytest.raises(InputShapeError, match="same shape"):
        metrics.ssim(photo[None], photo[None, :50])
    with pytest.raises(InputShapeError, match="at least 11x11"):
        metrics.ssim(photo[None, :8, :8], photo[None, :8, :8])
    with pytest.raises(ValueError):
        metrics.colorfulness(photo[None, ..., :2])


# ----------------------------------------------------------------------------- hue agreement


def _hue_reference(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent NumPy/scikit-image hits and totals per 60-degree sector of the truth's hue."""
    from skimage import color as skcolor

    hits, totals = np.zeros(6), np.zeros(6)
    for p, t in zip(pred, true, strict=True):
        lab_p = skcolor.rgb2lab(p / 255.0)
        lab_t = skcolor.rgb2lab(t / 255.0)
        cp = np.hypot(lab_p[..., 1], lab_p[..., 2])
        ct = np.hypot(lab_t[..., 1], lab_t[..., 2])
        hp = np.degrees(np.arctan2(lab_p[..., 2], lab_p[..., 1])) % 360
        ht = np.degrees(np.arctan2(lab_t[..., 2], lab_t[..., 1])) % 360
        d = np.abs(hp - ht)
        d = np.minimum(d, 360 - d)
        counted = ct >= 15
        ok = counted & (cp >= 5) & (d <= 45)
        sector = (ht // 60).astype(int)
        for k in range(6):
            totals[k] += np.sum(counted & (sector == k))
            hits[k] += np.sum(ok & (sector == k))
    return hits, totals


def test_hue_counts_equal_an_independent_numpy_computation():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 256, (3, 24, 20, 3)).astype(np.uint8)
    # A prediction near the truth for some pixels, unrelated for others.
    noise = rng.integers(-40, 41, true.shape)
    pred = np.where(
        rng.random(true.shape[:3] + (1,)) < 0.5, true + noise, rng.integers(0, 256, true.shape)
    )
    pred = np.clip(pred, 0, 255).astype(np.uint8)
    hits, totals = metrics.hue_counts(jnp.asarray(pred), jnp.asarray(true))
    want_hits, want_totals = _hue_reference(pred.astype(float), true.astype(float))
    # Pixels within float rounding of a threshold may fall either way: allow a handful.
    np.testing.assert_allclose(np.asarray(totals).sum(0), want_totals, atol=3)
    np.testing.assert_allclose(np.asarray(hits).sum(0), want_hits, atol=3)
    assert want_totals.min() > 50  # every sector is exercised
    scores = metrics.hue_agreement(hits, totals)
    np.testing.assert_allclose(scores["hue_balanced"], np.mean(want_hits / want_totals), atol=0.01)


def test_a_warm_cast_cannot_fake_balanced_hue_agreement():
    from skimage import color as skcolor

    # Truth: six flat patches, one per hue sector, at chroma 40.
    angles = np.radians(np.arange(6) * 60 + 30)
    lab = np.stack([np.full(6, 60.0), 40 * np.cos(angles), 40 * np.sin(angles)], -1)
    true = np.clip(skcolor.lab2rgb(np.repeat(lab[None, :, None, :], 8, axis=2)) * 255, 0, 255)
    # Prediction: the same L everywhere tinted sepia (a = 8, b = 20).
    sepia = lab.copy()
    sepia[:, 1:] = (8.0, 20.0)
    pred = np.clip(skcolor.lab2rgb(np.repeat(sepia[None, :, None, :], 8, axis=2)) * 255, 0, 255)
    hits, totals = metrics.hue_counts(jnp.asarray(np.round(pred)), jnp.asarray(np.round(true)))
    scores = metrics.hue_agreement(hits, totals)
    assert scores["hue_yellow"] == 1.0 and scores["hue_red"] == 1.0  # sepia is right on these
    assert scores["hue_green"] == scores["hue_cyan"] == scores["hue_blue"] == 0.0
    assert scores["hue_balanced"] == pytest.approx(2 / 6)
    # The truth itself agrees everywhere; a gray prediction nowhere.
    perfect = metrics.hue_agreement(*metrics.hue_counts(jnp.asarray(true), jnp.asarray(true)))
    assert perfect["hue_balanced"] == 1.0
