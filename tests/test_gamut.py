"""ab bins, soft-encoding, prior, rebalancing weights and annealed-mean decoding."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy.spatial import cKDTree
from skimage import color as skcolor

from colorjax import cli, gamut
from colorjax.errors import ConfigError, InputShapeError


@pytest.fixture(scope="module")
def centers() -> np.ndarray:
    return gamut.ab_bin_centers()


def test_bin_centers_shape_grid_and_cache(centers):
    q = len(centers)
    assert 200 <= q <= 400, q  # Zhang et al. report 313 with a looser criterion
    assert centers.shape == (q, 2) and centers.dtype == np.float32
    np.testing.assert_array_equal(centers % 10, 0)
    assert len({tuple(c) for c in centers.tolist()}) == q
    assert gamut.ab_bin_centers(10) is centers  # cached
    assert len(gamut.ab_bin_centers(20.0)) < q
    with pytest.raises(ConfigError):
        gamut.ab_bin_centers(0)


@pytest.fixture(scope="module")
def face_ab() -> np.ndarray:
    """scikit-image ab of every 8-bit colour on the six faces of the sRGB cube."""
    levels = np.arange(256) / 255.0
    u, v = (x.ravel() for x in np.meshgrid(levels, levels, indexing="ij"))
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            cols = [u, v]
            cols.insert(axis, np.full_like(u, value))
            faces.append(np.stack(cols, -1))
    return skcolor.rgb2lab(np.concatenate(faces))[:, 1:]


def test_bins_equal_the_bins_hit_by_the_srgb_cube_surface(centers, face_ab):
    # Independent reference (scikit-image Lab): the extreme chroma lies on the cube's faces.
    keys = np.unique(np.round(face_ab / 10).astype(np.int64), axis=0) * 10
    assert {tuple(c) for c in centers.astype(int).tolist()} == set(map(tuple, keys.tolist()))


def test_every_bin_centre_is_reachable(centers, face_ab):
    # Every centre has an 8-bit sRGB colour within 5 ab units per axis (inside its own bin).
    dist, _ = cKDTree(face_ab).query(centers, p=np.inf)
    assert dist.max() <= 5.0, centers[np.argmax(dist)]


def test_random_colours_fall_in_the_bins(centers):
    rng = np.random.default_rng(0)
    ab = skcolor.rgb2lab(rng.integers(0, 256, (100_000, 3)) / 255.0)[:, 1:]
    nearest, _ = cKDTree(centers).query(ab, p=np.inf)
    assert nearest.max() <= 5.0 + 1e-6


def _soft_encode_reference(ab: np.ndarray, centers: np.ndarray, sigma: float, k: int):
    d2 = ((ab[:, None, :] - centers[None].astype(np.float64)) ** 2).sum(-1)
    out = np.zeros_like(d2)
    for i, row in enumerate(d2):
        nn = np.argsort(row, kind="stable")[:k]
        w = np.exp(-row[nn] / (2 * sigma**2))
        out[i, nn] = w / w.sum()
    return out


def test_soft_encode_rows_sum_to_one_and_match_reference(centers):
    rng = np.random.default_rng(2)
    ab = rng.uniform(-80, 80, (500, 2)).astype(np.float32)
    enc = np.asarray(jax.jit(gamut.soft_encode)(ab, centers))
    assert enc.shape == (500, len(centers))
    np.testing.assert_allclose(enc.sum(-1), 1.0, atol=1e-5)
    assert ((enc > 0).sum(-1) == 5).all()
    d2 = ((ab[:, None, :] - centers[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(enc.argmax(-1), d2.argmin(-1))  # nearest bin weighs most
    np.testing.assert_allclose(enc, _soft_encode_reference(ab, centers, 5.0, 5), atol=1e-5)
    narrow = np.asarray(gamut.soft_encode(ab[:20], centers, sigma=2.0, neighbors=3))
    np.testing.assert_allclose(narrow, _soft_encode_reference(ab[:20], centers, 2.0, 3), atol=1e-5)


def test_soft_encode_image_batches_and_far_values(centers):
    rng = np.random.default_rng(3)
    ab = rng.uniform(-60, 60, (2, 64, 64, 2)).astype(np.float32)
    enc = jax.jit(gamut.soft_encode)(ab, centers)
    assert enc.shape == (2, 64, 64, len(centers))
    np.testing.assert_allclose(np.asarray(enc.sum(-1)), 1.0, atol=1e-5)
    # Far outside the gamut every Gaussian weight underflows unless handled: still a distribution.
    far = np.asarray(gamut.soft_encode(jnp.array([[1e3, -1e3], [0.0, 5e2]]), centers))
    assert np.isfinite(far).all()
    np.testing.assert_allclose(far.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(InputShapeError):
        gamut.soft_encode(jnp.zeros((4, 3)), centers)


def test_bin_prior_is_the_nearest_bin_histogram(centers):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (3000, 3)) / 255.0
    ab = skcolor.rgb2lab(rgb)[:, 1:]
    # In-gamut ab: the nearest centre is the one at ab rounded to the grid.
    index = {tuple(c): i for i, c in enumerate(centers.astype(int).tolist())}
    keys = (np.round(ab / 10) * 10).astype(int)
    expected = np.bincount([index[tuple(k)] for k in keys.tolist()], minlength=len(centers))
    prior = np.asarray(jax.jit(gamut.bin_prior)(ab.reshape(30, 100, 2), centers))
    np.testing.assert_allclose(prior, expected / expected.sum(), atol=1e-7)


def test_rebalancing_weights(centers):
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.full(len(centers), 0.3))
    w = np.asarray(jax.jit(gamut.rebalancing_weights)(p))
    assert np.isclose((p * w).sum(), 1.0, atol=1e-5)
    order = np.argsort(p)
    assert (np.diff(w[order]) <= 1e-6).all()  # rarer bins weigh more
    assert w[np.argmin(p)] > w[np.argmax(p)]
    q = len(p)
    expected = 1.0 / (0.5 * p + 0.5 / q)
    np.testing.assert_allclose(w, expected / (p * expected).sum(), rtol=1e-5)
    # lam = 1 ignores the prior entirely: uniform weights.
    np.testing.assert_allclose(np.asarray(gamut.rebalancing_weights(p, lam=1.0)), 1.0, rtol=1e-5)
    # Unnormalised counts are accepted.
    np.testing.assert_allclose(np.asarray(gamut.rebalancing_weights(p * 1000)), w, rtol=1e-5)


def test_annealed_mean_of_one_hot_is_the_bin_centre(centers):
    q = len(centers)
    idx = np.array([0, 17, q // 2, q - 1])
    log_p = jnp.log(jax.nn.one_hot(idx, q))  # -inf outside the chosen bin
    for temperature in (1.0, 0.38, 0.01):
        ab = np.asarray(jax.jit(gamut.annealed_mean)(log_p, centers, temperature))
        np.testing.assert_allclose(ab, centers[idx], atol=1e-4)


def test_annealed_mean_matches_reference_and_tends_to_mode(centers):
    rng = np.random.default_rng(6)
    logits = rng.normal(0, 3, (4, 5, len(centers))).astype(np.float32)

    def reference(t):
        z = logits.astype(np.float64) / t
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        return p @ centers.astype(np.float64)

    decode = jax.jit(gamut.annealed_mean)
    for t in (1.0, 0.38):
        np.testing.assert_allclose(np.asarray(decode(logits, centers, t)), reference(t), atol=1e-3)
    mode = centers[logits.argmax(-1)]
    err = [np.abs(np.asarray(decode(logits, centers, t)) - mode).max() for t in (0.38, 0.1, 1e-3)]
    assert err[0] > err[1] > err[2]  # monotone approach to the mode
    assert err[2] < 1e-3
    # Temperatures tiny enough to overflow a naive exp(logits / T) stay finite.
    assert np.isfinite(np.asarray(decode(logits * 1e3, centers, 1e-6))).all()
    with pytest.raises(ConfigError):
        gamut.annealed_mean(logits, centers, 0.0)
    with pytest.raises(InputShapeError):
        gamut.annealed_mean(logits[..., :-1], centers)


def test_default_prior_is_a_distribution_from_photos(centers):
    prior = gamut.default_prior()
    assert prior.shape == (len(centers),) and prior.dtype == np.float32
    assert (prior >= 0).all() and np.isclose(prior.sum(), 1.0, atol=1e-5)
    meta = json.loads(gamut.DEFAULT_PRIOR_PATH.read_text())
    assert meta["Q"] == len(centers) and meta["grid"] == 10.0 and meta["count"] > 0
    assert meta["source"]
    # Natural photos are dominated by low-chroma colours: the mode is next to gray.
    assert np.abs(centers[np.argmax(prior)]).max() <= 10
    assert prior[np.abs(centers).max(-1) <= 20].sum() > 0.5


def test_prior_cli_on_a_small_folder(tmp_path, centers):
    folder = tmp_path / "photos"
    (folder / "b").mkdir(parents=True)
    (folder / "a").mkdir()
    rng = np.random.default_rng(7)
    images = {
        folder / "a" / "0.png": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
        folder / "a" / "1.png": np.full((4, 6, 3), (200, 30, 30), np.uint8),
        folder / "b" / "2.png": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    }
    for path, arr in images.items():
        Image.fromarray(arr).save(path)
    (folder / "b" / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "prior.json"
    rc = cli.main(["prior", "--from", str(folder), "--limit", "10", "--out", str(out)])
    assert rc == 0
    meta = json.loads(out.read_text())
    assert meta["count"] == 3 and meta["Q"] == len(centers)  # the broken file is skipped
    pixels = np.concatenate([a.reshape(-1, 3) for a in images.values()]) / 255.0
    ab = skcolor.rgb2lab(pixels)[:, 1:]
    nearest = ((ab[:, None] - centers[None]) ** 2).sum(-1).argmin(-1)
    expected = np.bincount(nearest, minlength=len(centers)) / len(nearest)
    np.testing.assert_allclose(meta["prior"], expected, rtol=1e-5, atol=1e-9)
    assert meta["pixels"] == len(nearest)
    assert not list(tmp_path.glob("*.tmp"))

    # --limit thins the sorted list evenly.
    rc = cli.main(["prior", "--from", str(folder), "--limit", "2", "--out", str(out)])
    assert rc == 0 and json.loads(out.read_text())["count"] == 2

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["prior", "--from", str(empty), "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
