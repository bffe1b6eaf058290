"""Colour hints (zhang-siggraph17): parsing, placement as the reference tool does, colorize, CLI."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor

from colorjax.errors import ConfigError
from colorjax.inference import Colorizer, colorize, hints
from colorjax.models import build_model
from colorjax.weights import save_weights

WORKING = 64


def test_parse_hint() -> None:
    assert hints.parse_hint("120,40,#3a7bd5") == (120.0, 40.0, (58, 123, 213))
    assert hints.parse_hint(" 7.5 , 3 , FF0000 ") == (7.5, 3.0, (255, 0, 0))
    for bad in ("120,40", "a,b,#ffffff", "1,2,#fffff", "1,2,red"):
        with pytest.raises(ConfigError, match="X,Y,#RRGGBB"):
            hints.parse_hint(bad)


def test_hint_square_and_colour_as_the_reference_tool_builds_them() -> None:
    # A 100 x 50 (H x W) photo at working size 256 x 128, padded to 256 x 256.
    colour = (58, 123, 213)
    ab, mask = hints.hint_arrays([(25, 50, colour)], (100, 50), (256, 128), (256, 256), radius=1)
    assert ab.shape == (256, 256, 2) and mask.shape == (256, 256, 1)
    # int(25 / 50 * 128) = 64, int(50 / 100 * 256) = 128; square of half-width 1 around it.
    expected = np.zeros((256, 256), bool)
    expected[127:130, 63:66] = True
    np.testing.assert_array_equal(mask[..., 0] == 1.0, expected)
    ref_ab = skcolor.rgb2lab(np.asarray(colour, np.float64)[None, None] / 255.0)[0, 0, 1:] / 110
    np.testing.assert_allclose(ab[expected], np.broadcast_to(ref_ab, (9, 2)), atol=1e-5)
    assert not ab[~expected].any()


def test_hint_squares_clip_to_the_photo_and_later_hints_win() -> None:
    red, blue = (255, 0, 0), (0, 0, 255)
    ab, mask = hints.hint_arrays(
        [(0, 0, red), (1, 1, blue)], (8, 8), (8, 8), (16, 8), radius=2
    )  # padded below the photo: the padding never gets a hint
    assert mask[..., 0].sum() == 16  # rows/cols 0..3: the union of both clipped squares
    assert not mask[8:].any()
    blue_ab = skcolor.rgb2lab(np.asarray(blue, float)[None, None] / 255.0)[0, 0, 1:] / 110
    np.testing.assert_allclose(ab[0, 0], blue_ab, atol=1e-5)  # overlap: the later hint


def test_bad_hints_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="outside the 50x100 image"):
        hints.hint_arrays([(50, 10, (1, 2, 3))], (100, 50), (64, 32))
    with pytest.raises(ConfigError, match="0-255"):
        hints.hint_arrays([(5, 10, (1, 2, 300))], (100, 50), (64, 32))
    with pytest.raises(ConfigError, match=r"\(x, y, \(r, g, b\)\)"):
        hints.hint_arrays([(5, 10)], (100, 50), (64, 32))
    with pytest.raises(ConfigError, match="hint_radius"):
        hints.hint_arrays([], (100, 50), (64, 32), radius=-1)


def _variables(model, seed: int = 0) -> dict:  # noqa: ANN001
    """He-normal kernels, zero biases, identity BatchNorm: a non-trivial random network."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 16, 16, 1), np.float32))
    rng = np.random.default_rng(seed)

    def leaf(path, spec):  # noqa: ANN001, ANN202
        name = path[-1].key
        if name == "scale":
            return np.ones(spec.shape, np.float32)
        if name in ("bias", "shift"):
            return np.zeros(spec.shape, np.float32)
        std = np.sqrt(2.0 / np.prod(spec.shape[:-1]))
        return (rng.standard_normal(spec.shape) * std).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


@pytest.fixture(scope="module")
def siggraph():
    model = build_model("zhang-siggraph17")
    return model, _variables(model), {"working_size": WORKING}


def _photo(h: int = 48, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (128 + 80 * np.sin(xx / 7.0) * np.cos(yy / 5.0))[..., None]
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def test_no_hints_equals_plain_colorize_and_hints_change_the_result(siggraph) -> None:  # noqa: ANN001
    photo = _photo()
    plain = colorize(photo, weights=siggraph)
    assert np.array_equal(colorize(photo, weights=siggraph, hints=[]), plain)
    hinted = colorize(photo, weights=siggraph, hints=[(40, 24, (255, 0, 0))], hint_radius=3)
    assert hinted.shape == photo.shape and hinted.dtype == np.uint8
    assert np.abs(hinted.astype(int) - plain.astype(int)).max() > 0


def test_hints_on_a_model_without_hints_are_refused() -> None:
    model = build_model("colornet-tiny")
    colorizer = Colorizer(model, {}, 32)
    with pytest.raises(ConfigError, match="takes no colour hints.*zhang-siggraph17"):
        hints.colorize_with_hints(colorizer, _photo(), [(1, 1, (0, 0, 0))])


def test_cli_hint(tmp_path: Path, siggraph, capsys) -> None:  # noqa: ANN001
    from colorjax import cli

    model, variables, _ = siggraph
    weights_file = save_weights(
        tmp_path / "sig.safetensors", "zhang-siggraph17", {}, variables, {"working_size": WORKING}
    )
    src = tmp_path / "in.png"
    Image.fromarray(_photo()).save(src)
    out = tmp_path / "out"
    argv = ["colorize", str(src), "-o", str(out), "--weights", str(weights_file)]
    assert cli.main([*argv, "--hint", "40,24,#ff0000", "--hint", "5,5,#00ff00"]) == 0
    written = np.asarray(Image.open(out / "in.png"))
    expected = colorize(
        _photo(), weights=siggraph, hints=[(40, 24, (255, 0, 0)), (5, 5, (0, 255, 0))]
    )
    np.testing.assert_array_equal(written, expected)
    capsys.readouterr()
    assert cli.main([*argv, "--hint", "400,24,#ff0000", "--overwrite"]) == 2
    assert "outside the 80x48 image" in capsys.readouterr().err
    two = ["colorize", str(src), str(src), "-o", str(out), "--weights", str(weights_file)]
    assert cli.main([*two, "--hint", "4,4,#ff0000", "--overwrite"]) == 2
    assert "exactly one input image" in capsys.readouterr().err
