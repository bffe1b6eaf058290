"""EfficientNet-Lite (Tan & Le 2019, the TFLite variants lite0-lite2) as a pure Flax encoder.

The Lite variants drop squeeze-and-excitation, use ReLU6 and keep the stem (32 channels) and
head (1280 channels) fixed while width and depth scale. Every convolution uses TensorFlow's
'SAME' padding (more padding after than before on odd totals), which is Flax's 'SAME', so the
port matches the TensorFlow-derived PyTorch weights at any input size. BatchNorm is frozen into
a per-channel scale and shift (`FrozenBatchNorm`), so the module is stateless under `apply`.

Parameter names mirror the PyTorch state dict of ``efficientnet_lite_pytorch`` (``conv_stem``,
``bn0``, ``blocks_{i}/expand_conv``, ..., ``fc``), so the converter in
``colorjax.weights.backbones`` is a rename and a transpose. The module returns the feature map at
the end of each resolution (strides 2, 4, 8, 16 and 32), the pooled 1280-wide embedding of the
classifier head and, with ``num_classes`` > 0, the ImageNet logits. Stochastic depth is left out:
the encoder is used frozen or fine-tuned briefly, where it matters little.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax import color
from colorjax.errors import ConfigError
from colorjax.models.frozen_norm import FrozenBatchNorm
from colorjax.models.layers import Conv1x1, Dtype, depthwise_conv

# (width multiplier, depth multiplier, native input size) of each variant.
LITE_VARIANTS: dict[str, tuple[float, float, int]] = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
}
# The stages of the B0 baseline: (repeats, kernel, stride, expansion, in, out channels).
_BASE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FEATURES = 32
HEAD_FEATURES = 1280
BN_EPS = 1e-3  # the TensorFlow models' BatchNorm epsilon
FEATURE_STRIDES = (2, 4, 8, 16, 32)


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by the width multiplier, rounded to a multiple of 8 (never >10% down)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def lite_block_args(variant: str) -> list[tuple[int, int, int, int, int]]:
    """Per block (kernel, stride, expansion, in, out) of an EfficientNet-Lite variant."""
    if variant not in LITE_VARIANTS:
        raise ConfigError(
            f"unknown EfficientNet-Lite variant {variant!r}; choose one of {tuple(LITE_VARIANTS)}"
        )
    width, depth, _ = LITE_VARIANTS[variant]
    blocks = []
    last = len(_BASE_STAGES) - 1
    for i, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(_BASE_STAGES):
        c_in = STEM_FEATURES if i == 0 else _round_filters(c_in, width)
        c_out = _round_filters(c_out, width)
        # Lite keeps the first and last stages' depth fixed (the "fixed head and stem" rule).
        n = repeats if i in (0, last) else int(math.ceil(depth * repeats))
        for j in range(n):
            blocks.append(
                (kernel, stride if j == 0 else 1, expand, c_in if j == 0 else c_out, c_out)
            )
    return blocks


def gray_encoder_input(l_norm: jax.Array) -> jax.Array:
    """Normalised L (N,H,W,1) -> the gray sRGB photo it is, as 3 equal channels in [-1, 1].

    The encoder was trained on sRGB photos scaled to [-1, 1]; the gray photo of a lightness L is
    Lab (L, 0, 0) in sRGB, the same picture a user's black-and-white photo is.
    """
    l32 = l_norm.astype(jnp.float32)
    gray = color.lab_inputs_to_rgb(l32, jnp.zeros((*l32.shape[:-1], 2), jnp.float32))
    return gray * 2.0 - 1.0


def _conv_bn(
    x: jax.Array,
    features: int,
    kernel: int,
    stride: int,
    groups: int,
    names: tuple[str, str],
    dtype: Dtype,
    act: bool = True,
) -> jax.Array:
    """Bias-free TF-'SAME' conv, frozen BatchNorm, ReLU6; its params sit in the calling module.

    Depthwise and 1x1 convs take the layer forms XLA:CPU runs fast (same parameters).
    """
    if groups > 1:
        x = DepthwiseConv(kernel, stride, dtype, name=names[0])(x)
    elif kernel == 1 and stride == 1:
        x = Conv1x1(features, use_bias=False, dtype=dtype, name=names[0])(x)
    else:
        x = nn.Conv(
            features,
            (kernel, kernel),
            strides=(stride, stride),
            padding="SAME",
            use_bias=False,
            dtype=dtype,
            param_dtype=jnp.float32,
            name=names[0],
        )(x)
    x = FrozenBatchNorm(features, dtype, name=names[1])(x)
    return jnp.clip(x, 0.0, 6.0) if act else x


class DepthwiseConv(nn.Module):
    """Bias-free depthwise conv with nn.Conv's parameter ('kernel', (k, k, 1, C)), fast on CPU."""

    kernel_size: int
    stride: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Convolve every channel with its own kxk kernel, TF 'SAME' padding."""
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (self.kernel_size, self.kernel_size, 1, x.shape[-1]),
            jnp.float32,
        )
        return depthwise_conv(x.astype(self.dtype), kernel.astype(self.dtype), self.stride)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise kxk, 1x1 projection, identity skip."""

    kernel: int
    stride: int
    expand: int
    in_features: int
    out_features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Apply the block (parameter names as in the PyTorch state dict)."""
        hidden = self.in_features * self.expand
        x = inputs
        if self.expand != 1:
            x = _conv_bn(x, hidden, 1, 1, 1, ("expand_conv", "bn0"), self.dtype)
        x = _conv_bn(
            x, hidden, self.kernel, self.stride, hidden, ("depthwise_conv", "bn1"), self.dtype
        )
        x = _conv_bn(x, self.out_features, 1, 1, 1, ("project_conv", "bn2"), self.dtype, False)
        if self.stride == 1 and self.in_features == self.out_features:
            x = x + inputs
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: RGB in [-1, 1] (N,H,W,3) -> multi-scale features, embedding, logits.

    Attributes:
      variant: 'lite0', 'lite1' or 'lite2'.
      num_classes: classifier outputs (1000 for the ImageNet weights); 0 drops the classifier.
      include_head: compute the 1x1 head conv and the pooled 1280-wide embedding.
      dtype: compute dtype (params stay float32).

    Returns a dict: 'features', the maps at strides 2, 4, 8, 16 and 32 (the last block of each
    resolution); 'embedding' (N, 1280) with include_head; 'logits' (N, num_classes) with a
    classifier. H and W need not be multiples of 32 (TF 'SAME' rounds up), but multiples keep
    the feature maps aligned with the input.
    """

    variant: str = "lite2"
    num_classes: int = 1000
    include_head: bool = True
    dtype: Dtype = jnp.float32

    stride: ClassVar[int] = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, Any]:
        """Run the encoder on normalised RGB."""
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ConfigError(
                f"EfficientNetLite expects RGB of shape (N, H, W, 3) scaled to [-1, 1], got "
                f"{tuple(x.shape)}; turn L into that with gray_encoder_input(l_norm)."
            )
        blocks = lite_block_args(self.variant)
        x = _conv_bn(x.astype(self.dtype), STEM_FEATURES, 3, 2, 1, ("conv_stem", "bn0"), self.dtype)
        features = []
        for i, (kernel, block_stride, expand, c_in, c_out) in enumerate(blocks):
            if block_stride > 1:
                features.append(x)  # the last map at the current resolution
            x = MBConv(kernel, block_stride, expand, c_in, c_out, self.dtype, name=f"blocks_{i}")(x)
        features.append(x)
        out: dict[str, Any] = {"features": tuple(features)}
        if self.include_head or self.num_classes:
            h = _conv_bn(x, HEAD_FEATURES, 1, 1, 1, ("conv_head", "bn1"), self.dtype)
            out["embedding"] = jnp.mean(h.astype(jnp.float32), axis=(1, 2))
        if self.num_classes:
            out["logits"] = nn.Dense(
                self.num_classes, dtype=jnp.float32, param_dtype=jnp.float32, name="fc"
            )(out["embedding"])
        return out


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (the classifier's logit order)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "assets" / "imagenet_synsets.json"
    return list(json.loads(path.read_text())["wnids"])
