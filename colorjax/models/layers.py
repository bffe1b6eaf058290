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


class ConvNormAct(nn.Module):
    """3x3 (by default) convolution, GroupNorm and ReLU; stateless, so safe under pure apply."""

    features: int
    kernel: int = 3
    stride: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply conv -> GroupNorm -> ReLU."""
        x = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            strides=(self.stride, self.stride),
            padding="SAME",
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="conv",
        )(x)
        x = nn.GroupNorm(
            num_groups=num_groups(self.features),
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="norm",
        )(x)
        return nn.relu(x)


def conv_receptive_field(layers: list[tuple[int, int]]) -> int:
    """Receptive field in input pixels of one output unit of a stack of (kernel, stride) convs."""
    field = 1
    # walk from the output back to the input: each layer widens the field by (k-1) * its input step
    for kernel, stride in reversed(layers):
        field = (field - 1) * stride + kernel
    return field
