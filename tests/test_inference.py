"""Tests for colorjax.inference: any-size colorize, luminance preservation, buckets, CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from helpers import random_variables
from PIL import Image
from skimage import color as skcolor

import colorjax
from colorjax import inference, models
from colorjax.cli import colorize as colorize_cli

WORKING_SIZE = 64


@pytest.fixture(scope="module")
def tiny():
    """A random-init colornet-tiny as a (model, variables, meta) weights tuple."""
    model = models.build_model("colornet-tiny")
    # A tame random head keeps colours mostly in gamut (ab of ~10-30 Lab units, not ~100):
    # where sRGB clips, L is legitimately lost, and the luminance checks need unclipped pixels.
    variables = random_variables(model, WORKING_SIZE, head_scale=0.2)
    return model, variables, {"working_size": WORKING_SIZE, "model": "colornet-tiny"}


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colourful test image with some noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None]
    x = np.linspace(0.0, 1.0, width)[None, :]
    base = np.stack([0.2 + 0.6 * y + 0 * x, 0.3 + 0.5 * x + 0 * y, 0.8 - 0.5 * x * y], axis=-1)
    noisy = base * 255.0 + rng.normal(0.0, 12.0, base.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _lightness(rgb_u8: np.ndarray) -> np.ndarray:
    """CIE L of uint8 RGB with scikit-image (an independent reference)."""
    return skcolor.rgb2lab(rgb_u8.astype(np.float64) / 255.0)[..., 0]


def _assert_same_luminance(out: np.ndarray, reference_rgb: np.ndarray) -> None:
    """L of the output equals L of the input within uint8 rounding where nothing was clipped."""
    assert out.shape == reference_rgb.shape and out.dtype == np.uint8
    unclipped = np.all((out > 0) & (out < 255), axis=-1)
    assert unclipped.mean() > 0.5, "too much clipping for a meaningful check"
    diff = np.abs(_lightness(out) - _lightness(reference_rgb))[unclipped]
    assert diff.max() < 1.0, diff.max()
    assert diff.mean() < 0.3


def test_working_and_bucket_shapes():
    assert inference.working_shape(1000, 17, 64) == (64, 1)
    assert inference.working_shape(17, 1000, 64) == (1, 64)
    assert inference.working_shape(1, 1, 64) == (64, 64)
    assert inference.working_shape(3000, 4000, 256) == (192, 256)
    rng = np.random.default_rng(0)
    buckets = set()
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 5000, size=2))
        wh, ww = inference.working_shape(h, w, 96)
        bh, bw = inference.bucket_shape(h, w, 96, stride=32)
        assert bh % 32 == 0 and bw % 32 == 0 and bh >= wh and bw >= ww
        assert abs(wh / ww - h / w) <= max(1 / ww, 1 / wh) * (h / w + 1) + 1e-9
        buckets.add((bh, bw))
    assert buckets <= {(96, 96), (96, 64), (64, 96)}


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (1000, 17), (17, 1000)])
def test_colorize_keeps_size_and_luminance(tiny, shape):
    rgb = _photo(*shape, seed=shape[0])
    out = inference.colorize(rgb, weights=tiny)
    assert out.shape == shape + (3,) and out.dtype == np.uint8
    _assert_same_luminance(out, rgb)


def test_colorize_large_gray_photo_keeps_gray_and_adds_colour(tiny):
    gray = _photo(4000, 3000, seed=1)[..., 1]
    out = inference.colorize(gray, weights=tiny)
    assert out.shape == (4000, 3000, 3)
    # Converted back to gray (L only, ab = 0), the output is the input within rounding.
    sub = (slice(None, None, 7), slice(None, None, 5))
    lab = skcolor.rgb2lab(out[sub].astype(np.float64) / 255.0)
    lab[..., 1:] = 0.0
    back = np.round(skcolor.lab2rgb(lab)[..., 0] * 255.0)
    unclipped = np.all((out[sub] > 0) & (out[sub] < 255), axis=-1)
    assert np.abs(back - gray[sub])[unclipped].max() <= 2
    # The model did colour it: the output is not the gray input.
    assert np.abs(out[..., 0].astype(int) - out[..., 2]).mean() > 0.5


def _rgba(height: int, width: int) -> np.ndarray:
    """RGBA with varying alpha."""
    rgba = np.concatenate([_photo(height, width, 3), _photo(height, width, 4)[..., :1]], axis=-1)
    return rgba


def _composite_white(rgba: np.ndarray) -> np.ndarray:
    """Composite RGBA over white in NumPy (reference for what the photo looks like)."""
    alpha = rgba[..., 3:4] / 255.0
    return np.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def test_input_kinds(tiny, tmp_path):
    h, w = 37, 53
    rgb = _photo(h, w, seed=2)
    gray = rgb[..., 0]
    rgba = _rgba(h, w)
    palette = Image.fromarray(rgb).quantize(colors=32)
    palette.save(tmp_path / "palette.png")
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    cases = [
        (gray, np.repeat(gray[..., None], 3, axis=-1)),
        (rgb, rgb),
        (rgba, _composite_white(rgba)),
        (Image.fromarray(gray), np.repeat(gray[..., None], 3, axis=-1)),
        (Image.fromarray(rgba, mode="RGBA"), _composite_white(rgba)),
        (palette, np.asarray(palette.convert("RGB"))),
        (tmp_path / "palette.png", np.asarray(palette.convert("RGB"))),
        (str(tmp_path / "photo.png"), rgb),
    ]
    for image, reference in cases:
        out = colorjax.colorize(image, weights=tiny)  # the package-level public API
        _assert_same_luminance(out, reference)
    # The colour of an RGB input is ignored: its gray version (same L) colorizes the same way.
    lab = skcolor.rgb2lab(rgb / 255.0)
    lab[..., 1:] = 0.0
    same_l_gray = np.round(skcolor.lab2rgb(lab)[..., 0] * 255.0).astype(np.uint8)
    out_rgb = inference.colorize(rgb, weights=tiny).astype(int)
    out_gray = inference.colorize(same_l_gray, weights=tiny).astype(int)
    # The inputs differ a lot in colour; the outputs only by the L rounding of same_l_gray.
    assert np.abs(rgb.astype(int) - same_l_gray[..., None]).mean() > 20
    assert np.abs(out_rgb - out_gray).mean() < 3


def test_colorizer_agrees_with_predict_rgb(tiny):
    model, variables, meta = tiny
    rgb = _photo(96, 128, seed=5)
    out = inference.Colorizer(model, variables, meta["working_size"])(rgb)
    ref = np.asarray(inference.predict_rgb(model, variables, rgb[None], meta["working_size"]))[0]
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 4
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() > 1.0  # not a copy of the input


def test_bad_inputs_raise_clear_errors(tiny):
    model, variables, _ = tiny
    with pytest.raises(ValueError, match="shape"):
        inference.predict_rgb(model, variables, np.zeros((8, 8, 3), np.uint8), 64)
    with pytest.raises(ValueError, match="image"):
        inference.colorize(np.zeros((4, 4, 5), np.uint8), weights=tiny)
    with pytest.raises(ValueError, match="working_size"):
        inference.Colorizer(model, variables, 0)


def test_mixed_sizes_compile_a_few_times(tiny):
    model, variables, _ = tiny
    # A working size no other test uses, so every compile here is a fresh trace.
    colorizer = inference.Colorizer(model, variables, 40, batch_size=2)
    sizes = [(30, 40), (41, 29), (64, 64), (100, 17), (17, 100), (9, 13), (80, 120), (7, 7)]
    sizes += [(200, 150), (33, 250)]
    before = inference.trace_counts()
    items = [(i, _photo(h, w, seed=i)) for i, (h, w) in enumerate(sizes)]
    results = dict(colorizer.colorize_many(items))
    after = inference.trace_counts()
    assert sorted(results) == list(range(len(sizes)))
    for i, (h, w) in enumerate(sizes):
        assert results[i].shape == (h, w, 3)
        _assert_same_luminance(results[i], items[i][1])
    model_traces = after.get("model", 0) - before.get("model", 0)
    assert 1 <= model_traces <= 3
    assert colorizer.num_compilations == 3 == len({colorizer.bucket_for(h, w) for h, w in sizes})
    for kernel in ("luminance", "finish"):
        assert after.get(kernel, 0) - before.get(kernel, 0) <= 2
    # Running the same folder again compiles nothing new.
    dict(colorizer.colorize_many(items))
    assert inference.trace_counts() == after


# ---------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def weights_file(tiny, tmp_path_factory):
    from colorjax import weights

    model, variables, meta = tiny
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    weights.save_weights(path, "colornet-tiny", {}, variables, {"working_size": WORKING_SIZE})
    return path


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    colorize_cli.configure_parser(parser)
    return colorize_cli.run(parser.parse_args(argv))


def test_cli_folder_glob_compare_overwrite_and_bad_files(weights_file, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(_photo(20, 30, 1)).save(folder / "a.png")
    Image.fromarray(_photo(31, 17, 2)[..., 0]).save(folder / "sub" / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(_photo(12, 9, 3)).save(other / "c.png")
    out = tmp_path / "out"
    common = ["--weights", str(weights_file), "--batch-size", "1"]

    rc = _cli([str(folder), str(other / "*.png"), "-o", str(out), *common])
    err = capsys.readouterr().err
    assert rc == 1  # broken.png failed
    assert "broken.png" in err and "3 written" in err and "1 failed" in err
    assert np.asarray(Image.open(out / "a.png")).shape == (20, 30, 3)
    assert np.asarray(Image.open(out / "sub" / "b.png")).shape == (31, 17, 3)
    assert np.asarray(Image.open(out / "c.png")).shape == (12, 9, 3)
    assert not (out / "notes.png").exists() and not (out / "broken.png").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left

    # Existing outputs are never replaced without --overwrite.
    before = (out / "a.png").read_bytes()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(out / "c.png")
    sentinel = (out / "c.png").read_bytes()
    rc = _cli([str(other / "c.png"), "-o", str(out), "--compare", *common])
    err = capsys.readouterr().err
    assert rc == 0 and "exists" in err and "0 written" in err
    assert (out / "c.png").read_bytes() == sentinel

    # --compare with --overwrite: gray | colour, twice as wide; JPEG output.
    rc = _cli([str(folder / "a.png"), "-o", str(out), "--compare", "--overwrite", *common])
    assert rc == 0
    side = np.asarray(Image.open(out / "a.png"))
    assert side.shape == (20, 60, 3) and (out / "a.png").read_bytes() != before
    left, right = side[:, :30].astype(int), side[:, 30:].astype(int)
    assert np.abs(left[..., 0] - left[..., 2]).max() <= 1  # gray half
    _assert_same_luminance(side[:, 30:], _photo(20, 30, 1))
    assert np.abs(right - left).mean() > 0.5
    rc = _cli([str(folder / "a.png"), "-o", str(out), "--format", "jpg", *common])
    assert rc == 0 and Image.open(out / "a.jpg").format == "JPEG"


def test_cli_nothing_found_is_an_error(weights_file, tmp_path, capsys):
    rc = _cli([str(tmp_path / "missing*.png"), "-o", str(tmp_path / "out"), "--weights", "x"])
    assert rc == 1
    assert "matches" in capsys.readouterr().err


def test_working_size_and_temperature_default_to_the_weights_tuned_values():
    # The render factor and the annealed-mean T come from the weights' metadata unless given;
    # a classification model's colour really depends on T (lower: further from the mean).
    model = models.build_model("colornet-tiny-cls", head_stride=4)
    variables = random_variables(model, WORKING_SIZE, head_scale=3.0)
    meta = {"working_size": 48, "temperature": 0.2, "model": "colornet-tiny-cls"}
    default = inference.make_colorizer(model, variables, meta)
    assert (default.working_size, default.temperature) == (48, 0.2)
    custom = inference.make_colorizer(model, variables, meta, working_size=96, temperature=1.0)
    assert (custom.working_size, custom.temperature) == (96, 1.0)
    assert inference.make_colorizer(model, variables, {"working_size": 64}).temperature == 0.38
    rgb = _photo(64, 64, seed=3)
    sharp = colorjax.colorize(rgb, (model, variables, meta))
    soft = colorjax.colorize(rgb, (model, variables, meta), temperature=1.0)
    assert not np.array_equal(sharp, soft)
    np.testing.assert_array_equal(sharp, default(rgb))
    parser = argparse.ArgumentParser()
    colorize_cli.configure_parser(parser)
    args = parser.parse_args(
        ["x.jpg", "-o", "out", "--working-size", "128", "--temperature", "0.3"]
    )
    assert (args.working_size, args.temperature) == (128, 0.3)
