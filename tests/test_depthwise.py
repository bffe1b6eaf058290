"""The CPU depthwise conv (shifted multiply-adds, written-out gradients) against XLA's own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models.cpu.shapes import same_pads
from colorjax.models.layers import depthwise_conv

# Odd, even, non-square and smaller-than-kernel sizes; EfficientNet-Lite's kernels and strides.
CASES = [
    (9, 7, 3, 1),
    (9, 7, 3, 2),
    (8, 8, 5, 2),
    (13, 10, 5, 1),
    (16, 16, 3, 2),
    (2, 3, 5, 2),
    (1, 1, 3, 1),
]


def _grouped_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Reference: XLA's grouped convolution, one channel per group, 'SAME' padding."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


def _inputs(h: int, w: int, k: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, h, w, 5)).astype(np.float32)
    kernel = rng.normal(size=(k, k, 1, 5)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(kernel)


@pytest.mark.parametrize(("h", "w", "k", "stride"), CASES)
def test_output_equals_grouped_conv(h, w, k, stride):
    x, kernel = _inputs(h, w, k)
    got = jax.jit(depthwise_conv, static_argnums=2)(x, kernel, stride)
    want = _grouped_conv(x, kernel, stride)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("h", "w", "k", "stride"), CASES)
def test_gradients_equal_grouped_conv(h, w, k, stride):
    x, kernel = _inputs(h, w, k, seed=1)

    def loss(fn):
        # A non-linear loss so the output gradient differs at every position.
        return jax.grad(lambda a, b: jnp.sum(jnp.sin(fn(a, b, stride))), (0, 1))(x, kernel)

    (dx, dk), (dx_ref, dk_ref) = loss(depthwise_conv), loss(_grouped_conv)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("size", "k", "stride"), [(7, 3, 2), (8, 3, 2), (8, 5, 2), (5, 5, 1)])
def test_same_pads_match_xla(size, k, stride):
    assert same_pads(size, k, stride) == tuple(
        jax.lax.padtype_to_pads((size,), (k,), (stride,), "SAME")[0]
    )


def test_shifted_form_only_on_cpu():
    x, kernel = _inputs(8, 8, 3)

    def hlo(platform: str) -> str:
        fn = jax.jit(jax.grad(lambda a: jnp.sum(depthwise_conv(a, kernel, 2))))
        return jax.export.export(fn, platforms=[platform])(x).mlir_module()

    assert "feature_group_count = 5" not in hlo("cpu")
    assert "feature_group_count = 5" in hlo("cuda")
