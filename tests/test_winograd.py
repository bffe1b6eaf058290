"""The Winograd 3x3 conv (`cpu.winograd`) and Zhang's Conv3x3 against XLA's conv and nn.Conv."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models.cpu import winograd
from colorjax.models.cpu.shapes import NHWC
from colorjax.models.zhang import Conv3x3

# Even, odd, non-square and 1x1 maps (odd sizes take the pad-and-crop path of both forms).
SHAPES = [(2, 8, 8), (1, 7, 9), (2, 6, 5), (1, 1, 1), (1, 2, 3)]


def _reference(x: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
    """The independent form: XLA's dilated conv at full float32 precision."""
    d = dilation
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (1, 1),
        ((d, d), (d, d)),
        rhs_dilation=(d, d),
        dimension_numbers=NHWC,
        precision=jax.lax.Precision.HIGHEST,
    )


def _value_and_grads(fn, x, kernel, cot):  # noqa: ANN001, ANN202
    def loss(x, k):
        y = fn(x, k)
        return jnp.sum(y * cot), y

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(x, kernel)


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize(("n", "h", "w"), SHAPES)
def test_winograd_equals_lax_conv_outputs_and_gradients(n, h, w, dilation):
    rng = np.random.default_rng(h * 10 + w + dilation)
    x = rng.standard_normal((n, h, w, 6)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 6, 5)).astype(np.float32)
    cot = rng.standard_normal((n, h, w, 5)).astype(np.float32)
    (_, y), (gx, gk) = _value_and_grads(
        lambda a, k: winograd.conv3x3(a, k, dilation), x, kernel, cot
    )
    (_, ry), (rx, rk) = _value_and_grads(lambda a, k: _reference(a, k, dilation), x, kernel, cot)
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gk, rk, rtol=1e-5, atol=1e-4)


def test_winograd_is_exact_to_float32_roundoff_at_zhang_width():
    # 512 -> 512 at H/8 of a 256 px input (Zhang's blocks 4-7): relative error ~1e-6.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 32, 32, 512)).astype(np.float32)
    kernel = (rng.standard_normal((3, 3, 512, 512)) / 48).astype(np.float32)
    for d in (1, 2):
        want = np.asarray(_reference(x, kernel, d))
        got = np.asarray(jax.jit(winograd.conv3x3, static_argnums=2)(x, kernel, d))
        assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_winograd_rejects_other_dilations():
    with pytest.raises(ValueError, match="dilation 1 or 2"):
        winograd.conv3x3(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), 3)


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("channels", [8, winograd.MIN_CHANNELS])  # lax form, Winograd form
def test_conv3x3_module_equals_nn_conv(channels, dilation):
    x = np.random.default_rng(1).standard_normal((2, 6, 7, channels)).astype(np.float32)
    ref = nn.Conv(
        4, (3, 3), padding=((dilation, dilation),) * 2, kernel_dilation=(dilation, dilation)
    )
    mine = Conv3x3(4, dilation)
    v_ref = ref.init(jax.random.key(0), x)
    v_mine = mine.init(jax.random.key(0), x)
    # Same parameter names, shapes and init: converted PyTorch weights load unchanged.
    jax.tree.map(np.testing.assert_array_equal, v_mine, v_ref)
    bias = np.random.default_rng(2).standard_normal(4).astype(np.float32)
    v = {"params": {**v_ref["params"], "bias": bias}}
    cot = np.random.default_rng(3).standard_normal((2, 6, 7, 4)).astype(np.float32)

    def grads(module):  # noqa: ANN001, ANN202
        def loss(v, x):
            return jnp.sum(module.apply(v, x) * cot)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(v, x)

    np.testing.assert_allclose(
        mine.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-4 * np.sqrt(channels / 8)
    )
    (gv, gx), (rv, rx) = grads(mine), grads(ref)
    np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3), gv, rv)
