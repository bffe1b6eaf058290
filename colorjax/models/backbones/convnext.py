"""ConvNeXt (Liu et al. 2022) as a pure Flax backbone: DDColor's encoder, four normed feature maps.

A kernel-4 stride-4 stem, then four stages of blocks (7x7 depthwise conv, LayerNorm, a 4x
pointwise MLP with exact GELU, a learned per-channel layer scale, a residual), a LayerNorm and
a 2x2 stride-2 conv between stages. DDColor's encoder reads each stage's output through an
extra LayerNorm (``norm0`` .. ``norm3``); those four maps, at strides 4, 8, 16 and 32, are
what this module returns. Parameter names mirror the PyTorch state dict of DDColor's
``ConvNeXt`` (``downsample_layers.{i}.{j}``, ``stages.{i}.{j}.dwconv``, ``norm{i}``), joined
with '_' (``downsample_layers_0_0``), so converting official weights is a rename and a
transpose (``state_dict_to_params``). Stochastic depth is left out: inference and fine-tuning
from the official weights do without it. Inputs are NHWC, already normalised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from colorjax.errors import ConfigError, WeightsError
from colorjax.models.layers import Dtype, depthwise_conv

# (blocks per stage, channels per stage) of the variants DDColor uses.
CONVNEXT_VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}
LN_EPS = 1e-6
FEATURE_STRIDES = (4, 8, 16, 32)


def _layer_norm(name: str, dtype: Dtype | None) -> nn.LayerNorm:
    """LayerNorm over channels, PyTorch's epsilon; 'scale'/'bias' are torch's weight/bias."""
    return nn.LayerNorm(epsilon=LN_EPS, dtype=dtype, name=name)


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> LayerNorm -> Dense 4C -> GELU -> Dense C -> x gamma, plus the input."""

    dim: int
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the block to NHWC x with `dim` channels."""
        kernel = self.param(
            "dwconv_kernel", nn.initializers.lecun_normal(), (7, 7, 1, self.dim), jnp.float32
        )
        bias = self.param("dwconv_bias", nn.initializers.zeros_init(), (self.dim,), jnp.float32)
        gamma = self.param("gamma", nn.initializers.constant(1e-6), (self.dim,), jnp.float32)
        dtype = self.dtype or x.dtype
        y = depthwise_conv(x.astype(dtype), kernel.astype(dtype), 1) + bias.astype(dtype)
        y = _layer_norm("norm", self.dtype)(y)
        y = nn.Dense(4 * self.dim, dtype=self.dtype, name="pwconv1")(y)
        y = jax.nn.gelu(y, approximate=False)  # torch's nn.GELU(): the exact erf form
        y = nn.Dense(self.dim, dtype=self.dtype, name="pwconv2")(y)
        return x + gamma.astype(y.dtype) * y


class ConvNeXt(nn.Module):
    """ConvNeXt-T or -L: normalised RGB (N, H, W, 3) -> four normed maps at strides 4-32.

    H and W must be multiples of 32.
    """

    variant: str = "tiny"
    dtype: Dtype | None = None

    @property
    def stride(self) -> int:
        """The input's height and width must be multiples of this."""
        return 32

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        """The outputs of norm0 .. norm3 (NHWC), as DDColor's encoder hooks read them."""
        if self.variant not in CONVNEXT_VARIANTS:
            raise ConfigError(
                f"unknown ConvNeXt variant {self.variant!r}; choose one of "
                f"{sorted(CONVNEXT_VARIANTS)}"
            )
        depths, dims = CONVNEXT_VARIANTS[self.variant]
        if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] % 32 or x.shape[2] % 32:
            raise ConfigError(
                f"ConvNeXt takes normalised RGB (N, H, W, 3) with H and W multiples of 32, got "
                f"shape {tuple(x.shape)}; resize or pad the input"
            )
        features = []
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            if i == 0:
                x = nn.Conv(
                    dim, (4, 4), (4, 4), "VALID", dtype=self.dtype, name="downsample_layers_0_0"
                )(x)
                x = _layer_norm("downsample_layers_0_1", self.dtype)(x)
            else:
                x = _layer_norm(f"downsample_layers_{i}_0", self.dtype)(x)
                x = nn.Conv(
                    dim, (2, 2), (2, 2), "VALID", dtype=self.dtype, name=f"downsample_layers_{i}_1"
                )(x)
            for j in range(depth):
                x = ConvNeXtBlock(dim, dtype=self.dtype, name=f"stages_{i}_{j}")(x)
            features.append(_layer_norm(f"norm{i}", self.dtype)(x))
        return features


# ------------------------------------------------------------------- official weights


def _convert(flax_name: str, value: np.ndarray) -> np.ndarray:
    """One tensor from PyTorch's layout to Flax's."""
    if value.ndim == 4:  # conv (out, in/groups, kh, kw) -> (kh, kw, in/groups, out)
        return np.transpose(value, (2, 3, 1, 0))
    if value.ndim == 2:  # Linear (out, in) -> Dense (in, out)
        return value.T
    return value


def _torch_name(path: tuple[str, ...]) -> str:
    """The PyTorch state-dict key of a Flax parameter path of ConvNeXt."""
    *modules, leaf = path
    if leaf.startswith("dwconv_"):  # the block's depthwise conv, held as raw params
        modules, leaf = [*modules, "dwconv"], leaf.removeprefix("dwconv_")
    leaf = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    parts = []
    for module in modules:
        for prefix in ("downsample_layers_", "stages_"):
            if module.startswith(prefix):
                module = prefix.rstrip("_") + "." + module[len(prefix) :].replace("_", ".")
        parts.append(module)
    return ".".join([*parts, leaf])


def state_dict_to_params(
    state: Mapping[str, np.ndarray], variant: str, *, prefix: str = ""
) -> dict[str, Any]:
    """Flax params of ConvNeXt from a PyTorch state dict (keys under `prefix`, e.g.
    'encoder.arch.'); WeightsError naming what is missing or of the wrong shape."""
    model = ConvNeXt(variant)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    specs = {
        tuple(k.key for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
    }
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for path, spec in specs.items():
        key = prefix + _torch_name(path)
        if key not in state:
            raise WeightsError(
                f"the state dict has no {key!r} (for ConvNeXt-{variant} {'/'.join(path)}); it "
                "is not a DDColor ConvNeXt of this size"
            )
        value = _convert(path[-1], np.asarray(state[key], np.float32))
        if value.shape != tuple(spec.shape):
            raise WeightsError(
                f"{key!r} has shape {value.shape} after conversion, ConvNeXt-{variant} expects "
                f"{tuple(spec.shape)}; the file is for another size"
            )
        flat[path] = value
    return traverse_util.unflatten_dict(flat)
