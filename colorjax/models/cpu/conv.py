"""CPU forms of GroupNorm, instance norm, the 3x3 / 1x1 convs and the nearest-x2 upsampling conv.

Each function computes what the layer in `colorjax.models.layers` computes elsewhere (same
outputs and gradients, tests/test_norm_layers.py), in a form XLA:CPU runs fast; the reasons
and measurements are on each function.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from colorjax.models.cpu.shapes import NHWC, same_pads
from colorjax.parallel import sum_over_samples


def group_norm(
    x: jax.Array,
    offset: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    groups: int,
    epsilon: float,
) -> jax.Array:
    """GroupNorm of x + offset from per-channel sums, as one per-(N, C) multiply-add (f32 out).

    Why: XLA:CPU runs flax's reduction over the (N, H, W, G, C/G) view (a short inner axis)
    and the separate subtract/scale passes several times slower than PyTorch; summing over
    H, W with the channels innermost vectorises, the group sums then touch only (N, C), and
    the normalisation becomes a single fused `x * a + b`. The per-channel offset (the bias of
    the conv before the norm) is folded into the sums, so it never costs a pass over x.
    """
    n, h, w, c = x.shape
    xf = x.astype(jnp.float32)
    # sums of (x + o) and (x + o)^2 per (n, c), from those of x
    s1 = jnp.sum(xf, axis=(1, 2))
    s2 = jnp.sum(jnp.square(xf), axis=(1, 2)) + offset * (2.0 * s1 + h * w * offset)
    s1 = s1 + h * w * offset
    count = h * w * (c // groups)
    mean = s1.reshape(n, groups, -1).sum(-1) / count
    mean2 = s2.reshape(n, groups, -1).sum(-1) / count
    inv = jax.lax.rsqrt(jnp.maximum(0.0, mean2 - jnp.square(mean)) + epsilon)
    a = jnp.repeat(inv, c // groups, axis=-1) * scale
    b = bias + (offset - jnp.repeat(mean, c // groups, axis=-1)) * a
    return xf * a[:, None, None, :] + b[:, None, None, :]


def instance_norm(x: jax.Array, epsilon: float) -> jax.Array:
    """Parameter-free instance norm as `group_norm` with one group per channel (~1.4x faster)."""
    c = x.shape[-1]
    zeros = jnp.zeros((c,), jnp.float32)
    return group_norm(x, zeros, jnp.ones((c,), jnp.float32), zeros, c, epsilon)


def kernel_grad_per_sample(
    x: jax.Array,
    dy: jax.Array,
    window: tuple[int, int],
    padding: tuple,
    stride: int = 1,
    mesh: Mesh | None = None,
) -> jax.Array:
    """dk[a, b, i, o] = sum over n, h, w of x_padded[n, s*h+a, s*w+b, i] * dy[n, h, w, o], in f32.

    The kernel gradient of a correlation with this window, padding and stride s, one sample
    at a time (a scan; per device on `mesh`, see `sum_over_samples`): per sample a 'VALID'
    correlation of x^T (C_in, H', W', 1) with dy as the kernel (H, W, 1, C_out), dilated by s,
    so only a 2-D transpose of x and dy as it lies.
    Why: for the whole batch at once XLA:CPU transposes x and dy to put the batch innermost
    (and fuses the producer of x into that transpose) and runs a convolution that is up to 3x
    slower than PyTorch (32 channels, 64x64, batch 8) and very slow for few output channels;
    per sample the same FLOPs run near the conv library's speed.
    """
    del window  # implied by the shapes of x, dy and the padding; kept for the callers' clarity
    pad = (*padding, (0, 0))

    def one(xs: jax.Array, dys: jax.Array) -> jax.Array:
        xt = jnp.pad(xs, pad).transpose(2, 0, 1)[..., None]
        return jax.lax.conv_general_dilated(
            xt,
            dys[:, :, None, :],
            (1, 1),
            "VALID",
            rhs_dilation=(stride, stride),
            dimension_numbers=NHWC,
            preferred_element_type=jnp.float32,
        )

    return sum_over_samples(one, x, dy, mesh=mesh).transpose(1, 2, 0, 3)


def _conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """'SAME' convolution with this stride, as nn.Conv computes it."""
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME", dimension_numbers=NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_kg_per_sample(
    x: jax.Array, kernel: jax.Array, stride: int, mesh: Mesh | None
) -> jax.Array:
    """`_conv` whose kernel gradient is `kernel_grad_per_sample` on `mesh`."""
    return _conv(x, kernel, stride)


def _conv_kg_fwd(
    x: jax.Array, kernel: jax.Array, stride: int, mesh: Mesh | None
) -> tuple[jax.Array, tuple]:
    return _conv(x, kernel, stride), (x, kernel)


def _conv_kg_bwd(
    stride: int, mesh: Mesh | None, res: tuple, dy: jax.Array
) -> tuple[jax.Array, jax.Array]:
    x, kernel = res
    # The input gradient is an ordinary convolution on XLA:CPU; keep XLA's.
    (dx,) = jax.vjp(lambda v: _conv(v, kernel, stride), x)[1](dy)
    kh, kw = kernel.shape[:2]
    padding = same_pads(x.shape[1], kh, stride), same_pads(x.shape[2], kw, stride)
    dk = kernel_grad_per_sample(x, dy, (kh, kw), padding, stride, mesh)
    return dx, dk.astype(kernel.dtype)


_conv_kg_per_sample.defvjp(_conv_kg_fwd, _conv_kg_bwd)


def conv_same(x: jax.Array, kernel: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    """Stride-1 'SAME' conv with the per-sample kernel gradient (run per device on `mesh`)."""
    return _conv_kg_per_sample(x, kernel, 1, mesh)


def conv_s2(x: jax.Array, kernel: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    """Stride-2 'SAME' conv with the per-sample kernel gradient (run per device on `mesh`)."""
    return _conv_kg_per_sample(x, kernel, 2, mesh)


def _merged_taps(kernel: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """The 2-tap kernels along `axis` that a 3-tap kernel becomes on a nearest-x2 input.

    Output 2m reads upsampled rows 2m-1, 2m, 2m+1 = input rows m-1, m, m: taps (K0, K1+K2);
    output 2m+1 reads input rows m, m, m+1: taps (K0+K1, K2).
    """
    k0, k1, k2 = (jnp.take(kernel, i, axis=axis) for i in range(3))
    return jnp.stack([k0, k1 + k2], axis=axis), jnp.stack([k0 + k1, k2], axis=axis)


def upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Nearest x2 upsampling then a 3x3 'SAME' conv, as four 2x2 convs on the low-res input.

    Output phase (r, s) is a 2x2 correlation of x, padded (1-r, r) x (1-s, s), with the
    merged taps (`_merged_taps`); the phases are interleaved. Why: 16 taps at H x W instead
    of 9 at 2H x 2W (2.25x fewer FLOPs), no upsampled tensor, and no 2x2-block reduction
    for its gradient (slow on XLA:CPU).
    """
    rows = []
    for r, k_r in enumerate(_merged_taps(kernel, 0)):
        cols = []
        for s, k_rs in enumerate(_merged_taps(k_r, 1)):
            pad = ((1 - r, r), (1 - s, s))
            cols.append(jax.lax.conv_general_dilated(x, k_rs, (1, 1), pad, dimension_numbers=NHWC))
        rows.append(jnp.stack(cols, axis=3))  # (N, H, W, 2, C): column phase s
    y = jnp.stack(rows, axis=2)  # (N, H, 2, W, 2, C): row phase r
    n, h, _, w, _, c = y.shape
    return y.reshape(n, 2 * h, 2 * w, c)


def conv1x1(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 1x1 convolution as one (N*H*W, in) @ (in, out) matmul.

    Why: XLA:CPU computes a 1x1 conv's kernel gradient as a convolution over a batch-innermost
    transposed copy of the input (4.8 ms for 8x128x128x16 on one core); as a matmul the
    gradient needs no copy (1x1 conv 64 -> 313 at 32x16x16, forward + both gradients: 23.1 ms
    as a conv, 7.6 ms as a matmul).
    """
    n_in, n_out = kernel.shape[2:]
    y = x.reshape(-1, n_in) @ kernel.reshape(n_in, n_out)
    return y.reshape(*x.shape[:-1], n_out)
