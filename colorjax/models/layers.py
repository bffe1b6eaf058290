"""Shared building blocks of the networks: input checks, norms, convs, resizing (layer interface).

The layers own their parameters and reference math; `jax.lax.platform_dependent` swaps in the
XLA:CPU forms of `colorjax.models.cpu` on CPU only (same outputs and gradients).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from colorjax.errors import ConfigError, InputShapeError
from colorjax.models.cpu import conv as cpu_conv
from colorjax.models.cpu import depthwise as cpu_depthwise
from colorjax.models.cpu.shapes import NHWC

Dtype = Any

UPSAMPLE_METHODS = ("nearest", "bilinear")


def check_l_input(l_norm: Any, stride: int, model_name: str, min_size: int = 1) -> None:
    """Raise InputShapeError unless `l_norm` is float (N, H, W, 1) with H, W multiples of stride."""
    shape = getattr(l_norm, "shape", None)
    if shape is None or len(shape) != 4:
        got = "no shape" if shape is None else f"shape {tuple(shape)}"
        raise InputShapeError(
            f"{model_name} expects normalised lightness L of shape (N, H, W, 1), got {got}; "
            "add the missing batch or channel axis (e.g. `l[None]` or `l[..., None]`)."
        )
    # Dimensions stay as given: symbolic ones (jax.export's shape polymorphism, e.g. 32*h)
    # are decided by their own constraints in the comparisons below.
    _, h, w, c = shape
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


# flax's InstanceNorm epsilon, which the GAN has always used (PyTorch's InstanceNorm2d: 1e-5).
INSTANCE_NORM_EPSILON = 1e-6


def _no_affine(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(offset 0, scale 1, bias 0) per channel: GroupNorm's extra inputs for an instance norm."""
    c = x.shape[-1]
    zeros = jnp.zeros((c,), jnp.float32)
    return zeros, jnp.ones((c,), jnp.float32), zeros


def _instance_norm_reference(x: jax.Array, epsilon: float) -> jax.Array:
    """nn.InstanceNorm(use_scale=False, use_bias=False): GroupNorm with one group per channel."""
    return _group_norm_grouped(x, *_no_affine(x), x.shape[-1], epsilon)


def instance_norm(
    x: jax.Array, epsilon: float = INSTANCE_NORM_EPSILON, dtype: Dtype | None = None
) -> jax.Array:
    """Instance norm without parameters over NHWC (pix2pix's InstanceNorm2d(affine=False)).

    Outputs equal flax's nn.InstanceNorm(use_scale=False, use_bias=False) (which has no
    parameters either, so parameter trees are unchanged); on CPU from per-channel sums
    (`colorjax.models.cpu.conv.instance_norm`, ~1.4x faster).
    """
    y = jax.lax.platform_dependent(
        x,
        cpu=lambda v: cpu_conv.instance_norm(v, epsilon),
        default=lambda v: _instance_norm_reference(v, epsilon),
    )
    return y.astype(dtype if dtype is not None else x.dtype)


class GroupNorm(nn.Module):
    """nn.GroupNorm over NHWC with the same parameters ('scale', 'bias' (C,)) and outputs.

    On CPU it runs as `cpu.conv.group_norm` (several times faster on XLA:CPU); elsewhere as
    flax computes it. Statistics are float32; the output has `dtype` (default: x's).
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
            cpu=form(cpu_conv.group_norm),
            default=form(_group_norm_grouped),
        )
        return y.astype(self.dtype if self.dtype is not None else x.dtype)


def _conv_lax(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """'SAME' convolution with this stride, as nn.Conv computes it."""
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME", dimension_numbers=NHWC)


def _conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'SAME' convolution, as nn.Conv computes it."""
    return _conv_lax(x, kernel, 1)


def _conv_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-2 'SAME' convolution, as nn.Conv computes it."""
    return _conv_lax(x, kernel, 2)


def _upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Nearest x2 upsampling, then the stride-1 'SAME' conv (as ColorNet's decoder wrote it)."""
    return _conv_same(upsample2x(x, "nearest"), kernel)


class _ConvWithBias(nn.Module):
    """nn.Conv's parameters ('kernel', 'bias') and convolution, the bias returned, not added.

    The caller (ConvNormAct) folds the bias into the GroupNorm statistics, which saves a pass
    over the activation forward and a reduction backward; the parameter tree is nn.Conv's.
    On CPU the 3x3 convs' kernel gradients are per-sample loops (`cpu.conv.conv_same`), run
    per device on `mesh` (see ConvNormAct).
    """

    features: int
    kernel: int = 3
    stride: int = 1
    dtype: Dtype = jnp.float32
    upsample_input: bool = False
    mesh: Mesh | None = None

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
                x, kernel, cpu=cpu_conv.upsample_conv, default=_upsample_conv
            )
        elif self.stride == 1 and self.kernel > 1:
            cpu = functools.partial(cpu_conv.conv_same, mesh=self.mesh)
            y = jax.lax.platform_dependent(x, kernel, cpu=cpu, default=_conv_same)
        elif self.stride == 2 and self.kernel > 1:
            cpu = functools.partial(cpu_conv.conv_s2, mesh=self.mesh)
            y = jax.lax.platform_dependent(x, kernel, cpu=cpu, default=_conv_s2)
        else:
            y = jax.lax.conv_general_dilated(
                x, kernel, (self.stride, self.stride), "SAME", dimension_numbers=NHWC
            )
        return y, bias


class ConvNormAct(nn.Module):
    """3x3 (by default) convolution, GroupNorm and ReLU; stateless, so safe under pure apply.

    Parameters and outputs are those of nn.Conv(padding='SAME') -> nn.GroupNorm -> relu;
    with `upsample_input` the input is first doubled by nearest-neighbour upsampling (on CPU
    computed at the input's resolution, see `cpu.conv.upsample_conv`).

    `mesh` (a jax.sharding.Mesh or None) is the mesh the training step shards the batch over;
    on CPU the per-sample kernel-gradient loops run per device on it (None: one loop over the
    whole batch). It changes neither parameters nor outputs.
    """

    features: int
    kernel: int = 3
    stride: int = 1
    dtype: Dtype = jnp.float32
    upsample_input: bool = False
    mesh: Mesh | None = None

    @nn.compact
    def __call__(self, x: jax.Array, film: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
        """Apply conv -> GroupNorm -> ReLU; `film` = (scale, shift), each (N, C), modulates the
        normalised features as x * (1 + scale) + shift before the ReLU (FiLM, Perez et al. 2018).
        """
        x, conv_bias = _ConvWithBias(
            self.features,
            self.kernel,
            self.stride,
            dtype=self.dtype,
            upsample_input=self.upsample_input,
            mesh=self.mesh,
            name="conv",
        )(x)
        x = GroupNorm(num_groups(self.features), dtype=self.dtype, name="norm")(x, conv_bias)
        if film is not None:
            # After the norm: a per-image constant added before it would be largely subtracted.
            scale, shift = (f[:, None, None, :].astype(x.dtype) for f in film)
            x = x * (1 + scale) + shift
        return nn.relu(x)


def _conv1x1_lax(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 1x1 convolution as nn.Conv computes it."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=NHWC)


class Conv1x1(nn.Module):
    """1x1 conv, a drop-in for nn.Conv(features, (1, 1)): same parameters, init and outputs.

    On CPU it runs as a matmul over the channel axis (`cpu.conv.conv1x1`); elsewhere it stays
    XLA's convolution.
    """

    features: int
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the 1x1 conv (and the bias)."""
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (1, 1, x.shape[-1], self.features),
            self.param_dtype,
        )
        bias = None
        if self.use_bias:
            bias = self.param(
                "bias", nn.initializers.zeros_init(), (self.features,), self.param_dtype
            )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jax.lax.platform_dependent(x, kernel, cpu=cpu_conv.conv1x1, default=_conv1x1_lax)
        return y if bias is None else y + bias


def _depthwise_lax(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """XLA's grouped convolution, one channel per group, 'SAME' padding (the reference)."""
    return jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        (stride, stride),
        "SAME",
        dimension_numbers=NHWC,
        feature_group_count=x.shape[-1],
    )


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Depthwise conv of x (N,H,W,C) with kernel (k,k,1,C), 'SAME' padding, stride 1 or 2.

    On CPU as k*k shifted multiply-adds with written-out gradients (`cpu.depthwise`: XLA:CPU
    runs a one-channel-per-group convolution as a naive loop); elsewhere XLA's own.
    """
    return jax.lax.platform_dependent(
        x,
        kernel,
        cpu=lambda a, w: cpu_depthwise.depthwise(a, w, stride),
        default=lambda a, w: _depthwise_lax(a, w, stride),
    )


def conv_receptive_field(layers: list[tuple[int, int]]) -> int:
    """Receptive field in input pixels of one output unit of a stack of (kernel, stride) convs."""
    field = 1
    # walk from the output back to the input: each layer widens the field by (k-1) * its input step
    for kernel, stride in reversed(layers):
        field = (field - 1) * stride + kernel
    return field
