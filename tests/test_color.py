"""sRGB <-> Lab conversion against scikit-image, round trips, clipping and gradients."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import color as skcolor
from skimage import data as skdata

from colorjax import color
from colorjax.errors import InputShapeError

PHOTOS = {"astronaut": skdata.astronaut, "chelsea": skdata.chelsea, "coffee": skdata.coffee}


@pytest.fixture(scope="module")
def cube() -> np.ndarray:
    """Every 4th 8-bit level (plus 255) on each axis: 65^3 = 274,625 colours, float64."""
    levels = np.append(np.arange(0, 256, 4), 255) / 255.0
    return np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)


@pytest.fixture(scope="module")
def to_lab():
    return jax.jit(color.rgb_to_lab)


@pytest.fixture(scope="module")
def to_rgb():
    return jax.jit(color.lab_to_rgb)


def test_rgb_to_lab_matches_skimage_on_dense_cube(cube, to_lab):
    got = np.asarray(to_lab(cube.astype(np.float32)))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, skcolor.rgb2lab(cube), rtol=0, atol=1e-3)


def test_lab_to_rgb_matches_skimage_on_dense_cube(cube, to_rgb):
    lab = skcolor.rgb2lab(cube)
    got = np.asarray(to_rgb(lab.astype(np.float32)))
    np.testing.assert_allclose(got, skcolor.lab2rgb(lab), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_photos_match_skimage_and_round_trip(name, to_lab, to_rgb):
    rgb = PHOTOS[name]() / 255.0
    lab = np.asarray(to_lab(rgb.astype(np.float32)))
    np.testing.assert_allclose(lab, skcolor.rgb2lab(rgb), rtol=0, atol=1e-3)
    back = np.asarray(to_rgb(lab))
    np.testing.assert_allclose(back, rgb, rtol=0, atol=1e-4)


def test_round_trip_dense_cube(cube, to_lab, to_rgb):
    back = np.asarray(to_rgb(to_lab(cube.astype(np.float32))))
    np.testing.assert_allclose(back, cube, rtol=0, atol=1e-4)


def test_out_of_gamut_lab_is_clipped_like_skimage(to_rgb):
    rng = np.random.default_rng(0)
    n = 50_000
    lab = np.stack(
        [rng.uniform(-20, 120, n), rng.uniform(-200, 200, n), rng.uniform(-200, 200, n)], -1
    )
    got = np.asarray(to_rgb(lab.astype(np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about clipping negative Z
        ref = skcolor.lab2rgb(lab)
    assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def test_extreme_lab_is_finite_and_clipped(to_rgb):
    big = np.float32(1e30)
    lab = np.array(
        [
            [np.inf, -np.inf, np.inf],
            [-np.inf, np.inf, -np.inf],
            [big, big, -big],
            [-big, -big, big],
            [1e6, 0.0, 0.0],
            [-1e6, 1e6, 1e6],
            [50.0, 1e4, -1e4],
        ],
        dtype=np.float32,
    )
    rgb = np.asarray(to_rgb(lab))
    assert np.isfinite(rgb).all()
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    grads = np.asarray(jax.jit(jax.vmap(jax.grad(lambda x: color.lab_to_rgb(x).sum())))(lab))
    assert np.isfinite(grads).all()


def _knee_gray() -> float:
    """sRGB gray level whose relative luminance sits exactly on Lab's cube-root knee."""
    y = 0.008856
    return 1.055 * y ** (1 / 2.4) - 0.055


GRAD_RGB = [
    [0.0, 0.0, 0.0],
    [1.0, 1.0, 1.0],
    [0.5, 0.5, 0.5],
    [1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0],
    [0.0, 0.0, 1.0],
    [1.0, 0.0, 1.0],
    [0.04045, 0.04045, 0.04045],  # sRGB companding knee
    [_knee_gray()] * 3,  # Lab cube-root knee
]
GRAD_LAB = [
    [0.0, 0.0, 0.0],
    [100.0, 0.0, 0.0],
    [50.0, 0.0, 0.0],
    [116 * 0.2068966 - 16, 0.0, 0.0],  # inverse cube-root knee
    [53.2, 80.1, 67.2],  # saturated red
    [32.3, 79.2, -107.9],  # saturated blue
    [50.0, 120.0, -150.0],  # out of gamut
]


@pytest.mark.parametrize("mode", [jax.jacfwd, jax.jacrev])
def test_rgb_to_lab_gradients_finite(mode):
    x = jnp.asarray(GRAD_RGB, jnp.float32)
    jac = np.asarray(jax.jit(jax.vmap(mode(color.rgb_to_lab)))(x))
    assert jac.shape == (len(GRAD_RGB), 3, 3)
    assert np.isfinite(jac).all()
    # Black is not a dead point: the linear toe keeps d L / d rgb positive.
    assert (jac[0, 0] > 0).all()


@pytest.mark.parametrize("mode", [jax.jacfwd, jax.jacrev])
def test_lab_to_rgb_gradients_finite(mode):
    x = jnp.asarray(GRAD_LAB, jnp.float32)
    jac = np.asarray(jax.jit(jax.vmap(mode(color.lab_to_rgb)))(x))
    assert jac.shape == (len(GRAD_LAB), 3, 3)
    assert np.isfinite(jac).all()


def test_gradient_matches_finite_differences():
    x = np.array([0.3, 0.6, 0.2])
    jac = np.asarray(jax.jit(jax.jacfwd(color.rgb_to_lab))(jnp.asarray(x, jnp.float32)))
    eps = 1e-4
    num = np.stack(
        [
            (skcolor.rgb2lab(x + eps * e) - skcolor.rgb2lab(x - eps * e)) / (2 * eps)
            for e in np.eye(3)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(jac, num, rtol=1e-3, atol=1e-2)


def test_batched_any_leading_dims_and_jit_equals_eager():
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 1, (2, 3, 5, 4, 3)).astype(np.float32)
    eager = np.asarray(color.rgb_to_lab(rgb))
    assert eager.shape == rgb.shape
    np.testing.assert_allclose(np.asarray(jax.jit(color.rgb_to_lab)(rgb)), eager, atol=1e-4)
    np.testing.assert_allclose(eager[1, 2], skcolor.rgb2lab(rgb[1, 2]), atol=1e-3)
    back = np.asarray(color.lab_to_rgb(eager))
    np.testing.assert_allclose(np.asarray(jax.jit(color.lab_to_rgb)(eager)), back, atol=1e-6)


def test_normalisation_helpers():
    L = jnp.array([0.0, 50.0, 100.0])
    np.testing.assert_allclose(np.asarray(color.normalize_l(L)), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(np.asarray(color.denormalize_l(color.normalize_l(L))), L)
    ab = jnp.array([-110.0, 0.0, 55.0])
    np.testing.assert_allclose(np.asarray(color.normalize_ab(ab)), [-1.0, 0.0, 0.5])
    np.testing.assert_allclose(np.asarray(color.denormalize_ab(color.normalize_ab(ab))), ab)


def test_uint8_inputs_match_skimage_and_invert():
    rgb_u8 = skdata.chelsea()[None, :64, :96]
    l_norm, ab_norm = jax.jit(color.rgb_uint8_to_lab_inputs)(rgb_u8)
    assert l_norm.shape == (1, 64, 96, 1) and ab_norm.shape == (1, 64, 96, 2)
    assert l_norm.dtype == jnp.float32 and ab_norm.dtype == jnp.float32
    ref = skcolor.rgb2lab(rgb_u8[0])
    np.testing.assert_allclose(np.asarray(l_norm[0, ..., 0]), ref[..., 0] / 50 - 1, atol=2e-5)
    np.testing.assert_allclose(np.asarray(ab_norm[0]), ref[..., 1:] / 110, atol=1e-5)
    rgb = np.asarray(jax.jit(color.lab_inputs_to_rgb)(l_norm, ab_norm))
    np.testing.assert_array_equal(np.round(rgb * 255).astype(np.uint8), rgb_u8)


def test_uint8_lookup_path_matches_skimage_and_float_path_on_every_code():
    # uint8 input goes through a 256-entry sRGB -> linear table; every code on every channel.
    i, j = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgb_u8 = np.stack([i, j, (7 * i + 13 * j) % 256], axis=-1).astype(np.uint8)
    l_norm, ab_norm = jax.jit(color.rgb_uint8_to_lab_inputs)(rgb_u8)
    ref = skcolor.rgb2lab(rgb_u8)
    np.testing.assert_allclose(np.asarray(l_norm[..., 0]), ref[..., 0] / 50 - 1, atol=2e-5)
    np.testing.assert_allclose(np.asarray(ab_norm), ref[..., 1:] / 110, atol=1e-5)
    # Same inputs as floats take the float (power) path: both agree.
    lab_float = np.asarray(jax.jit(color.rgb_to_lab)(rgb_u8.astype(np.float32) / 255.0))
    np.testing.assert_allclose(np.asarray(l_norm[..., 0]), lab_float[..., 0] / 50 - 1, atol=2e-5)
    np.testing.assert_allclose(np.asarray(ab_norm), lab_float[..., 1:] / 110, atol=1e-5)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(InputShapeError, match="3 channels"):
        color.rgb_to_lab(jnp.zeros((4, 4, 4)))
    with pytest.raises(InputShapeError, match="3 channels"):
        color.lab_to_rgb(jnp.zeros((4, 2)))
    with pytest.raises(InputShapeError, match="share every axis"):
        color.lab_inputs_to_rgb(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 8, 8, 2)))
    with pytest.raises(ValueError):  # InputShapeError is a ValueError
        color.rgb_uint8_to_lab_inputs(jnp.zeros((4, 4, 1), jnp.uint8))


def _sk_round_trip(lab: np.ndarray) -> np.ndarray:
    """Lab -> sRGB -> Lab with scikit-image: identity exactly where Lab is inside the gamut."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lab2rgb warns about the clipping we probe for
        return skcolor.rgb2lab(skcolor.lab2rgb(lab.astype(np.float64)))


def test_fit_ab_to_gamut_keeps_l_and_hue_and_shrinks_chroma_only_as_needed():
    rng = np.random.default_rng(0)
    n = 4000
    lab = np.stack(
        [rng.uniform(2, 98, n), rng.uniform(-110, 110, n), rng.uniform(-110, 110, n)], -1
    )
    l_norm = color.normalize_l(jnp.asarray(lab[:, :1], jnp.float32))
    ab_norm = color.normalize_ab(jnp.asarray(lab[:, 1:], jnp.float32))
    fitted = np.asarray(color.denormalize_ab(color.fit_ab_to_gamut(l_norm, ab_norm)))
    scale = np.linalg.norm(fitted, axis=-1) / np.linalg.norm(lab[:, 1:], axis=-1)
    # Same hue (ab only scaled towards gray, never rotated or pushed out) ...
    cross = fitted[:, 0] * lab[:, 2] - fitted[:, 1] * lab[:, 1]
    assert np.all(np.abs(cross) < 1e-3 * np.linalg.norm(lab[:, 1:], axis=-1) ** 2)
    assert np.all((scale >= 0) & (scale <= 1 + 1e-6))
    # ... inside the sRGB gamut by scikit-image's independent conversion (round trip exact) ...
    out = np.concatenate([lab[:, :1], fitted], -1)
    assert np.abs(_sk_round_trip(out) - out).max() < 0.1
    # ... and as saturated as it can be: 3% more chroma leaves the gamut where it was shrunk.
    shrunk = (scale < 0.97) & (np.linalg.norm(fitted, axis=-1) > 2.0)
    assert shrunk.mean() > 0.3 and (scale > 0.999).mean() > 0.05
    more = np.concatenate([lab[:, :1], fitted * 1.03], -1)[shrunk]
    assert np.all(np.abs(_sk_round_trip(more) - more).max(axis=-1) > 0.01)


def test_numpy_twin_matches_skimage_and_the_device_path(cube):
    lab_np = color.rgb_to_lab_np(cube)
    assert lab_np.dtype == np.float64
    np.testing.assert_allclose(lab_np, skcolor.rgb2lab(cube), atol=1e-9)
    np.testing.assert_allclose(lab_np, np.asarray(color.rgb_to_lab(cube)), atol=2e-3)
    with pytest.raises(InputShapeError, match="3 channels"):
        color.rgb_to_lab_np(np.zeros((4, 4)))


def test_near_gray_rule_is_the_same_on_host_and_device():
    rng = np.random.default_rng(3)
    ab = rng.normal(0.0, 3.0, (6, 5, 7, 2))
    ab[0] = 0.0  # exactly gray
    ab[1, 2, 3] = (3.0, 4.0)  # chroma exactly 5 = GRAY_CHROMA: still gray (at most)
    ab[1] = np.clip(ab[1], -1.0, 1.0)
    ab[1, 2, 3] = (3.0, 4.0)
    ab[2, 0, 0] = (0.0, -30.0)  # one vivid pixel makes the image colourful
    expected = np.sqrt((ab**2).sum(-1)).max(axis=(1, 2))
    np.testing.assert_allclose(color.max_chroma(ab), expected, rtol=1e-12)
    np.testing.assert_allclose(color.max_chroma(jnp.asarray(ab, jnp.float32)), expected, rtol=1e-6)
    host = color.is_near_gray(ab)
    device = np.asarray(color.is_near_gray(jnp.asarray(ab, jnp.float32)))
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, device)
    np.testing.assert_array_equal(host, expected <= color.GRAY_CHROMA)
    assert host[0] and host[1] and not host[2]
