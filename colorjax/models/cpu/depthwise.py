"""CPU form of the depthwise kxk conv ('SAME' padding, stride 1 or 2): shifted multiply-adds.

XLA:CPU runs a grouped convolution with one channel per group as a naive loop: EfficientNet-
Lite2's 3x3 depthwise conv on a 16 x 64 x 64 x 96 map takes 171 ms forward and 619 ms for both
gradients, against 8.5 ms forward as k*k shifted multiply-adds (one process, 2 cores). Here the
forward pass is those multiply-adds and the backward pass is written out: the kernel gradient
is one reduction per tap, the input gradient the same multiply-adds of the output gradient
(dilated, for stride 2) with the flipped kernel. Outputs and gradients equal XLA's grouped
convolution (`colorjax.models.layers.depthwise_conv`'s reference; tests/test_depthwise.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from colorjax.models.cpu.shapes import same_pads


def _taps(xp: jax.Array, kernel: jax.Array, out_hw: tuple[int, int], stride: int) -> jax.Array:
    """sum over taps (i, j) of xp[:, i::stride, j::stride][:out_hw] * kernel[i, j] (N,Ho,Wo,C)."""
    k = kernel.shape[0]
    ho, wo = out_hw
    n, c = xp.shape[0], xp.shape[-1]
    out = None
    for i in range(k):
        for j in range(k):
            window = jax.lax.slice(
                xp,
                (0, i, j, 0),
                (n, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c),
                (1, stride, stride, 1),
            )
            term = window * kernel[i, j, 0].astype(xp.dtype)
            out = term if out is None else out + term
    return out


def _pad_input(x: jax.Array, k: int, stride: int) -> tuple[jax.Array, tuple[int, int]]:
    """x padded with zeros as 'SAME' pads it, and the output's (height, width)."""
    (ph, pw) = (same_pads(x.shape[1], k, stride), same_pads(x.shape[2], k, stride))
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    return xp, (-(-x.shape[1] // stride), -(-x.shape[2] // stride))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Depthwise 'SAME' conv of x (N,H,W,C) with kernel (k,k,1,C) as k*k shifted multiply-adds."""
    xp, out_hw = _pad_input(x, kernel.shape[0], stride)
    return _taps(xp, kernel, out_hw, stride)


def _shifted_fwd(x: jax.Array, kernel: jax.Array, stride: int) -> tuple[jax.Array, tuple]:
    """Forward pass keeping the inputs for the backward pass."""
    return depthwise(x, kernel, stride), (x, kernel)


def _shifted_bwd(stride: int, res: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Kernel gradient: one reduction per tap; input gradient: the flipped kernel's taps."""
    x, kernel = res
    k = kernel.shape[0]
    xp, (ho, wo) = _pad_input(x, k, stride)
    n, hp, wp, c = xp.shape
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    g = g.astype(x.dtype)
    taps = []
    for i in range(k):
        for j in range(k):
            window = jax.lax.slice(
                xp, (0, i, j, 0), (n, i + span_h, j + span_w, c), (1, stride, stride, 1)
            )
            taps.append(jnp.sum(window * g, axis=(0, 1, 2), dtype=jnp.float32))
    dkernel = jnp.stack(taps).reshape(k, k, 1, c).astype(kernel.dtype)
    # dxp[p] = sum_i g_dilated[p - i] * kernel[i]: a stride-1 correlation of g dilated by the
    # stride and padded by k - 1 (up to the padded input's size) with the flipped kernel.
    g_full = jax.lax.pad(
        g,
        jnp.zeros((), g.dtype),
        (
            (0, 0, 0),
            (k - 1, hp - span_h, stride - 1),
            (k - 1, wp - span_w, stride - 1),
            (0, 0, 0),
        ),
    )
    dxp = _taps(g_full, kernel[::-1, ::-1], (hp, wp), 1)
    (ph, _), (pw, _) = same_pads(x.shape[1], k, stride), same_pads(x.shape[2], k, stride)
    dx = dxp[:, ph : ph + x.shape[1], pw : pw + x.shape[2], :]
    return dx.astype(x.dtype), dkernel


depthwise.defvjp(_shifted_fwd, _shifted_bwd)
