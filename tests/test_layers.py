"""UpConv / DownConv / PatchConv (4x4 convs with CPU-only forms) against flax's own layers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import deepcolorization
from colorjax.models.conv4x4 import (
    DOWNCONV_PADDING,
    PATCHCONV_PADDING,
    UPCONV_PADDING,
    DownConv,
    PatchConv,
    UpConv,
)
from colorjax.models.layers import Conv1x1

# Inputs smaller than the kernel (1x1, 2x2), odd and non-square sizes, and a U-Net-like one.
SIZES = [(1, 1), (2, 2), (3, 3), (2, 5), (7, 4), (16, 16)]
# DownConv needs >= 2 pixels for a non-empty output; odd sizes drop the last row/column.
DOWN_SIZES = [(2, 2), (3, 3), (2, 5), (7, 4), (5, 9), (16, 16)]


def _reference(features: int) -> nn.Module:
    """The layer UpConv replaces, exactly as the U-Net decoder used to call it."""
    return nn.ConvTranspose(features, (4, 4), (2, 2), padding=UPCONV_PADDING)


def _patch_reference(features: int) -> nn.Module:
    """The layer PatchConv replaces, as the PatchGAN's stride-1 layers used to call it."""
    return nn.Conv(features, (4, 4), (1, 1), padding=PATCHCONV_PADDING)


def _down_reference(features: int) -> nn.Module:
    """The layer DownConv replaces, as the U-Net encoder and the PatchGAN used to call it."""
    return nn.Conv(features, (4, 4), (2, 2), padding=DOWNCONV_PADDING)


def _inputs(h: int, w: int, cin: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, h, w, cin)).astype(np.float32)


def _variables(cin: int, cout: int, seed: int = 1) -> dict:
    # Non-zero bias so the bias path is checked too.
    rng = np.random.default_rng(seed)
    return {
        "params": {
            "kernel": rng.standard_normal((4, 4, cin, cout)).astype(np.float32),
            "bias": rng.standard_normal((cout,)).astype(np.float32),
        }
    }


@pytest.mark.parametrize(
    ("layer", "reference"),
    [(UpConv, _reference), (DownConv, _down_reference), (PatchConv, _patch_reference)],
)
def test_parameter_tree_and_init_match_flax(layer, reference):
    x = _inputs(4, 4)
    mine = layer(5).init(jax.random.key(0), x)
    ref = reference(5).init(jax.random.key(0), x)
    assert jax.tree.structure(mine) == jax.tree.structure(ref)
    assert jax.tree.map(jnp.shape, mine) == jax.tree.map(jnp.shape, ref)
    # Same initialisers: the same key gives the same weights.
    jax.tree.map(np.testing.assert_array_equal, mine, ref)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_output_equals_conv_transpose(h, w):
    x, v = _inputs(h, w), _variables(3, 5)
    got = UpConv(5).apply(v, x)
    want = _reference(5).apply(v, x)
    assert got.shape == want.shape == (2, 2 * h, 2 * w, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# On CPU, layers with <= 8 outputs take the tap-gram kernel gradient, wider ones the phase form's.
OUT_FEATURES = [2, 5, 12]


@pytest.mark.parametrize("cout", OUT_FEATURES)
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_gradients_equal_conv_transpose(h, w, cout):
    _check_gradients(UpConv(cout), _reference(cout), _inputs(h, w), _variables(3, cout))


# PatchConv: 1x1 gives an empty output, 2x2 a single logit, then odd and PatchGAN-like sizes.
@pytest.mark.parametrize("cout", [1, 5, 12])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 2), (3, 5), (7, 4), (15, 15)])
def test_patch_conv_output_and_gradients_equal_conv(h, w, cout):
    x, v = _inputs(h, w, 6), _variables(6, cout)
    got = PatchConv(cout).apply(v, x)
    want = _patch_reference(cout).apply(v, x)
    assert got.shape == want.shape == (2, max(h - 1, 0), max(w - 1, 0), cout)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    _check_gradients(PatchConv(cout), _patch_reference(cout), x, v)


# On CPU, narrow inputs (< 8 channels) take the space-to-depth form, wider ones the phase form.
DOWN_CHANNELS = [1, 3, 16]


@pytest.mark.parametrize("cin", DOWN_CHANNELS)
@pytest.mark.parametrize(("h", "w"), DOWN_SIZES)
def test_down_conv_output_equals_conv(h, w, cin):
    x, v = _inputs(h, w, cin), _variables(cin, 5)
    got = DownConv(5).apply(v, x)
    want = _down_reference(5).apply(v, x)
    assert got.shape == want.shape == (2, h // 2, w // 2, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cin", DOWN_CHANNELS)
@pytest.mark.parametrize(("h", "w"), DOWN_SIZES)
def test_down_conv_gradients_equal_conv(h, w, cin):
    _check_gradients(DownConv(5), _down_reference(5), _inputs(h, w, cin), _variables(cin, 5))


def _check_gradients(layer: nn.Module, reference: nn.Module, x: np.ndarray, v: dict) -> None:
    """Input, kernel and bias gradients of `layer` equal those of `reference`."""
    shape = jax.eval_shape(reference.apply, v, x).shape
    # A fixed random cotangent so every output position weighs differently.
    cot = np.random.default_rng(2).standard_normal(shape).astype(np.float32)

    def loss(module: nn.Module):
        return jax.jit(jax.grad(lambda v, x: jnp.sum(module.apply(v, x) * cot), argnums=(0, 1)))(
            v, x
        )

    (gv, gx), (rv, rx) = loss(layer), loss(reference)
    np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-4)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(gv["params"][name], rv["params"][name], rtol=1e-5, atol=1e-4)


def _hlo(platform: str, layer: nn.Module) -> str:
    """StableHLO of the jitted input gradient of `layer`, lowered for `platform` (no device)."""
    v, x = _variables(3, 5), _inputs(8, 8)
    fn = jax.jit(jax.grad(lambda x: jnp.sum(layer.apply(v, x) ** 2)))
    return jax.export.export(fn, platforms=[platform])(x).mlir_module()


@pytest.mark.parametrize("layer", [UpConv(5), DownConv(5)])
def test_phase_form_only_on_cpu(layer):
    # The input-dilated convolution (transposed conv, or a strided conv's input gradient) is
    # what XLA:CPU runs slowly: gone on CPU, kept on other backends (cuDNN).
    assert "lhs_dilate = [2, 2]" not in _hlo("cpu", layer)
    assert "lhs_dilate = [2, 2]" in _hlo("cuda", layer)


@pytest.mark.parametrize("use_bias", [True, False])
def test_conv1x1_parameters_and_init_match_flax(use_bias):
    x = _inputs(3, 3, cin=6)
    mine = Conv1x1(7, use_bias=use_bias).init(jax.random.key(0), x)
    ref = nn.Conv(7, (1, 1), use_bias=use_bias).init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, mine) == jax.tree.map(jnp.shape, ref)
    jax.tree.map(np.testing.assert_array_equal, mine, ref)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (3, 5), (16, 16)])
def test_conv1x1_output_and_gradients_equal_conv(h, w):
    x = _inputs(h, w, cin=6)
    rng = np.random.default_rng(3)
    v = {
        "params": {
            "kernel": rng.standard_normal((1, 1, 6, 7)).astype(np.float32),
            "bias": rng.standard_normal((7,)).astype(np.float32),
        }
    }
    got, want = Conv1x1(7).apply(v, x), nn.Conv(7, (1, 1)).apply(v, x)
    assert got.shape == want.shape == (2, h, w, 7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    _check_gradients(Conv1x1(7), nn.Conv(7, (1, 1)), x, v)


def test_conv1x1_is_a_matmul_only_on_cpu():
    v = Conv1x1(5).init(jax.random.key(0), _inputs(8, 8))
    fn = jax.jit(jax.grad(lambda x: jnp.sum(Conv1x1(5).apply(v, x) ** 2)))

    def hlo(platform: str) -> str:
        return jax.export.export(fn, platforms=[platform])(_inputs(8, 8)).mlir_module()

    assert "convolution" not in hlo("cpu")
    assert "convolution" in hlo("cuda")


def test_unet_weights_give_the_flax_layer_outputs(monkeypatch, tmp_path):
    # The bundled GAN now has a ColorNet generator, so a U-Net's weights come from its init:
    # the same parameter tree must compute the same function with flax's own layers.
    from colorjax.models import build_model

    model = build_model("deepcolorization-small")
    size = 64
    l_norm = np.random.default_rng(3).uniform(-1, 1, (2, size, size, 1)).astype(np.float32)
    variables = jax.jit(model.init)(jax.random.key(0), l_norm)
    ab_norm = np.random.default_rng(4).uniform(-1, 1, (2, size, size, 2)).astype(np.float32)
    got = model.apply(variables, l_norm)
    got_logits = model.apply(variables, l_norm, ab_norm, method="discriminate")

    # `mesh` (the layers' field for the CPU kernel-gradient loops) means nothing to flax's.
    def conv_transpose(features: int, name: str, mesh=None, **kw) -> nn.Module:
        return nn.ConvTranspose(features, (4, 4), (2, 2), padding=UPCONV_PADDING, name=name, **kw)

    def conv(features: int, name: str, mesh=None, **kw) -> nn.Module:
        return nn.Conv(features, (4, 4), (2, 2), padding=DOWNCONV_PADDING, name=name, **kw)

    def patch_conv(features: int, name: str, mesh=None, **kw) -> nn.Module:
        return nn.Conv(features, (4, 4), (1, 1), padding=PATCHCONV_PADDING, name=name, **kw)

    # The networks as they were before UpConv/DownConv/PatchConv: flax's layers, same weights.
    monkeypatch.setattr(deepcolorization, "UpConv", conv_transpose)
    monkeypatch.setattr(deepcolorization, "DownConv", conv)
    monkeypatch.setattr(deepcolorization, "PatchConv", patch_conv)
    want = model.apply(variables, l_norm)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    want_logits = model.apply(variables, l_norm, ab_norm, method="discriminate")
    np.testing.assert_allclose(got_logits, want_logits, rtol=1e-5, atol=1e-5)
