"""Shared building blocks for the colorization networks: input checks, norms, convs, resizing."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.errors import ConfigError, InputShapeError

Dtype = Any

UPSAMPLE_METHODS = ("nearest", "bilinear")
# Dimension numbers of every convolution here: NHWC activations, HWIO kernels.
_NHWC = ("NHWC", "HWIO", "NHWC")


def check_l_input(l_norm: Any, stride: int, model_name: str, min_size: int = 1) -> None:
    """Raise InputShapeError unless `l_norm` is float (N, H, W, 1) with H, W multiples of stride."""
    shape = getattr(l_norm, "shape", None)
    if shape is None or len(shape) != 4:
        got = "no shape" if shape is None else f"shape {tuple(shape)}"
        raise InputShapeError(
            f"{model_name} expects normalised lightness L of shape (N, H, W, 1), got {got}; "
            "add the missing batch or channel axis (e.g. `l[None]` or `l[..., None]`)."
        )
    n, h, w, c = (int(d) for d in shape)
    if c != 1:
        raise InputShapeError(
            f"{model_name} expects one channel (L) in the last axis, i.e. (N, H, W, 1), got "
            f"shape {tuple(shape)}; pass only the L channel, e.g. from "
            "colorjax.color.rgb_uint8_to_lab_inputs(rgb)[0]."
        )
    if not jnp.issubdtype(jnp.dtype(l_norm.dtype), jnp.floating):
        raise InputShapeError(
            f"{model_name} expects floating-point normalised L in [-1, 1], got dtype "
            f"{jnp.dtype(l_norm.dtype).name}; convert with colorjax.color.normalize_l(L)."
        )
    smallest = max(stride, min_size)
    if h % stride or w % stride or h < smallest or w < smallest:
        fix_h = max(smallest, math.ceil(max(h, 1) / stride) * stride)
        fix_w = max(smallest, math.ceil(max(w, 1) / stride) * stride)
        raise InputShapeError(
            f"{model_name} needs height and width that are positive multiples of {stride} "
            f"(at least {smallest}), got {h}x{w} in shape {tuple(shape)}; pad or resize to a "
            f"multiple of {stride} (e.g. {fix_h}x{fix_w})."
        )


def check_ab_input(ab_norm: Any, l_shape: tuple[int, ...], model_name: str) -> None:
    """Raise InputShapeError unless `ab_norm` is (N, H, W, 2) matching the L input."""
    shape = getattr(ab_norm, "shape", None)
    expected = (*tuple(l_shape[:3]), 2)
    if shape is None or tuple(int(d) for d in shape) != expected:
        got = "no shape" if shape is None else f"shape {tuple(shape)}"
        raise InputShapeError(
            f"{model_name} expects normalised ab of shape {expected} (same N, H, W as L, "
            f"2 channels), got {got}; pass the ab channels for the same images as L."
        )


def check_upsample_method(method: str) -> None:
    """Raise ConfigError unless `method` names a supported upsampling method."""
    if method not in UPSAMPLE_METHODS:
        raise ConfigError(
            f"unknown upsample method {method!r}; choose one of {', '.join(UPSAMPLE_METHODS)}."
        )


def num_groups(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """Pick a GroupNorm group count that divides `channels` with groups of >= min_group_size."""
    groups = max(1, min(max_groups, channels // min_group_size))
    while channels % groups:
        groups -= 1
    return groups


def upsample2x(x: jax.Array, method: str = "nearest") -> jax.Array:
    """Double the spatial size of an NHWC tensor (resize, not transposed conv: no checkerboard)."""
    if method == "nearest":
        # repeat is exact nearest-neighbour doubling and cheaper than a general resize
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    n, h, w, c = x.shape
    return jax.image.resize(x, (n, 2 * h, 2 * w, c), method=method).astype(x.dtype)


def resize_to(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinearly resize (N, h, w, C) to (N, *size, C); a no-op when it is already that size.

    Quarter-resolution heads (``head_stride`` 4) decode ab at H/4: the annealed mean is taken
    before upsampling, as in Zhang et al., so a blend of two bins is never re-blended per pixel.
    """
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    n, _, _, c = x.shape
    return jax.image.resize(x, (n, int(size[0]), int(size[1]), c), method="bilinear")


# flax's GroupNorm epsilon; GroupNorm below must match nn.GroupNorm's outputs (bundled weights).
GROUP_NORM_EPSILON = 1e-6


def _group_norm_grouped(
    x: jax.Array,
    offset: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    groups: int,
    epsilon: float,
) -> jax.Array:
    """GroupNorm of x + offset as nn.Conv's bias add then nn.GroupNorm compute it (f32 stats)."""
    x = x + offset.astype(x.dtype)
    n, h, w, c = x.shape
    xg = x.astype(jnp.float32).reshape(n, h, w, groups, c // groups)
    mean = jnp.mean(xg, axis=(1, 2, 4))
    var = jnp.maximum(0.0, jnp.mean(jnp.square(xg), axis=(1, 2, 4)) - jnp.square(mean))
    mean = jnp.repeat(mean, c // groups, axis=-1)[:, None, None, :]
    var = jnp.repeat(var, c // groups, axis=-1)[:, None, None, :]
    return (x - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias


def _group_norm_per_channel(
    x: jax.Array,
    offset: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    groups: int,
    epsilon: float,
) -> jax.Array:
    """The same GroupNorm of x + offset from per-channel sums, as one per-(N, C) multiply-add.

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


class GroupNorm(nn.Module):
    """nn.GroupNorm over NHWC with the same parameters ('scale', 'bias' (C,)) and outputs.

    On CPU it runs as `_group_norm_per_channel` (several times faster on XLA:CPU); elsewhere
    as flax computes it. Statistics are float32; the output has `dtype` (default: x's).
    """

    num_groups: int
    epsilon: float = GROUP_NORM_EPSILON
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, offset: jax.Array | None = None) -> jax.Array:
        """Normalise x + offset (per channel; default 0) per (sample, group), scale and shift."""
        c = x.shape[-1]
        if c % self.num_groups:
            raise ConfigError(
                f"GroupNorm: {self.num_groups} groups do not divide {c} channels; "
                "pick a group count from colorjax.models.layers.num_groups(channels)."
            )
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
        scale, bias = scale.astype(jnp.float32), bias.astype(jnp.float32)
        offset = jnp.zeros((c,), jnp.float32) if offset is None else offset

        def form(fn: Any) -> Any:
            return lambda *args: fn(*args, self.num_groups, self.epsilon)

        y = jax.lax.platform_dependent(
            x,
            offset,
            scale,
            bias,
            cpu=form(_group_norm_per_channel),
            default=form(_group_norm_grouped),
        )
        return y.astype(self.dtype if self.dtype is not None else x.dtype)


def _conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'SAME' convolution, as nn.Conv computes it."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_NHWC)


def _kernel_grad_per_sample(
    x: jax.Array, dy: jax.Array, window: tuple[int, int], padding: tuple
) -> jax.Array:
    """dk[a, b, i, o] = sum over n, h, w of x_padded[n, h+a, w+b, i] * dy[n, h, w, o], in f32.

    The kernel gradient of a stride-1 correlation with this window and padding, one sample
    at a time (a scan): per sample a 'VALID' correlation of x^T (C_in, H', W', 1) with dy as
    the kernel (H, W, 1, C_out), so only a 2-D transpose of x and dy as it lies. Why: for the
    whole batch at once XLA:CPU transposes x and dy to put the batch innermost and runs a
    convolution that is up to 3x slower than PyTorch (32 channels, 64x64, batch 8) and very
    slow for few output channels; per sample the same FLOPs run near the conv library's speed.
    """
    pad = (*padding, (0, 0))

    def one(acc: jax.Array, sample: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        xs, dys = sample
        xt = jnp.pad(xs, pad).transpose(2, 0, 1)[..., None]
        dk = jax.lax.conv_general_dilated(
            xt,
            dys[:, :, None, :],
            (1, 1),
            "VALID",
            dimension_numbers=_NHWC,
            preferred_element_type=jnp.float32,
        )
        return acc + dk, None

    acc = jnp.zeros((x.shape[-1], *window, dy.shape[-1]), jnp.float32)
    acc, _ = jax.lax.scan(one, acc, (x, dy))
    return acc.transpose(1, 2, 0, 3)


@jax.custom_vjp
def _conv_same_cpu(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`_conv_same` whose kernel gradient is `_kernel_grad_per_sample` (for XLA:CPU)."""
    return _conv_same(x, kernel)


def _conv_same_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple]:
    return _conv_same(x, kernel), (x, kernel)


def _conv_same_bwd(res: tuple, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = res
    # The input gradient is an ordinary convolution on XLA:CPU; keep XLA's.
    (dx,) = jax.vjp(lambda v: _conv_same(v, kernel), x)[1](dy)
    kh, kw = kernel.shape[:2]
    same = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
    dk = _kernel_grad_per_sample(x, dy, (kh, kw), same)
    return dx, dk.astype(kernel.dtype)


_conv_same_cpu.defvjp(_conv_same_fwd, _conv_same_bwd)


def _upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Nearest x2 upsampling, then the stride-1 'SAME' conv (as ColorNet's decoder wrote it)."""
    return _conv_same(upsample2x(x, "nearest"), kernel)


def _merged_taps(kernel: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """The 2-tap kernels along `axis` that a 3-tap kernel becomes on a nearest-x2 input.

    Output 2m reads upsampled rows 2m-1, 2m, 2m+1 = input rows m-1, m, m: taps (K0, K1+K2);
    output 2m+1 reads input rows m, m, m+1: taps (K0+K1, K2).
    """
    k0, k1, k2 = (jnp.take(kernel, i, axis=axis) for i in range(3))
    return jnp.stack([k0, k1 + k2], axis=axis), jnp.stack([k0 + k1, k2], axis=axis)


def _upsample_conv_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`_upsample_conv` of a 3x3 kernel as four 2x2 convs on the low-resolution input.

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
            cols.append(jax.lax.conv_general_dilated(x, k_rs, (1, 1), pad, dimension_numbers=_NHWC))
        rows.append(jnp.stack(cols, axis=3))  # (N, H, W, 2, C): column phase s
    y = jnp.stack(rows, axis=2)  # (N, H, 2, W, 2, C): row phase r
    n, h, _, w, _, c = y.shape
    return y.reshape(n, 2 * h, 2 * w, c)


class _ConvWithBias(nn.Module):
    """nn.Conv's parameters ('kernel', 'bias') and convolution, the bias returned, not added.

    The caller (ConvNormAct) folds the bias into the GroupNorm statistics, which saves a pass
    over the activation forward and a reduction backward; the parameter tree is nn.Conv's.
    """

    features: int
    kernel: int = 3
    stride: int = 1
    dtype: Dtype = jnp.float32
    upsample_input: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(conv(x) without bias, bias), as nn.Conv(padding='SAME') with promoted dtypes."""
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (self.kernel, self.kernel, x.shape[-1], self.features),
            jnp.float32,
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if self.upsample_input:
            if (self.kernel, self.stride) != (3, 1):
                raise ConfigError(
                    "ConvNormAct(upsample_input=True) supports only 3x3 stride-1 convs, got "
                    f"kernel {self.kernel}, stride {self.stride}."
                )
            y = jax.lax.platform_dependent(
                x, kernel, cpu=_upsample_conv_phases, default=_upsample_conv
            )
        elif self.stride == 1 and self.kernel > 1:
            y = jax.lax.platform_dependent(x, kernel, cpu=_conv_same_cpu, default=_conv_same)
        else:
            y = jax.lax.conv_general_dilated(
                x, kernel, (self.stride, self.stride), "SAME", dimension_numbers=_NHWC
            )
        return y, bias


class ConvNormAct(nn.Module):
    """3x3 (by default) convolution, GroupNorm and ReLU; stateless, so safe under pure apply.

    Parameters and outputs are those of nn.Conv(padding='SAME') -> nn.GroupNorm -> relu;
    with `upsample_input` the input is first doubled by nearest-neighbour upsampling (on CPU
    computed at the input's resolution, see `_upsample_conv_phases`).
    """

    features: int
    kernel: int = 3
    stride: int = 1
    dtype: Dtype = jnp.float32
    upsample_input: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply conv -> GroupNorm -> ReLU."""
        x, conv_bias = _ConvWithBias(
            self.features,
            self.kernel,
            self.stride,
            dtype=self.dtype,
            upsample_input=self.upsample_input,
            name="conv",
        )(x)
        x = GroupNorm(num_groups(self.features), dtype=self.dtype, name="norm")(x, conv_bias)
        return nn.relu(x)


def conv_receptive_field(layers: list[tuple[int, int]]) -> int:
    """Receptive field in input pixels of one output unit of a stack of (kernel, stride) convs."""
    field = 1
    # walk from the output back to the input: each layer widens the field by (k-1) * its input step
    for kernel, stride in reversed(layers):
        field = (field - 1) * stride + kernel
    return field


# Transposed-conv padding of the U-Net decoder: with a 4x4 kernel and stride 2 it gives an
# exact 2x output, as PyTorch's ConvTranspose2d(k=4, s=2, p=1).
UPCONV_PADDING = ((2, 2), (2, 2))


def _upconv_lax(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The 4x4 stride-2 transposed conv exactly as flax's nn.ConvTranspose computes it."""
    return jax.lax.conv_transpose(
        x, kernel, (2, 2), UPCONV_PADDING, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _upconv_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same transposed conv as four stride-1 2x2 convs, one per output phase, interleaved.

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
            cols.append(
                jax.lax.conv_general_dilated(
                    x,
                    kernel[r::2, s::2],
                    (1, 1),
                    ((1 - r, r), (1 - s, s)),
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                )
            )
        rows.append(jnp.stack(cols, axis=3))  # (N, H, W, 2, C): column phase s
    y = jnp.stack(rows, axis=2)  # (N, H, 2, W, 2, C): row phase r
    n, h, _, w, _, c = y.shape
    return y.reshape(n, 2 * h, 2 * w, c)


def _conv4x4_params(module: nn.Module, x: jax.Array) -> tuple[jax.Array, ...]:
    """(x, kernel, bias) of a 4x4 conv layer, named and initialised as flax's, dtype-promoted."""
    kernel = module.param(
        "kernel", module.kernel_init, (4, 4, x.shape[-1], module.features), module.param_dtype
    )
    bias = module.param("bias", module.bias_init, (module.features,), module.param_dtype)
    return nn.dtypes.promote_dtype(x, kernel, bias, dtype=module.dtype)


class _PhaseConv4x4(nn.Module):
    """A 4x4 conv layer whose CPU lowering is a phase form; subclasses name the two lowerings.

    Parameters are flax's ('kernel' (4, 4, in, out), 'bias' (out,)); `platform_dependent` is
    resolved when lowering for one platform, so each backend compiles only its branch.
    """

    features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()

    @staticmethod
    def cpu_form(x: jax.Array, kernel: jax.Array) -> jax.Array:
        """The convolution as run on CPU."""
        raise NotImplementedError

    @staticmethod
    def default_form(x: jax.Array, kernel: jax.Array) -> jax.Array:
        """The convolution as run elsewhere (XLA's own; cuDNN on GPU)."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the conv (CPU: phase form) and add the bias."""
        x, kernel, bias = _conv4x4_params(self, x)
        y = jax.lax.platform_dependent(x, kernel, cpu=self.cpu_form, default=self.default_form)
        return y + bias.reshape((1, 1, 1, -1))


class UpConv(_PhaseConv4x4):
    """4x4 stride-2 transposed conv (exact 2x upsampling), a drop-in for nn.ConvTranspose.

    Same parameters ('kernel' (4, 4, in, out), 'bias' (out,)), initialisers and outputs as
    `nn.ConvTranspose(features, (4, 4), (2, 2), padding=UPCONV_PADDING)`, so weights saved
    from either load into the other. On CPU it runs as four output-phase convolutions
    (`_upconv_phases`); elsewhere it stays XLA's transposed convolution (cuDNN on GPU).
    """

    cpu_form = staticmethod(_upconv_phases)
    default_form = staticmethod(_upconv_lax)


# Padding of the 4x4 stride-2 encoder convs (U-Net down path, PatchGAN): exact 1/2 output.
DOWNCONV_PADDING = ((1, 1), (1, 1))


def _downconv_lax(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The 4x4 stride-2 conv exactly as flax's nn.Conv computes it."""
    return jax.lax.conv_general_dilated(
        x, kernel, (2, 2), DOWNCONV_PADDING, dimension_numbers=_NHWC
    )


def _downconv_input_grad(dy: jax.Array, kernel: jax.Array, height: int, width: int) -> jax.Array:
    """Gradient of `_downconv_lax` w.r.t. its input, as four stride-1 2x2 convs (one per phase).

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
            cols.append(jax.lax.conv_general_dilated(dy, k, (1, 1), pad, dimension_numbers=_NHWC))
        rows.append(jnp.stack(cols, axis=3))
    dx = jnp.stack(rows, axis=2)
    n, h, _, w, _, c = dx.shape
    return dx.reshape(n, 2 * h, 2 * w, c)[:, :height, :width]


@jax.custom_vjp
def _downconv_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`_downconv_lax` whose input gradient is computed by `_downconv_input_grad`."""
    return _downconv_lax(x, kernel)


def _downconv_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple]:
    return _downconv_lax(x, kernel), (x, kernel)


def _downconv_bwd(res: tuple, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = res
    dx = _downconv_input_grad(dy, kernel, x.shape[1], x.shape[2])
    # The kernel gradient is an ordinary (fast) convolution on XLA:CPU; keep XLA's.
    (dk,) = jax.vjp(lambda k: _downconv_lax(x, k), kernel)[1](dy)
    return dx.astype(x.dtype), dk


_downconv_phases.defvjp(_downconv_fwd, _downconv_bwd)

# Below this many input channels the CPU DownConv runs as a space-to-depth 2x2 conv.
_SPACE_TO_DEPTH_MAX_CHANNELS = 8


def _downconv_space_to_depth(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`_downconv_lax` as a stride-1 2x2 'VALID' conv of the space-to-depth input (4x channels).

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
    return jax.lax.conv_general_dilated(xs, k2, (1, 1), "VALID", dimension_numbers=_NHWC)


def _downconv_cpu(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The CPU DownConv: space-to-depth for narrow inputs, else the phase-split input gradient."""
    if x.shape[-1] < _SPACE_TO_DEPTH_MAX_CHANNELS:
        return _downconv_space_to_depth(x, kernel)
    return _downconv_phases(x, kernel)


class DownConv(_PhaseConv4x4):
    """4x4 stride-2 conv with padding 1 (exact 1/2 downsampling), a drop-in for nn.Conv.

    Same parameters, initialisers and outputs as
    `nn.Conv(features, (4, 4), (2, 2), padding=DOWNCONV_PADDING)`. On CPU it runs as a
    space-to-depth 2x2 conv for inputs of fewer than 8 channels (`_downconv_space_to_depth`),
    else with its input gradient as four output-phase convolutions (`_downconv_input_grad`);
    elsewhere XLA's own.
    """

    cpu_form = staticmethod(_downconv_cpu)
    default_form = staticmethod(_downconv_lax)
