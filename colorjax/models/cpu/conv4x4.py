"""CPU forms of the 4x4 convs of the U-Net and the PatchGAN (UpConv, DownConv, PatchConv).

XLA:CPU runs the kernel gradient of a stride-2 transposed conv (and the input gradient of a
stride-2 conv) as a naive loop; written as four stride-1 2x2 convs, one per output phase, the
same math runs on its fast convolution library. Kernel gradients of layers with few output
channels (the U-Net's ab output, the PatchGAN's logit) are tap-by-tap matmuls, one sample at a
time (per device on the training step's mesh). Each form equals the layer's reference form in
`colorjax.models.conv4x4` (outputs and gradients, tests/test_layers.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from colorjax.models.cpu.shapes import DOWNCONV_PADDING, NHWC, PATCHCONV_PADDING
from colorjax.parallel import sum_over_samples

# Layers with at most this many output channels get the tap-by-tap kernel gradient on CPU.
NARROW_MAX_FEATURES = 8
# Below this many input channels the CPU DownConv runs as a space-to-depth 2x2 conv.
SPACE_TO_DEPTH_MAX_CHANNELS = 8

Conv = Callable[[jax.Array, jax.Array], jax.Array]


def tap_grams(
    xp: jax.Array, g: jax.Array, shifts: list[tuple[int, int]], mesh: Mesh | None = None
) -> jax.Array:
    """Sum over samples of g[n]^T @ xp[n, u:u+h, v:v+w] per shift (u, v): (shifts, k, c), f32.

    g is (N, h, w, k), xp (N, H', W', c) with H' >= h + max u; the samples are summed per
    device on `mesh` (`sum_over_samples`). The kernel gradient of any stride-1 correlation is
    this with one shift per kernel tap. Why: XLA:CPU computes it as a convolution with dy as a
    window the size of the image and the batch as the feature axis, which for a few output
    channels runs at ~2-6 GFLOP/s (the U-Net's 32 -> 2 output layer at batch 4, 128 px:
    6.2 ms); one sample at a time as plain matmuls it takes 2.2 ms.
    """
    _, h, w, k = g.shape
    c = xp.shape[-1]

    def one(xs: jax.Array, gs: jax.Array) -> jax.Array:
        gt = gs.reshape(h * w, k).T  # (k, h*w) @ (h*w, c): the layout XLA:CPU's dot runs fast
        grams = [
            jnp.matmul(
                gt, xs[u : u + h, v : v + w].reshape(h * w, c), preferred_element_type=jnp.float32
            )
            for u, v in shifts
        ]
        return jnp.stack(grams)

    return sum_over_samples(one, xp, g, mesh=mesh)


def upconv_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The UpConv transposed conv as four stride-1 2x2 convs, one per output phase, interleaved.

    Output row 2m+r only sees input rows m-1+r and m+r through kernel rows r and r+2 (the
    input is dilated by 2 and padded by 2, kernel not flipped), so phase (r, s) is a plain
    2x2 correlation with kernel[r::2, s::2] over the input padded (1-r, r) x (1-s, s).
    Why: XLA:CPU turns the kernel gradient of the transposed form into a reversed-window
    convolution it runs as a naive loop (~2 GFLOP/s); the phase form's gradients are ordinary
    convolutions that go to the fast CPU conv library.
    """
    rows = []
    for r in (0, 1):
        cols = []
        for s in (0, 1):
            pad = ((1 - r, r), (1 - s, s))
            k = kernel[r::2, s::2]
            cols.append(jax.lax.conv_general_dilated(x, k, (1, 1), pad, dimension_numbers=NHWC))
        rows.append(jnp.stack(cols, axis=3))  # (N, H, W, 2, C): column phase s
    y = jnp.stack(rows, axis=2)  # (N, H, 2, W, 2, C): row phase r
    n, h, _, w, _, c = y.shape
    return y.reshape(n, 2 * h, 2 * w, c)


def upconv_kernel_grad(x: jax.Array, dy: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    """Kernel gradient of `upconv_phases` (4, 4, in, out) from tap grams, in f32.

    Kernel tap (r + 2a, s + 2b) feeds output phase (r, s) from the input shifted by
    (r + a, s + b) (the 1-padded input, as in `upconv_phases`), so the nine shifts' grams
    against all four phases of dy hold all sixteen taps.
    """
    n, h, w, c = x.shape
    o = dy.shape[-1]
    g = dy.reshape(n, h, 2, w, 2, o).transpose(0, 1, 3, 2, 4, 5).reshape(n, h, w, 4 * o)
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    grams = tap_grams(xp, g, [(u, v) for u in range(3) for v in range(3)], mesh)
    grams = grams.reshape(3, 3, 2, 2, o, c)  # (u, v, r, s, out, in)
    taps = [
        [grams[i % 2 + i // 2, j % 2 + j // 2, i % 2, j % 2].T for j in range(4)] for i in range(4)
    ]
    return jnp.stack([jnp.stack(row) for row in taps])


def _with_grads(
    conv: Conv, input_grad: Callable | None = None, kernel_grad: Callable | None = None
) -> Callable[[jax.Array, jax.Array, Mesh | None], jax.Array]:
    """`conv(x, kernel)` as fn(x, kernel, mesh) with its own gradients; None stays XLA's.

    input_grad(x, kernel, dy) -> dx and kernel_grad(x, dy, mesh) -> dk replace the ones
    XLA:CPU derives slowly for this layer (see the callers). The mesh (hashable, not
    differentiated) reaches the kernel gradient's per-sample loop.
    """

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
    def fn(x: jax.Array, kernel: jax.Array, mesh: Mesh | None) -> jax.Array:
        return conv(x, kernel)

    def fwd(x: jax.Array, kernel: jax.Array, mesh: Mesh | None) -> tuple[jax.Array, tuple]:
        return conv(x, kernel), (x, kernel)

    def bwd(mesh: Mesh | None, res: tuple, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, kernel = res
        if input_grad is None:
            (dx,) = jax.vjp(lambda v: conv(v, kernel), x)[1](dy)
        else:
            dx = input_grad(x, kernel, dy)
        if kernel_grad is None:
            (dk,) = jax.vjp(lambda k: conv(x, k), kernel)[1](dy)
        else:
            dk = kernel_grad(x, dy, mesh)
        return dx.astype(x.dtype), dk.astype(kernel.dtype)

    fn.defvjp(fwd, bwd)
    return fn


def _narrow_kernel_grad(
    conv: Conv, kernel_grad: Callable
) -> Callable[[jax.Array, jax.Array, Mesh | None], jax.Array]:
    """`conv`, with `kernel_grad` as its kernel gradient for layers with few output channels."""
    narrow = _with_grads(conv, kernel_grad=kernel_grad)

    def form(x: jax.Array, kernel: jax.Array, mesh: Mesh | None = None) -> jax.Array:
        if kernel.shape[-1] <= NARROW_MAX_FEATURES:
            return narrow(x, kernel, mesh)
        return conv(x, kernel)

    return form


# The CPU UpConv: the phase form, with tap grams as the kernel gradient for few outputs.
upconv = _narrow_kernel_grad(upconv_phases, upconv_kernel_grad)


def _downconv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The 4x4 stride-2 conv as nn.Conv computes it (the forward pass of the phase form)."""
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), DOWNCONV_PADDING, dimension_numbers=NHWC)


def downconv_input_grad(dy: jax.Array, kernel: jax.Array, height: int, width: int) -> jax.Array:
    """Gradient of the DownConv w.r.t. its input, as four stride-1 2x2 convs (one per phase).

    Input row 2m+r received output rows m-1+r and m+r through kernel rows 3-r and 1-r, so
    phase (r, s) correlates dy, padded (1-r, r) x (1-s, s), with kernel[3-r::-2, 3-s::-2]
    (channels swapped). Why: XLA:CPU computes this gradient as an input-dilated convolution,
    which is slow for small spatial sizes (~10x at 4x4).
    """
    kernel_t = jnp.swapaxes(kernel, 2, 3)  # (4, 4, out, in)
    # Odd input sizes: the last input row/column has one output row fewer; pad with zeros.
    half_h, half_w = -(-height // 2), -(-width // 2)
    dy = jnp.pad(dy, ((0, 0), (0, half_h - dy.shape[1]), (0, half_w - dy.shape[2]), (0, 0)))
    rows = []
    for r in (0, 1):
        cols = []
        for s in (0, 1):
            k = kernel_t[3 - r :: -2, 3 - s :: -2]
            pad = ((1 - r, r), (1 - s, s))
            cols.append(jax.lax.conv_general_dilated(dy, k, (1, 1), pad, dimension_numbers=NHWC))
        rows.append(jnp.stack(cols, axis=3))
    dx = jnp.stack(rows, axis=2)
    n, h, _, w, _, c = dx.shape
    return dx.reshape(n, 2 * h, 2 * w, c)[:, :height, :width]


# The DownConv with the phase-split input gradient; its kernel gradient is an ordinary (fast)
# convolution on XLA:CPU, so XLA's is kept.
_downconv_phases = _with_grads(
    _downconv,
    input_grad=lambda x, kernel, dy: downconv_input_grad(dy, kernel, x.shape[1], x.shape[2]),
)


def downconv_space_to_depth(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The DownConv as a stride-1 2x2 'VALID' conv of the space-to-depth input (4x channels).

    Output row m reads padded input rows 2m..2m+3, i.e. 2x2 blocks m and m+1: block (a, b)
    holds pixels (2a+r, 2b+s) as channels (r, s, c), and kernel[2a+r, 2b+s, c] weighs them.
    Odd sizes: the last padded row/column is never read, so pad only to an even size.
    Why: with 1-3 input channels (the U-Net's L input, the PatchGAN's (L, ab) pair) XLA:CPU's
    stride-2 conv and its gradients run far below the conv library's speed (batch 4, 128 px,
    3 -> 16 channels, forward + both gradients: 5.0 ms; this form 1.0 ms); with 16 or more
    channels this form is slower, so it is used for narrow inputs only.
    """
    n, h, w, c = x.shape
    out = kernel.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 1 - h % 2), (1, 1 - w % 2), (0, 0)))
    hb, wb = xp.shape[1] // 2, xp.shape[2] // 2
    xs = xp.reshape(n, hb, 2, wb, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, hb, wb, 4 * c)
    k2 = kernel.reshape(2, 2, 2, 2, c, out).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * c, out)
    return jax.lax.conv_general_dilated(xs, k2, (1, 1), "VALID", dimension_numbers=NHWC)


def downconv(x: jax.Array, kernel: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    """The CPU DownConv: space-to-depth for narrow inputs, else the phase-split input gradient.

    `mesh` is unused (no per-sample loop here); it keeps the three CPU forms one signature.
    """
    del mesh
    if x.shape[-1] < SPACE_TO_DEPTH_MAX_CHANNELS:
        return downconv_space_to_depth(x, kernel)
    return _downconv_phases(x, kernel, None)


def _patchconv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The 4x4 stride-1 conv as nn.Conv computes it (the forward pass of the CPU PatchConv)."""
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), PATCHCONV_PADDING, dimension_numbers=NHWC
    )


def patchconv_kernel_grad(x: jax.Array, dy: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    """Kernel gradient of the PatchConv (4, 4, in, out): one tap gram per kernel tap, f32."""
    xp = jnp.pad(x, ((0, 0), *PATCHCONV_PADDING, (0, 0)))
    grams = tap_grams(xp, dy, [(i, j) for i in range(4) for j in range(4)], mesh)
    return grams.reshape(4, 4, dy.shape[-1], x.shape[-1]).transpose(0, 1, 3, 2)


# The CPU PatchConv: tap grams as the kernel gradient for few outputs, else XLA's.
patchconv = _narrow_kernel_grad(_patchconv, patchconv_kernel_grad)
