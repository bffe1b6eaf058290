"""3x3 'SAME' convolutions (stride 1, dilation 1 or 2) as Winograd F(2x2, 3x3) matmuls on CPU.

Why: XLA:CPU runs a 3x3 conv with many channels on a small map (Zhang's 512 -> 512 convs at
H/8) through Eigen's spatial convolution at ~120 GFLOP/s on one core, well under PyTorch's
oneDNN kernel. Winograd's F(2x2, 3x3) computes each 2x2 output tile from a 4x4 input tile
with 16 elementwise products instead of 36, so the conv becomes 16 independent
(tiles, C_in) @ (C_in, C_out) matmuls with 2.25x fewer FLOPs, plus cheap linear transforms of
the input, the kernel and the output. Every step is linear, so autodiff gives the exact
gradients (of the same bilinear map) with no custom rule. Round-off: about 1e-6 relative in
float32 (the transforms only add, subtract and halve).

Dilation 2 (Zhang's blocks 5 and 6) is the same conv on each of the four space-to-batch
phases of the input: output pixel (2a + p, 2b + q) only reads input pixels of phase (p, q).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MIN_CHANNELS", "conv3x3"]

# Input channels from which the Winograd form beats XLA:CPU's conv. One pinned core, median ms,
# XLA conv -> Winograd (PyTorch eager): batch 1, 32x32, 512 -> 512: 41.6 -> 32.3 (27.6); dilated:
# 40.2 -> 30.1 (26.7); 256 -> 512: 17.8 -> 10.3 (14.4); 64x64 256 -> 256: 32.2 -> 33.6 (26.6);
# batch 8, 32x32 512 -> 512: 307 -> 210 (218); 64x64 256 -> 256: 371 -> 296 (263). Under 256
# channels the transforms outweigh the saved FLOPs (128 -> 128 at 128x128: 32.9 -> 50.9).
MIN_CHANNELS = 256

# F(2x2, 3x3) (Lavin & Gray 2016) for a correlation: Y = A^T [(G g G^T) * (B^T d B)] A.
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
# The kernel transform of all 16 (row, column) pairs at once: (16, 9), exact in float32.
_GG = np.kron(_G, _G)
_AA = np.kron(_AT, _AT)  # (4, 16): output phase (r, s) from the 16 products


def _bt(d0: jax.Array, d1: jax.Array, d2: jax.Array, d3: jax.Array) -> tuple[jax.Array, ...]:
    """B^T applied along one axis to four input rows (or columns) of a tile."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _input_tiles(x: jax.Array, th: int, tw: int) -> jax.Array:
    """B^T d B for every 4x4 tile (stride 2) of x padded by 1: (16, N * th * tw, C).

    The tiles are read as 2x2 phases of x padded by 2, so every slice is contiguous along the
    channels and no overlapping 4x4 windows are materialised.
    """
    n, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (2, 2 + 2 * th - h), (2, 2 + 2 * tw - w), (0, 0)))
    phases = xp.reshape(n, th + 2, 2, tw + 2, 2, c)
    # Row a of tile i (padding 1) is row 2i + 1 + a of the padding-2 input: (offset, phase).
    taps = ((0, 1), (1, 0), (1, 1), (2, 0))
    rows = _bt(*(phases[:, o : o + th, p] for o, p in taps))  # (N, th, tw + 2, 2, C) each
    tiles = [t for r in rows for t in _bt(*(r[:, :, o : o + tw, p] for o, p in taps))]
    return jnp.stack(tiles, 0).reshape(16, n * th * tw, c)


def _winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1, padding-1 3x3 correlation of NHWC x with an HWIO kernel, by F(2x2, 3x3)."""
    n, h, w, c = x.shape
    c_out = kernel.shape[-1]
    th, tw = -(-h // 2), -(-w // 2)
    v = _input_tiles(x, th, tw)
    u = jnp.einsum("kt,tio->kio", jnp.asarray(_GG, kernel.dtype), kernel.reshape(9, c, c_out))
    m = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))))  # (16, tiles, C_out)
    y = jnp.einsum("rk,kpo->rpo", jnp.asarray(_AA, m.dtype), m)  # (4, tiles, C_out)
    y = y.reshape(2, 2, n, th, tw, c_out).transpose(2, 3, 0, 4, 1, 5)
    return y.reshape(n, 2 * th, 2 * tw, c_out)[:, :h, :w]


def conv3x3(x: jax.Array, kernel: jax.Array, dilation: int = 1) -> jax.Array:
    """3x3 conv, stride 1, zero padding = dilation (output the input's size); dilation 1 or 2."""
    if dilation == 1:
        return _winograd(x, kernel)
    if dilation != 2:
        raise ValueError(f"conv3x3 handles dilation 1 or 2, got {dilation}")
    n, h, w, c = x.shape
    hp, wp = h + h % 2, w + w % 2
    # Zero rows / columns past the edge are exactly the dilated conv's own zero padding.
    xp = jnp.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
    batch = xp.reshape(n, hp // 2, 2, wp // 2, 2, c).transpose(2, 4, 0, 1, 3, 5)
    y = _winograd(batch.reshape(4 * n, hp // 2, wp // 2, c), kernel)
    c_out = y.shape[-1]
    y = y.reshape(2, 2, n, hp // 2, wp // 2, c_out).transpose(2, 3, 0, 4, 1, 5)
    return y.reshape(n, hp, wp, c_out)[:, :h, :w]
